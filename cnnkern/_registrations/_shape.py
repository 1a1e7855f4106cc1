"""What the fake kernels share: size formatting and the ways an output cannot be formed.

A fake kernel only computes its outputs' sizes, dtypes, devices and layouts. It raises only
where they do not exist: a rank it cannot unpack, a stride it would divide by, an output with
no element, tensors on several devices (a meta tensor among CPU ones sends even an eager call
to the fake, not to the C++ op). Every other check is the C++ op's (csrc/ops/checks.cpp),
which still runs at run time under torch.compile. A fake cannot know which argument the C++
op would blame first, so its messages quote every argument the size depends on. Sizes may be
SymInts: torch._check records a guard (or a run-time assert) instead of reading their values.
"""

from __future__ import annotations

import torch


def sizes_str(sizes) -> str:
    return "[" + ", ".join(str(s) for s in sizes) + "]"


def check_rank(op: str, what: str, size, rank: int, dims: str) -> None:
    """`size` (a tensor's sizes, or a size argument) has `rank` entries; `dims` names them."""
    torch._check(len(size) == rank,
                 lambda: (f"{op}: expected a {rank}-D {what} ({dims}); got a {len(size)}-D "
                          f"{what} of size {sizes_str(size)}"))


def check_shape(op: str, cond, why, **args) -> None:
    """Raises "`op`: why (name=value, ...)" unless `cond`; `why` is a str or a callable
    returning one (called only on failure), `args` the arguments the output size depends on."""
    def message():
        quoted = ", ".join(f"{k}={sizes_str(v) if isinstance(v, (list, tuple, torch.Size)) else v}"
                           for k, v in args.items())
        return f"{op}: {why() if callable(why) else why} ({quoted})"

    torch._check(cond, message)


def check_same_device(op: str, **tensors) -> None:
    """The tensors given (None for an absent optional one) are on one device, the output's."""
    present = [(name, t) for name, t in tensors.items() if t is not None]
    first, ref = present[0]
    for name, t in present[1:]:
        torch._check(t.device == ref.device,
                     lambda: (f"{op}: {first} and {name} must be on the same device; got {first} "
                              f"on {ref.device} and {name} on {t.device}"))
