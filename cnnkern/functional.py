"""torch.nn.functional-compatible entry points for cnnkern's ops.

Each function takes the same arguments as its torch.nn.functional namesake (plus `algo=` for
convolution), normalises them (int -> pair, "same"/"valid" padding, unbatched 3-D input) and
calls the registered op, which does the argument checks.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from . import tuning as _tuning

IntOrPair = Union[int, Sequence[int]]

_ops = torch.ops.cnnkern


def _pair(value, name: str, op: str):
    if isinstance(value, int) and not isinstance(value, bool):
        return [value, value]
    if isinstance(value, torch.SymInt):
        return [value, value]
    try:
        values = list(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints; got {value!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints; got {value!r}")
    return values


def _batched(input: torch.Tensor, op: str) -> Tuple[torch.Tensor, bool]:
    """Accepts (C, H, W) like torch does, as a batch of one; returns (4-D input, was_3d)."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{op}: input must be a Tensor; got {type(input).__name__}")
    if input.dim() == 3:
        return input.unsqueeze(0), True
    if input.dim() != 4:
        raise RuntimeError(f"{op}: expected a 3-D (unbatched) or 4-D (batched) input; got a "
                           f"{input.dim()}-D input of size {list(input.shape)}")
    return input, False


def conv_padding(padding, weight_shape, stride, dilation, op="cnnkern.conv2d"):
    """Resolves `padding` (int, pair, "valid" or "same") as torch does.

    Returns (symmetric padding pair, extra right/bottom padding as F.pad's [0, w, 0, h]).
    "same" with an even total padding splits it evenly; an odd one puts the extra element on
    the right/bottom, which torch applies as an explicit pad before a symmetric convolution.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0], None
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same'; got "
                             f"{padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions; "
                             f"got stride={list(stride)}")
        total = [d * (k - 1) for d, k in zip(dilation, weight_shape[2:])]
        left = [t // 2 for t in total]
        extra = [t - 2 * l for t, l in zip(total, left)]
        return left, ([0, extra[1], 0, extra[0]] if any(extra) else None)
    return _pair(padding, "padding", op), None


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           stride: IntOrPair = 1, padding: Union[IntOrPair, str] = 0, dilation: IntOrPair = 1,
           groups: int = 1, *, algo: str = "auto") -> torch.Tensor:
    """2-D convolution (cross-correlation, as torch.nn.functional.conv2d) by `algo`."""
    op = "cnnkern.conv2d"
    if not isinstance(algo, str):
        raise TypeError(f"{op}: algo must be a string; got {algo!r}")
    x, unbatched = _batched(input, op)
    stride = _pair(stride, "stride", op)
    dilation = _pair(dilation, "dilation", op)
    pad, extra = conv_padding(padding, weight.shape, stride, dilation, op)
    if extra is not None:
        x = F.pad(x, extra)
    if algo == "auto" and _tuning.enabled():
        algo = _tuning.choose(x, weight, bias, stride, pad, dilation, groups)
    out = _ops.conv2d(x, weight, bias, stride, pad, dilation, groups, algo)
    return out.squeeze(0) if unbatched else out


def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor,
                     bias: Optional[torch.Tensor] = None, stride: IntOrPair = 1,
                     padding: IntOrPair = 0, output_padding: IntOrPair = 0, groups: int = 1,
                     dilation: IntOrPair = 1, *, algo: str = "auto") -> torch.Tensor:
    """Transposed convolution as torch.nn.functional.conv_transpose2d.

    It is the grad-input of the convolution that maps the output size back to the input's,
    so it runs on the conv2d_backward_input kernels of `algo`; weight is laid out
    (in_channels, out_channels/groups, kH, kW) as in torch.
    """
    op = "cnnkern.conv_transpose2d"
    x, unbatched = _batched(input, op)
    stride = _pair(stride, "stride", op)
    padding = _pair(padding, "padding", op)
    dilation = _pair(dilation, "dilation", op)
    output_padding = _pair(output_padding, "output_padding", op)
    for i in range(2):
        if not 0 <= output_padding[i] < max(stride[i], dilation[i]):
            raise ValueError(f"{op}: output_padding must be non-negative and smaller than "
                             f"stride or dilation; got output_padding={output_padding}, "
                             f"stride={stride}, dilation={dilation}")
    if weight.dim() != 4:
        raise RuntimeError(f"{op}: expected a 4-D weight (in_channels, out_channels/groups, kH, "
                           f"kW); got a {weight.dim()}-D weight of size {list(weight.shape)}")
    out_size = [x.shape[0], weight.shape[1] * groups] + [
        (x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[2 + i] - 1)
        + output_padding[i] + 1 for i in range(2)]
    out = _ops.conv2d_backward_input(x, weight, out_size, stride, padding, dilation, groups, algo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out.squeeze(0) if unbatched else out


def max_pool2d(input: torch.Tensor, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None,
               padding: IntOrPair = 0, dilation: IntOrPair = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max pooling as torch.nn.functional.max_pool2d; indices are flat within each plane."""
    op = "cnnkern.max_pool2d"
    x, unbatched = _batched(input, op)
    kernel_size = _pair(kernel_size, "kernel_size", op)
    stride = kernel_size if stride is None or stride == [] else _pair(stride, "stride", op)
    out, indices = _ops.max_pool2d_with_indices(x, kernel_size, stride,
                                                _pair(padding, "padding", op),
                                                _pair(dilation, "dilation", op), bool(ceil_mode))
    if unbatched:
        out, indices = out.squeeze(0), indices.squeeze(0)
    return (out, indices) if return_indices else out


def avg_pool2d(input: torch.Tensor, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None,
               padding: IntOrPair = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None) -> torch.Tensor:
    """Average pooling as torch.nn.functional.avg_pool2d."""
    op = "cnnkern.avg_pool2d"
    x, unbatched = _batched(input, op)
    kernel_size = _pair(kernel_size, "kernel_size", op)
    stride = kernel_size if stride is None or stride == [] else _pair(stride, "stride", op)
    out = _ops.avg_pool2d(x, kernel_size, stride, _pair(padding, "padding", op), bool(ceil_mode),
                          bool(count_include_pad), divisor_override)
    return out.squeeze(0) if unbatched else out


def adaptive_avg_pool2d(input: torch.Tensor, output_size) -> torch.Tensor:
    """Adaptive average pooling as torch.nn.functional.adaptive_avg_pool2d (None keeps a size)."""
    op = "cnnkern.adaptive_avg_pool2d"
    x, unbatched = _batched(input, op)
    size = _pair(output_size, "output_size", op)
    size = [x.shape[2 + i] if s is None else s for i, s in enumerate(size)]
    out = _ops.adaptive_avg_pool2d(x, size)
    return out.squeeze(0) if unbatched else out
