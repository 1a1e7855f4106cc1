"""Fake (meta) kernels and autograd for the ops declared in csrc/cnnkern.cpp, one file per op
family; importing the package registers them all.

Fakes are pure Python: output sizes, dtypes and layouts only, so every op runs on device
"meta" and under torch.compile. Argument checks live once, in the C++ ops
(csrc/ops/checks.cpp); a fake raises only where no output size exists (_shape.py).
"""

from . import bn_relu, conv2d, pool2d  # noqa: F401  (registers on import)
