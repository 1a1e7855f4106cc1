"""The layer constructors a reference model is built from.

Every model takes `backend="cnnkern"` (cnnkern's conv/pool layers, with `algo`) or
`backend="torch"` (plain torch.nn layers: the twin `cnnkern check` compares against). Both
builds have the same structure and state_dict keys, so weights copy across unchanged.
"""

from __future__ import annotations

from torch import nn

from cnnkern import nn as cnn

BACKENDS = ("cnnkern", "torch")


class Layers:
    def __init__(self, backend: str = "cnnkern", algo: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
        self.backend, self.algo = backend, algo
        self._ck = backend == "cnnkern"

    def conv(self, *args, **kwargs) -> nn.Conv2d:
        return cnn.Conv2d(*args, algo=self.algo, **kwargs) if self._ck else nn.Conv2d(*args, **kwargs)

    def conv_transpose(self, *args, **kwargs) -> nn.ConvTranspose2d:
        if self._ck:
            return cnn.ConvTranspose2d(*args, algo=self.algo, **kwargs)
        return nn.ConvTranspose2d(*args, **kwargs)

    def max_pool(self, *args, **kwargs) -> nn.MaxPool2d:
        return (cnn.MaxPool2d if self._ck else nn.MaxPool2d)(*args, **kwargs)

    def avg_pool(self, *args, **kwargs) -> nn.AvgPool2d:
        return (cnn.AvgPool2d if self._ck else nn.AvgPool2d)(*args, **kwargs)

    def adaptive_avg_pool(self, *args, **kwargs) -> nn.AdaptiveAvgPool2d:
        return (cnn.AdaptiveAvgPool2d if self._ck else nn.AdaptiveAvgPool2d)(*args, **kwargs)
