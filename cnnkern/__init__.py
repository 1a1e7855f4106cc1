"""cnnkern: hand-written C++/CUDA convolution and pooling kernels as PyTorch custom ops.

    import cnnkern
    y = cnnkern.conv2d(x, w, b, stride=1, padding="same", algo="auto")
    layer = cnnkern.nn.Conv2d(3, 64, 3, padding=1)      # drop-in for torch.nn.Conv2d
    model = cnnkern.convert(torch_model)                # convs, pools, fused Conv-BN-ReLU
    cnnkern.backends.allow_tf32 = True                  # opt in: float32 on TF32 tensor cores
"""

import torch

from . import _C  # noqa: F401  (loads the library: registers the ops' schemas and kernels)
from . import _registrations  # noqa: F401  (fake kernels and autograd of every op)
from . import backends
from . import nn
from .algo import KNOWN_ALGORITHMS, algorithms, can_implement, explain, select
from .explanation import Explanation
from . import tuning
from .tuning import autotune, autotuning
from .tuning import load as autotune_load
from .tuning import save as autotune_save
from .functional import (adaptive_avg_pool2d, avg_pool2d, conv2d, conv_bn_relu, conv_transpose2d,
                         max_pool2d)
from .conversion import ConvertReport, convert

__version__ = "0.1.0"

__all__ = [
    "conv2d", "conv_bn_relu", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "nn", "algorithms",
    "can_implement", "explain", "Explanation", "select", "KNOWN_ALGORITHMS", "cuda_built",
    "cuda_available",
    "autotune", "autotuning", "autotune_save", "autotune_load", "tuning", "convert",
    "ConvertReport", "backends",
]


def cuda_built() -> bool:
    """Whether this build of cnnkern contains the CUDA kernels."""
    return bool(_C.cuda_built)


def cuda_available() -> bool:
    """Whether the CUDA kernels are built and a GPU is visible."""
    return cuda_built() and torch.cuda.is_available()


def __getattr__(name):
    # `cnnkern.models` (the top-level models/ directory) loads on first use.
    if name == "models":
        import importlib

        return importlib.import_module(".models", __name__)
    raise AttributeError(f"module 'cnnkern' has no attribute {name!r}")
