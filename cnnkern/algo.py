"""Which convolution algorithms exist, which can run a problem, and what "auto" picks.

The rules live in C++ (each algorithm's can-implement check, csrc/ops/conv2d_algo.cpp);
this module asks them through introspection ops, so Python and the kernels never disagree:
the algorithm names and the dtypes the kernels take come from the C++ registry too.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from ._args import conv_padding
from ._args import pair as _pair

_ops = torch.ops.cnnkern


def algorithms(device: str = "cpu") -> List[str]:
    """The convolution algorithms built for `device` ("cpu" or "cuda")."""
    return list(_ops.conv2d_algorithms(str(torch.device(device).type)))


# Every algorithm this build has, on any backend, in registration order (the `algo=` values
# besides "auto"; explain() lists the ones a device lacks as "not built"): the C++ registry's
# own list, the one the ops check `algo=` against.
KNOWN_ALGORITHMS = tuple(_ops.conv2d_known_algorithms())

# The floating dtypes torch has, which dtypes() asks the registry about.
_FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def dtypes(device: str = "cpu") -> Tuple[torch.dtype, ...]:
    """The dtypes cnnkern's kernels take on `device` ("cpu" or "cuda"; none where no kernel
    is built): those for which "auto" finds a convolution algorithm for a 1x1 problem."""
    device = str(torch.device(device).type)
    return tuple(dt for dt in _FLOATING
                 if not _ops.conv2d_why_not([1, 1, 1, 1], [1, 1, 1, 1], [1, 1], [0, 0], [1, 1],
                                            1, dt, device, "auto"))


def _problem(input, weight, stride, padding, dilation):
    """(input size, weight size, stride, padding, dilation) as the op sees them."""
    in_size = list(input.shape)
    if len(in_size) == 3:
        in_size = [1] + in_size
    stride = _pair(stride, "stride", "cnnkern.conv2d")
    dilation = _pair(dilation, "dilation", "cnnkern.conv2d")
    pad, extra = conv_padding(padding, weight.shape, stride, dilation)
    if extra is not None:  # "same" with an odd total padding: the explicit pad grows the input
        in_size[2] += extra[3]
        in_size[3] += extra[1]
    return in_size, list(weight.shape), stride, pad, dilation


def can_implement(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                  stride=1, padding=0, dilation=1, groups: int = 1, *,
                  algo: str) -> Tuple[bool, str]:
    """(True, "") if `algo` can run this convolution on the input's device, else (False, why)."""
    try:
        args = _problem(input, weight, stride, padding, dilation)
        reason = _ops.conv2d_why_not(*args, groups, input.dtype, input.device.type, algo)
    except (RuntimeError, ValueError) as e:
        reason = str(e).splitlines()[0]
    return (not reason, reason)


def select(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           stride=1, padding=0, dilation=1, groups: int = 1, *, algo: str = "auto",
           pass_: str = "fwd") -> str:
    """The algorithm a call with these arguments runs for `pass_` ("fwd", "bwd_input" or
    "bwd_weight": "auto" may pick a different one for each); raises if none can."""
    args = _problem(input, weight, stride, padding, dilation)
    return _ops.conv2d_select(*args, groups, input.dtype, input.device.type, algo, pass_)


def explain(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
            stride=1, padding=0, dilation=1, groups: int = 1, *, algo: str = "auto") -> str:
    """A few lines: what `algo` runs for this convolution, and each algorithm's status."""
    device = input.device.type
    lines = []
    try:
        chosen = {p: select(input, weight, bias, stride, padding, dilation, groups, algo=algo,
                            pass_=p) for p in ("fwd", "bwd_input", "bwd_weight")}
        how = "picked by auto" if algo == "auto" else "as requested"
        if len(set(chosen.values())) == 1:
            lines.append(f"runs: {chosen['fwd']} ({how}) on {device}")
        else:
            each = ", ".join(f"{name} for {p}" for p, name in chosen.items())
            lines.append(f"runs: {each} ({how}) on {device}")
    except (RuntimeError, ValueError) as e:
        lines.append(f"cannot run: {str(e).splitlines()[0]}")
    built = algorithms(device)
    for name in KNOWN_ALGORITHMS:
        if name not in built:
            lines.append(f"  {name}: not built for {device}")
            continue
        ok, why = can_implement(input, weight, bias, stride, padding, dilation, groups, algo=name)
        lines.append(f"  {name}: {'can run' if ok else why}")
    return "\n".join(lines)
