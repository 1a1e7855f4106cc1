"""Drop-in modules: subclasses of the torch.nn layers with cnnkern's kernels in forward.

Subclassing keeps the constructor arguments, parameters, buffers and state_dict keys of the
torch layer, so a torch layer's weights load unchanged (and the other way round).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from . import functional as ck

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
    """torch.nn.ConvTranspose2d computed by cnnkern's grad-input kernels of `algo`."""

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


class MaxPool2d(nn.MaxPool2d):
    """torch.nn.MaxPool2d computed by cnnkern."""

    def forward(self, input):
        return ck.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                             ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool2d(nn.AvgPool2d):
    """torch.nn.AvgPool2d computed by cnnkern."""

    def forward(self, input):
        return ck.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                             self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """torch.nn.AdaptiveAvgPool2d computed by cnnkern."""

    def forward(self, input):
        return ck.adaptive_avg_pool2d(input, self.output_size)



# The fused conv + BN (+ ReLU) layers live in fused.py (they need Conv2d from here).
from .fused import ConvBN2d, ConvBNReLU2d  # noqa: E402
