"""Fused conv + BatchNorm (+ ReLU) layers: cnnkern.nn.ConvBNReLU2d and cnnkern.nn.ConvBN2d.

Each is an nn.Sequential of [0] cnnkern.nn.Conv2d, [1] nn.BatchNorm2d (and [2] nn.ReLU), so its
state_dict keys ("0.weight", "1.running_mean", ...) are exactly those of torch's
nn.Sequential(nn.Conv2d, nn.BatchNorm2d, nn.ReLU) / torchvision's Conv2dNormActivation and
weights load either way; but forward runs the fused op instead of the three layers:

- eval: BN folded into the conv's weight and bias, ReLU in the conv's epilogue: one conv.
  The folded weights are cached and refolded whenever any source tensor changes (its
  identity, storage, version counter, dtype or device), so load_state_dict, optimiser
  steps and .to() never leave a stale result.
- training: cnnkern.conv_bn_relu(training=True), with momentum=None (cumulative average),
  num_batches_tracked and track_running_stats=False handled as nn.BatchNorm2d.forward does.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import functional as ck
from .nn import Conv2d

__all__ = ["ConvBN2d", "ConvBNReLU2d"]


def _source_key(t: Optional[torch.Tensor]):
    if t is None:
        return None
    return (t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape))


class _ConvBNBase(nn.Sequential):
    _with_relu = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, padding_mode: str = "zeros",
                 eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *,
                 algo: str = "auto"):
        conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                      bias, padding_mode, device=device, dtype=dtype, algo=algo)
        bn = nn.BatchNorm2d(out_channels, eps, momentum, affine, track_running_stats,
                            device=device, dtype=dtype)
        super().__init__(conv, bn, *([nn.ReLU()] if self._with_relu else []))
        self._fold_cache = None

    @property
    def conv(self) -> Conv2d:
        return self[0]

    @property
    def bn(self) -> nn.BatchNorm2d:
        return self[1]

    @classmethod
    def from_modules(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d, relu: Optional[bool] = None, *,
                     algo: Optional[str] = None) -> "_ConvBNBase":
        """The fused layer over existing modules, sharing their parameters and buffers (the
        BN module itself is reused; a torch nn.Conv2d is wrapped by Conv2d.from_torch).
        relu=None keeps the class's choice; True/False picks ConvBNReLU2d / ConvBN2d."""
        if relu is None:
            relu = cls._with_relu
        target = ConvBNReLU2d if relu else ConvBN2d
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"{target.__name__}.from_modules: expected an nn.Conv2d and an "
                            f"nn.BatchNorm2d; got {type(conv).__name__} and {type(bn).__name__}")
        if bn.num_features != conv.out_channels:
            raise ValueError(f"{target.__name__}.from_modules: the BatchNorm2d has "
                             f"num_features={bn.num_features} but the conv has "
                             f"out_channels={conv.out_channels}")
        if isinstance(conv, Conv2d):
            if algo is not None:
                conv.algo = algo
        else:
            conv = Conv2d.from_torch(conv, algo=algo or "auto")
        m = target.__new__(target)
        nn.Sequential.__init__(m, conv, bn, *([nn.ReLU()] if relu else []))
        m._fold_cache = None
        return m

    # --- forward ----------------------------------------------------------------------------

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        conv, bn = self[0], self[1]
        padding = conv.padding
        if conv.padding_mode != "zeros":
            input = F.pad(input, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
            padding = 0
        # As nn.BatchNorm2d.forward (momentum=None: cumulative moving average).
        factor = 0.0 if bn.momentum is None else bn.momentum
        if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                      else bn.momentum)
        use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
        if not use_batch_stats:
            return self._eval_forward(input, padding)
        keep = not bn.training or bn.track_running_stats
        return ck.conv_bn_relu(input, conv.weight, conv.bias, bn.weight, bn.bias,
                               bn.running_mean if keep else None,
                               bn.running_var if keep else None, True, factor, bn.eps,
                               conv.stride, padding, conv.dilation, conv.groups,
                               relu=self._with_relu, algo=conv.algo)

    def _eval_forward(self, input, padding):
        conv, bn = self[0], self[1]
        sources = (conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        # Fold through autograd (no cache) when a gradient may flow to the sources; skip the
        # cache under torch.compile too (the fold is then part of the traced graph).
        needs_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in sources)
        if needs_grad or torch.compiler.is_compiling():
            return ck.conv_bn_relu(input, conv.weight, conv.bias, bn.weight, bn.bias,
                                   bn.running_mean, bn.running_var, False, 0.0, bn.eps,
                                   conv.stride, padding, conv.dilation, conv.groups,
                                   relu=self._with_relu, algo=conv.algo)
        op = "cnnkern.conv_bn_relu"
        x, unbatched = ck._batched(input, op)
        ck._check_bn_args(op, x, conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        w, b = self._folded(sources, bn.eps)
        if x.dtype != w.dtype or x.device != w.device:
            raise RuntimeError(f"{op}: input and weight must have the same dtype and device; got "
                               f"input {x.dtype} on {x.device} and weight {w.dtype} on {w.device}")
        stride = ck._pair(conv.stride, "stride", op)
        dilation = ck._pair(conv.dilation, "dilation", op)
        pad, extra = ck.conv_padding(padding, w.shape, stride, dilation, op)
        if extra is not None:
            x = F.pad(x, extra)
        out = ck.folded_conv(x, w, b, stride, pad, dilation, conv.groups,
                             relu=self._with_relu, algo=conv.algo)
        return out.squeeze(0) if unbatched else out

    def _folded(self, sources, eps):
        """(w', b'), refolded unless every source is the same tensor, unchanged since."""
        try:
            key = tuple(_source_key(t) for t in sources) + (float(eps),)
        except RuntimeError:  # inference tensors have no version counter: never cache
            key = None
        cache = self._fold_cache
        if (key is not None and cache is not None and cache[0] == key
                and all(a is b for a, b in zip(cache[1], sources))):
            return cache[2]
        conv, bn = self[0], self[1]
        with torch.no_grad():
            folded = ck.fold_bn(conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean,
                                bn.running_var, eps)
        # The sources are held (not just their addresses) so that a freed tensor's memory
        # cannot be reused by a new one with the same key.
        self._fold_cache = None if key is None else (key, sources, folded)
        return folded

    def train(self, mode: bool = True):
        self._fold_cache = None
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self._fold_cache = None  # .to() / .cuda() / .double(): refold from the new tensors
        return super()._apply(fn, *args, **kwargs)


class ConvBNReLU2d(_ConvBNBase):
    """Conv2d -> BatchNorm2d -> ReLU as one fused layer (see the module docstring).

    Constructor: nn.Conv2d's arguments (bias defaults to False: BN cancels it), then
    nn.BatchNorm2d's (eps, momentum, affine, track_running_stats), device, dtype, algo."""

    _with_relu = True


class ConvBN2d(_ConvBNBase):
    """Conv2d -> BatchNorm2d as one fused layer, for blocks that add a residual before the
    ReLU. Same constructor as ConvBNReLU2d."""

    _with_relu = False
