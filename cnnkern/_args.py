"""Arguments as torch.nn.functional takes them, turned into what the ops' schemas take (ints,
pairs, bools, 'same' padding, unbatched input), with torch's errors for the wrong types; and
the checks of conv_transpose2d, which runs on another op's kernels (check_conv_transpose2d).

Shared by functional.py (the entry points), algo.py (which must see a call's problem exactly
as the op will) and nn.py; it imports nothing of cnnkern's, so none of them import each other
for it.
"""

from __future__ import annotations

import operator
from typing import List, Optional, Tuple

import torch


def _as_int(v):
    """`v` as torch's argument parser takes an int: an int (never a bool, which torch refuses)
    or anything with __index__ (numpy integers, integer tensors); None when it is not one."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, torch.SymInt)):
        return v
    try:
        return operator.index(v)
    except TypeError:
        return None


def integer(value, name: str, op: str):
    """An int argument (groups, divisor_override): a float or a bool is a TypeError naming it."""
    v = _as_int(value)
    if v is None:
        raise TypeError(f"{op}: {name} must be an int; got {value!r}")
    return v


def flag(value, name: str, op: str) -> bool:
    """A bool argument (ceil_mode, count_include_pad): torch refuses ints and None there."""
    if not isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a bool; got {value!r}")
    return value


def pair(value, name: str, op: str, *, one: bool = True, none: bool = False) -> List:
    """int -> [int, int]; a 2-sequence (or, when `one`, a 1-sequence, repeated) of ints -> a
    2-list; `none` lets an entry be None (adaptive pooling's "keep this size"). Anything else
    is a clear error naming `op`, `name` and the value."""
    scalar = _as_int(value)
    if scalar is not None:
        return [scalar, scalar]
    need = "an int or a pair of ints" if one else "an int or exactly two ints"
    if isinstance(value, (str, bool)):  # iterable or int-like, but never a size to torch
        raise TypeError(f"{op}: {name} must be {need}; got {value!r}")
    try:
        values = list(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be {need}; got {value!r}") from None
    if one and len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise ValueError(f"{op}: {name} must be {need}; got {value!r}")
    ints = [_as_int(v) for v in values]
    if any(i is None and not (none and v is None) for i, v in zip(ints, values)):
        raise TypeError(f"{op}: {name} must be {need}; got {value!r}")
    return ints


def pool_stride(stride, kernel_size: List, op: str) -> List:
    """Pooling's stride: None or an empty sequence means "the kernel size", as in torch."""
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        return kernel_size
    return pair(stride, "stride", op)


def batched(input: torch.Tensor, op: str) -> Tuple[torch.Tensor, bool]:
    """Accepts (C, H, W) like torch does, as a batch of one; returns (4-D input, was_3d)."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{op}: input must be a Tensor; got {type(input).__name__}")
    if input.dim() == 3:
        return input.unsqueeze(0), True
    if input.dim() != 4:
        raise RuntimeError(f"{op}: expected a 3-D (unbatched) or 4-D (batched) input; got a "
                           f"{input.dim()}-D input of size {list(input.shape)}")
    return input, False


def conv_padding(padding, weight_shape, stride, dilation,
                 op="cnnkern.conv2d") -> Tuple[List, Optional[List]]:
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
        if len(weight_shape) != 4:  # no kernel size to pad for: the op rejects the weight's rank
            return [0, 0], None
        if any(d <= 0 for d in dilation):  # a negative padding would be blamed: the op rejects
            return [0, 0], None           # the dilation
        total = [d * (k - 1) for d, k in zip(dilation, weight_shape[2:])]
        left = [t // 2 for t in total]
        extra = [t - 2 * l for t, l in zip(total, left)]
        return left, ([0, extra[1], 0, extra[0]] if any(extra) else None)
    return pair(padding, "padding", op), None


def _size_str(t: torch.Tensor) -> str:
    return str(list(t.shape))


def check_conv_transpose2d(x: torch.Tensor, weight, bias, stride: List, padding: List,
                           output_padding: List, dilation: List, groups,
                           op: str = "cnnkern.conv_transpose2d") -> List:
    """torch's checks of a transposed convolution, worded for `op`: the grad-input op that
    computes it would word its own as cnnkern.conv2d's, about the sizes of the conv it is the
    backward of. `x` is 4-D, the rest as `pair` and `integer` return them. Returns the output's
    [height, width]."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{op}: weight must be a Tensor; got {type(weight).__name__}")
    if weight.dim() != 4:
        raise RuntimeError(f"{op}: expected a 4-D weight (in_channels, out_channels/groups, kH, "
                           f"kW); got a {weight.dim()}-D weight of size {_size_str(weight)}")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"{op}: bias must be a Tensor or None; got {type(bias).__name__}")
    for name, v, low in (("stride", stride, 1), ("padding", padding, 0),
                         ("dilation", dilation, 1), ("output_padding", output_padding, 0)):
        if v[0] < low or v[1] < low:
            raise RuntimeError(f"{op}: {name} must be {'positive' if low else 'non-negative'}; "
                               f"got {name}={v}")
    if groups <= 0:
        raise RuntimeError(f"{op}: groups must be positive; got groups={groups}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device != x.device:
            raise RuntimeError(f"{op}: input and {name} must be on the same device; got input "
                               f"on {x.device} and {name} on {t.device}")
        if t is not None and t.dtype != x.dtype:
            raise RuntimeError(f"{op}: input and {name} must have the same dtype; got input "
                               f"{x.dtype} and {name} {t.dtype}")
    if any(s <= 0 for s in weight.shape):
        raise RuntimeError(f"{op}: weight sizes must be positive; got weight of size "
                           f"{_size_str(weight)}")
    if x.shape[1] != weight.shape[0]:
        raise RuntimeError(f"{op}: input has {x.shape[1]} channels but weight expects "
                           f"{weight.shape[0]} (weight.size(0), the in_channels); got input of "
                           f"size {_size_str(x)} and weight of size {_size_str(weight)}")
    if weight.shape[0] % groups != 0:
        raise RuntimeError(f"{op}: in_channels={weight.shape[0]} (weight.size(0)) must be "
                           f"divisible by groups={groups}")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[1] * groups):
        raise RuntimeError(f"{op}: expected bias to be 1-D with out_channels="
                           f"{weight.shape[1] * groups} elements (weight.size(1) x groups="
                           f"{groups}); got bias of size {_size_str(bias)}")
    if x.shape[2] == 0 or x.shape[3] == 0:  # torch: only the batch may be empty
        raise RuntimeError(f"{op}: input must have non-zero height and width; got input of size "
                           f"{_size_str(x)}")
    for i in range(2):
        if output_padding[i] >= stride[i] and output_padding[i] >= dilation[i]:
            raise ValueError(f"{op}: output_padding must be smaller than stride or dilation; "
                             f"got output_padding={output_padding}, stride={stride}, "
                             f"dilation={dilation}")
    size = [(x.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
            + dilation[i] * (weight.shape[2 + i] - 1) + output_padding[i] + 1 for i in range(2)]
    if size[0] < 1 or size[1] < 1:
        raise RuntimeError(f"{op}: output size is too small: input {x.shape[2]} x {x.shape[3]} "
                           f"gives output {size[0]} x {size[1]} with kernel "
                           f"{weight.shape[2]} x {weight.shape[3]}, stride={stride}, "
                           f"padding={padding}, dilation={dilation}, "
                           f"output_padding={output_padding}")
    return size
