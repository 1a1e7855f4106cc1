"""Drop-in modules: subclasses of the torch.nn layers with cnnkern's kernels in forward.

Subclassing keeps the constructor arguments, parameters, buffers and state_dict keys of the
torch layer, so a torch layer's weights load unchanged (and the other way round). Three kinds:

- the twins of torch's layers: Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d,
  AdaptiveAvgPool2d;
- the fused conv + BatchNorm (+ ReLU) layers ConvBNReLU2d and ConvBN2d;
- the modules cnnkern.convert puts in place of a Conv2d -> BatchNorm2d (-> ReLU) chain:
  FusedConvBatchNorm2d and FusedAwayBatchNorm2d.

The last two kinds compute conv + BN (+ ReLU) through one core, _ConvBNCore: nn.BatchNorm2d's
choices (momentum, num_batches_tracked, batch or running statistics) around
cnnkern.conv_bn_relu, and in eval the BN folded into the conv's weight and bias once, cached
until a source tensor changes.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import functional as ck
from ._relu_mark import mark_relu_applied
# The fused op's one call site in the modules, looked up at call time (tests wrap it).
from .functional import conv_bn_relu as _conv_bn_relu

# The drop-in layers; the modules convert inserts are reached by name (cnnkern.nn.Fused...).
__all__ = ["Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "ConvBNReLU2d", "ConvBN2d"]


class Conv2d(nn.Conv2d):
    """torch.nn.Conv2d computed by cnnkern; `algo` picks the algorithm ("auto" by default).

    padding_mode other than "zeros" pads explicitly (F.pad) then convolves unpadded, as torch
    does.
    """

    def __init__(self, *args, algo: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.algo = algo

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return ck.conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups,
                             algo=self.algo)
        return ck.conv2d(input, weight, bias, self.stride, self.padding, self.dilation,
                         self.groups, algo=self.algo)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", algo={self.algo!r}"

    @classmethod
    def from_torch(cls, conv: nn.Conv2d, algo: str = "auto") -> "Conv2d":
        """A cnnkern Conv2d sharing `conv`'s parameters."""
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                device="meta", algo=algo)
        m.weight, m.bias = conv.weight, conv.bias
        return m


class ConvTranspose2d(nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d computed by cnnkern's grad-input kernels of `algo`.

    Same constructor, parameters and state_dict keys as the torch layer; forward(input,
    output_size=None) takes output_size as torch does (the 2 spatial sizes, or the full size
    with the batch and channel dimensions), through torch's own _output_padding.
    """

    def __init__(self, *args, algo: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.algo = algo

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros":
            raise ValueError(f"cnnkern.nn.ConvTranspose2d: only padding_mode='zeros' is "
                             f"supported (as in torch); got {self.padding_mode!r}")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 2, self.dilation)
        return ck.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                   output_padding, self.groups, self.dilation, algo=self.algo)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", algo={self.algo!r}"

    @classmethod
    def from_torch(cls, conv: nn.ConvTranspose2d, algo: str = "auto") -> "ConvTranspose2d":
        """A cnnkern ConvTranspose2d sharing `conv`'s parameters."""
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                conv.output_padding, conv.groups, conv.bias is not None, conv.dilation,
                conv.padding_mode, device="meta", algo=algo)
        m.weight, m.bias = conv.weight, conv.bias
        return m


class MaxPool2d(nn.MaxPool2d):
    """torch.nn.MaxPool2d computed by cnnkern."""

    @classmethod
    def from_torch(cls, pool: nn.MaxPool2d) -> "MaxPool2d":
        return cls(pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                   pool.return_indices, pool.ceil_mode)

    def forward(self, input):
        return ck.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                             ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool2d(nn.AvgPool2d):
    """torch.nn.AvgPool2d computed by cnnkern."""

    @classmethod
    def from_torch(cls, pool: nn.AvgPool2d) -> "AvgPool2d":
        return cls(pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode,
                   pool.count_include_pad, pool.divisor_override)

    def forward(self, input):
        return ck.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                             self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """torch.nn.AdaptiveAvgPool2d computed by cnnkern."""

    @classmethod
    def from_torch(cls, pool: nn.AdaptiveAvgPool2d) -> "AdaptiveAvgPool2d":
        return cls(pool.output_size)

    def forward(self, input):
        return ck.adaptive_avg_pool2d(input, self.output_size)



# --- conv + BatchNorm (+ ReLU): one core ---------------------------------------------------

