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
            stride=1, padding=0, dilation=1, groups: int = 1, *, algo: str = "auto",
            measure: bool = False):
    """What a cnnkern.conv2d call with these arguments runs, per pass, and why.

    Returns a cnnkern.explanation.Explanation: `print()` it, or read it (`.passes`, `.runs()`,
    `.to_dict()`, JSON-ready). Per pass ("fwd", "bwd_input", "bwd_weight"): the algorithm that
    runs and what decided it (the auto rule's clause as the C++ rule states it, "requested",
    or the autotuner's recorded timings when it is on and has timed this call's key); per
    algorithm: whether it can run (else why), and its workspace bytes per call and per thread
    as the algorithm estimates them. With measure=True every algorithm that can run is timed
    on random data of these shapes and its error against a float64 reference measured
    (max |y - y64| / max |y64|); otherwise those fields are None.
    """
    from . import explanation

    if not isinstance(algo, str):
        raise TypeError(f"cnnkern.explain: algo must be a string; got {algo!r}")
    if not isinstance(measure, bool):
        raise TypeError(f"cnnkern.explain: measure must be True or False; got {measure!r}")
    if measure and input.device.type not in ("cpu", "cuda"):
        raise ValueError(f"cnnkern.explain: measure=True needs tensors on the CPU or a GPU to "
                         f"run; got input on {input.device}")
    return explanation.build(input, weight, bias, stride, padding, dilation, groups, algo,
                             measure)
