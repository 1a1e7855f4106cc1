"""The modules `cnnkern.convert` puts in place of a Conv2d -> BatchNorm2d (-> ReLU) chain.

The chain's modules stay at their names so that the state_dict keys do not change:

- the conv becomes a `FusedConvBatchNorm2d` (a cnnkern.nn.Conv2d: same parameters and keys)
  that computes conv + BN (+ ReLU) in one call, reading the BN's parameters and buffers from
  the BN module, which it holds by an unregistered reference (so no key appears twice);
- the BN becomes a `FusedAwayBatchNorm2d`: an nn.BatchNorm2d sharing the original's
  parameters and buffers (same keys, still switched by .train()/.eval(), moved by .to()),
  whose forward returns its input, because the conv before it already applied it;
- a ReLU module used only there becomes nn.Identity (done by convert).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import nn as cnn
from .functional import conv_padding

# The one import site of the fused op.
from .functional import conv_bn_relu as _conv_bn_relu

__all__ = ["FusedConvBatchNorm2d", "FusedAwayBatchNorm2d"]


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


class FusedConvBatchNorm2d(cnn.Conv2d):
    """A cnnkern Conv2d that also applies the BatchNorm2d (and ReLU) that follow it.

    Same parameters and state_dict keys as nn.Conv2d. The BN module is held in a tuple so
    that nn.Module does not register it a second time (its keys stay under its own name); its
    momentum / num_batches_tracked / track_running_stats are handled as nn.BatchNorm2d.forward
    does, and its training flag (not the conv's) decides batch or running statistics.
    """

    fused_relu: bool = False
    bn_name: str = ""
    copy_output: bool = False   # see output_survives_in_place_change

    @classmethod
    def fuse(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d, relu: bool, algo: str,
             bn_name: str = "", copy_output: bool = False) -> "FusedConvBatchNorm2d":
        m = cls.from_torch(conv, algo)
        m.train(conv.training)
        m._bn_ref = (bn,)
        m.fused_relu = bool(relu)
        m.bn_name = bn_name
        m.copy_output = bool(copy_output)
        return m

    @property
    def bn(self) -> nn.BatchNorm2d:
        return self._bn_ref[0]

    def forward(self, input):
        bn = self.bn
        if input.dim() != 4:  # the BatchNorm2d after the conv would reject it the same way
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")

        # Exactly nn.BatchNorm2d.forward's choice of factor, flag and buffers.
        factor = 0.0 if bn.momentum is None else bn.momentum
        if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                      else bn.momentum)
        bn_training = bn.training or (bn.running_mean is None and bn.running_var is None)
        use_buffers = not bn.training or bn.track_running_stats
        running_mean = bn.running_mean if use_buffers else None
        running_var = bn.running_var if use_buffers else None

        gamma, beta = bn.weight, bn.bias
        if gamma is None:  # affine=False: gamma 1, beta 0 (exact), so the op always gets tensors
            gamma = torch.ones(bn.num_features, dtype=input.dtype, device=input.device)
            beta = torch.zeros(bn.num_features, dtype=input.dtype, device=input.device)

        # Padding resolved here (explicit pads as cnnkern.nn.Conv2d / torch do), so the fused
        # op only ever sees a symmetric integer padding.
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = [0, 0]
        else:
            padding, extra = conv_padding(self.padding, self.weight.shape, self.stride,
                                          self.dilation, "cnnkern.convert")
            if extra is not None:
                input = F.pad(input, extra)
        out = _conv_bn_relu(input, self.weight, self.bias, gamma, beta, running_mean,
                            running_var, bn_training, factor, bn.eps, list(self.stride),
                            list(padding), list(self.dilation), self.groups,
                            relu=self.fused_relu, algo=self.algo)
        if self.copy_output and out.requires_grad:
            out = out.clone()
        return out

    def extra_repr(self) -> str:
        what = "bn+relu" if self.fused_relu else "bn"
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
