"""Arguments as torch.nn.functional takes them, turned into what the ops' schemas take.

Shared by functional.py (the entry points), algo.py (which must see a call's problem exactly
as the op will) and nn.py; it imports nothing of cnnkern's, so none of them import each other
for it.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch


def pair(value, name: str, op: str) -> List:
    """int -> [int, int]; a 1- or 2-sequence -> a 2-list; anything else is a clear error."""
    if isinstance(value, (int, torch.SymInt)) and not isinstance(value, bool):
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
        total = [d * (k - 1) for d, k in zip(dilation, weight_shape[2:])]
        left = [t // 2 for t in total]
        extra = [t - 2 * l for t, l in zip(total, left)]
        return left, ([0, extra[1], 0, extra[0]] if any(extra) else None)
    return pair(padding, "padding", op), None
