"""cnnkern's numerics switches (like torch.backends.cudnn's, but cnnkern's own).

    cnnkern.backends.allow_tf32 = True        # process-wide (default False)
    cnnkern.backends.set_allow_tf32(True)     # the same, as a function
    cnnkern.backends.get_allow_tf32()         # what a call in this thread would use now
    with cnnkern.backends.tf32():             # on inside the block only, for this thread
        y = model(x)
    with cnnkern.backends.tf32(False):        # off inside the block, whatever the default
        ...

`allow_tf32` lets float32 convolutions run on the GPU's TF32 tensor cores where cnnkern has
such a path: the CUDA implicit GEMM (algo "im2col": forward, grad-input and grad-weight; and
the grad-weight of "winograd"/"winograd_f2", which runs on it). Operands are rounded to TF32
(10 mantissa bits, round to nearest, ties away from zero) and products summed in float32, so
results carry about 1e-3 relative error instead of float32's 1e-7. Other algorithms, dtypes and
the CPU compute the same with it on or off.

It is off by default and deliberately does NOT follow torch.backends.cudnn.allow_tf32, which is
True by default in PyTorch: following it would silently make every float32 result of cnnkern's
GPU convolution 10^4 times less accurate for users who never asked for TF32, and would make
"cnnkern vs cuDNN" comparisons depend on a PyTorch setting nobody looked at. Turn it on
explicitly (and `torch.backends.cudnn.allow_tf32` too, for a like-for-like comparison:
`python -m cnnkern --tf32` sets both).

How it reaches the kernels: cnnkern's Python entry points (cnnkern.conv2d, conv_transpose2d,
conv_bn_relu and the nn modules built on them) read get_allow_tf32() when they are called and
pass it to the op as its `allow_tf32` argument; the autograd formulas hand the forward's value
to its backward ops. So a forward and its backward always use the same setting, even when the
backward runs on autograd's own threads or after the flag changed; torch.compile records the
value in the graph and guards on the flag (a change recompiles, no graph break); fake tensors
are unaffected (the flag changes no shape or dtype). Calling torch.ops.cnnkern.* directly
without the argument means exact float32.

Thread safety: the process-wide value is one bool (set under a lock); `tf32()` blocks keep a
per-thread stack, so concurrent threads with their own blocks never see each other's setting
(the same scheme as cnnkern.autotuning()).
"""

from __future__ import annotations

import sys
import types

from ._switch import ThreadOverride, ThreadSwitch

_allow_tf32 = ThreadSwitch(False)  # process-wide default, `with tf32(...)` per thread


def set_allow_tf32(enabled: bool) -> None:
    """Allows (or forbids) TF32 for float32 convolutions, process-wide."""
    if not isinstance(enabled, bool):
        raise TypeError(f"cnnkern.backends.allow_tf32 must be a bool; got {enabled!r}")
    _allow_tf32.set(enabled)


def get_allow_tf32() -> bool:
    """The setting a cnnkern call made now, in this thread, would use."""
    return _allow_tf32.get()


class tf32(ThreadOverride):
    """`with cnnkern.backends.tf32(enabled=True):` sets allow_tf32 for this thread inside the
    block; other threads, and this one after the block, keep theirs. Re-entrant and nestable."""

    switch = _allow_tf32

    def __init__(self, enabled: bool = True):
        if not isinstance(enabled, bool):
            raise TypeError(f"cnnkern.backends.tf32: enabled must be a bool; got {enabled!r}")
        super().__init__(enabled)


class _BackendsModule(types.ModuleType):
    """Makes `cnnkern.backends.allow_tf32` a property: reading it is get_allow_tf32(),
    assigning it is set_allow_tf32() (so a typo'd value type is an error, not a silent bool)."""

    @property
    def allow_tf32(self) -> bool:
        return get_allow_tf32()

    @allow_tf32.setter
    def allow_tf32(self, enabled: bool) -> None:
        set_allow_tf32(enabled)


sys.modules[__name__].__class__ = _BackendsModule