def _source_key(t: Optional[torch.Tensor]):
    if t is None:
        return None
    return (t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape))


class _ConvBNCore:
    """Mixin of the modules that compute a conv module and a BatchNorm2d (and a ReLU) as one
    cnnkern.conv_bn_relu call. Keeps the eval-mode fold of the BN into the conv in
    `_fold_cache`, refolded whenever any source tensor changes (its identity, storage,
    version counter, dtype or device), so load_state_dict, optimiser steps and .to() never
    leave a stale result."""

    _fold_cache = None

    def _conv_bn(self, conv: "Conv2d", bn: nn.BatchNorm2d, input: torch.Tensor,
                 relu: bool, relu_max: Optional[float] = None,
                 residual: Optional[torch.Tensor] = None) -> torch.Tensor:
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
        batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
        keep = not bn.training or bn.track_running_stats
        return _conv_bn_relu(input, conv.weight, conv.bias, bn.weight, bn.bias,
                             bn.running_mean if keep else None, bn.running_var if keep else None,
                             batch_stats, factor, bn.eps, conv.stride, padding, conv.dilation,
                             conv.groups, relu=relu, relu_max=relu_max, algo=conv.algo,
                             fold=self._fold, residual=residual)

    def _fold(self, weight, bias, bn_weight, bn_bias, running_mean, running_var, eps):
        """functional.fold_bn, from the cache unless the sources changed."""
        sources = (weight, bias, bn_weight, bn_bias, running_mean, running_var)
        # Fold through autograd (no cache) when a gradient may flow to the sources; skip the
        # cache under torch.compile too (the fold is then part of the traced graph).
        needs_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in sources)
        if needs_grad or torch.compiler.is_compiling():
            return ck.fold_bn(*sources, eps)
        try:
            key = tuple(_source_key(t) for t in sources) + (float(eps),)
        except RuntimeError:  # inference tensors have no version counter: never cache
            key = None
        cache = self._fold_cache
        if (key is not None and cache is not None and cache[0] == key
                and all(a is b for a, b in zip(cache[1], sources))):
            return cache[2]
        with torch.no_grad():
            folded = ck.fold_bn(*sources, eps)
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


class _ConvBNBase(_ConvBNCore, nn.Sequential):
    """An nn.Sequential of [0] cnnkern.nn.Conv2d, [1] nn.BatchNorm2d (and [2] nn.ReLU), so its
    state_dict keys ("0.weight", "1.running_mean", ...) are exactly those of torch's
    nn.Sequential(nn.Conv2d, nn.BatchNorm2d, nn.ReLU) / torchvision's Conv2dNormActivation and
    weights load either way; but forward runs the fused op instead of the three layers."""

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
        return m

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._conv_bn(self[0], self[1], input, self._with_relu)


class ConvBNReLU2d(_ConvBNBase):
    """Conv2d -> BatchNorm2d -> ReLU as one fused layer.

    Eval: BN folded into the conv's weight and bias (cached), ReLU in the conv's epilogue: one
    conv. Training: cnnkern.conv_bn_relu(training=True), with momentum=None (cumulative
    average), num_batches_tracked and track_running_stats=False handled as
    nn.BatchNorm2d.forward does.

    Constructor: nn.Conv2d's arguments (bias defaults to False: BN cancels it), then
    nn.BatchNorm2d's (eps, momentum, affine, track_running_stats), device, dtype, algo."""

    _with_relu = True


class ConvBN2d(_ConvBNBase):
    """Conv2d -> BatchNorm2d as one fused layer, for blocks that add a residual before the
    ReLU. Same constructor as ConvBNReLU2d."""

    _with_relu = False


# --- what cnnkern.convert puts in place of a Conv2d -> BatchNorm2d (-> ReLU) chain ----------
# The chain's modules stay at their names so that the state_dict keys do not change: the conv
# becomes a FusedConvBatchNorm2d, the BN a FusedAwayBatchNorm2d sharing its parameters and
# buffers, and a ReLU used only there nn.Identity (done by convert).

class FusedAwayBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d whose computation was fused into the conv before it: forward is identity.

    It keeps the original's parameters and buffers (same objects, same keys), so the
    state_dict, load_state_dict, .train()/.eval() and .to() work as for the original; the
    fused conv reads them from here at every call.
    """

    fused_into: str = ""

    @classmethod
    def from_torch(cls, bn: nn.BatchNorm2d, fused_into: str) -> "FusedAwayBatchNorm2d":
        m = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                device="meta")
        m.weight, m.bias = bn.weight, bn.bias
        m.running_mean, m.running_var = bn.running_mean, bn.running_var
        m.num_batches_tracked = bn.num_batches_tracked
        m.train(bn.training)
        m.fused_into = fused_into
        return m

    def forward(self, input):
        return input

    def extra_repr(self) -> str:
        return super().extra_repr() + f", fused into {self.fused_into!r}"


class FusedConvBatchNorm2d(_ConvBNCore, Conv2d):
    """A cnnkern Conv2d that also applies the BatchNorm2d (and ReLU) that follow it.

    Same parameters and state_dict keys as nn.Conv2d. The BN module is held in a tuple so
    that nn.Module does not register it a second time (its keys stay under its own name); its
    training flag (not the conv's) decides batch or running statistics.
    """

    fused_relu: bool = False
    relu_max: Optional[float] = None  # the fused ReLU clamped above (ReLU6: 6.0)
    bn_name: str = ""
    copy_output: bool = False   # see output_survives_in_place_change

    @classmethod
    def fuse(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d, relu: bool, algo: str,
             bn_name: str = "", copy_output: bool = False,
             relu_max: Optional[float] = None) -> "FusedConvBatchNorm2d":
        m = cls.from_torch(conv, algo)
        m.train(conv.training)
        m._bn_ref = (bn,)
        m.fused_relu = bool(relu)
        m.relu_max = None if relu_max is None else float(relu_max)
        m.bn_name = bn_name
        m.copy_output = bool(copy_output)
        return m

    @property
    def bn(self) -> nn.BatchNorm2d:
        return self._bn_ref[0]

    def forward(self, input):
        if input.dim() != 4:  # the BatchNorm2d after the conv would reject it the same way
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")
        out = self._conv_bn(self, self.bn, input, self.fused_relu, self.relu_max)
        if self.copy_output and out.requires_grad:
            out = out.clone()
        # A ReLU module shared with another call site stays after this layer: the mark lets
        # it skip this output (cnnkern/_relu_mark.py).
        return mark_relu_applied(out) if self.fused_relu and self.relu_max is None else out

    def forward_residual(self, input: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """relu(bn(conv(input)) + residual): a ResNet block's tail, the add and the ReLU fused
        in (cnnkern/_block_forward.py calls it); this layer must not fuse a ReLU itself."""
        if self.fused_relu:
            raise RuntimeError(f"{type(self).__name__}.forward_residual: this layer already "
                               f"fuses a ReLU after its BN ({self.bn_name!r})")
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")
        return self._conv_bn(self, self.bn, input, True, residual=residual)

    def extra_repr(self) -> str:
        what = "bn" if not self.fused_relu else (
            "bn+relu" if self.relu_max is None else f"bn+relu(max={self.relu_max:g})")
        return super().extra_repr() + f", fused {what} from {self.bn_name!r}"


_SURVIVES: dict = {}


def output_survives_in_place_change(relu: bool) -> bool:
    """Whether backward still runs after an in-place op on the fused op's output.

    nn.BatchNorm2d's output may be modified in place before backward (torchvision's ResNet
    does `out += identity` and ReLU(inplace=True) on it), because batch_norm's backward does
    not keep its output. A fused op that keeps its output for backward (to recompute what is
    cheap) would make that an autograd error, so where the model writes into the output of a
    fused chain (convert finds out from the traced graph), the fused conv returns a copy
    while autograd records (copy_output). Found out once per op and `relu` by trying it.
    """
    key = (_conv_bn_relu, bool(relu))
    if key not in _SURVIVES:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 2, 4, 4, generator=gen, requires_grad=True)
        w = torch.randn(2, 2, 3, 3, generator=gen, requires_grad=True)
        gamma, beta = torch.ones(2, requires_grad=True), torch.zeros(2, requires_grad=True)
        with torch.enable_grad():
            out = _conv_bn_relu(x, w, None, gamma, beta, None, None, True, 0.1, 1e-5, 1, 1, 1,
                                1, relu=bool(relu), algo="auto")
            out.mul_(1.0)
            try:
                out.sum().backward()
                _SURVIVES[key] = True
            except RuntimeError as e:
                if "modified by an inplace operation" not in str(e):
                    raise
                _SURVIVES[key] = False
    return _SURVIVES[key]
