"""What the fake kernels share: size formatting and the ways an output cannot be formed.

A fake kernel computes its outputs' sizes, dtypes, devices and layouts, and raises where
they do not exist: a rank it cannot unpack, a stride it would divide by, an output with no
element, tensors on several devices or of several dtypes (a meta tensor among CPU ones sends
even an eager call to the fake, not to the C++ op). The convolution fakes also run the C++
op's own size checks (csrc/ops/checks.cpp, through the sizes-only introspection op
conv2d_why_not) whenever the sizes are concrete, so FakeTensorMode, torch.compile and
torch.export refuse what eager mode refuses, with its message. Every remaining check is the
C++ op's, which still runs at run time under torch.compile. A fake cannot know which argument
the C++ op would blame first, so its own messages quote every argument the size depends on.
Sizes may be SymInts: torch._check records a guard (or a run-time assert) instead of reading
their values.
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


def _check_alike(op: str, tensors: dict, same: str, value) -> None:
    """The tensors given (None for an absent optional one) share value(t); else the C++ ops'
    message (check_same_device_dtype): "`op`: a and b must `same`; got a <value> and b ..."."""
    present = [(name, t) for name, t in tensors.items() if t is not None]
    first, ref = present[0]
    for name, t in present[1:]:
        torch._check(value(t) == value(ref),
                     lambda: (f"{op}: {first} and {name} must {same}; got {first} "
                              f"{value(ref)} and {name} {value(t)}"))


def check_same_device(op: str, **tensors) -> None:
    """The tensors given are on one device, the output's."""
    _check_alike(op, tensors, "be on the same device", lambda t: f"on {t.device}")


def check_same_dtype(op: str, **tensors) -> None:
    """The tensors given have one dtype (named as C++ names it: Float, Double, ...)."""
    _check_alike(op, tensors, "have the same dtype", lambda t: _c10_name(t.dtype))


def _c10_name(dtype: torch.dtype) -> str:
    """"Float" for torch.float32, as at::ScalarType prints (torch's legacy tensor type name)."""
    return torch.empty(0, dtype=dtype, device="meta").type().removeprefix("torch.").removesuffix(
        "Tensor").removeprefix("meta.")


def concrete(*sizes) -> bool:
    """Whether every size is a plain int (not a SymInt of a dynamic-shape trace)."""
    return all(type(s) is int for size in sizes for s in size)


def conv_layout(a: torch.Tensor, b: torch.Tensor) -> torch.memory_format:
    """torch's convolution rule (csrc/ops/layout.h): channels_last when either operand's
    strides suggest it, else contiguous."""
    from torch._prims_common import suggest_memory_format

    if torch.channels_last in (suggest_memory_format(a), suggest_memory_format(b)):
        return torch.channels_last
    return torch.contiguous_format


def empty_in(shape, like: torch.Tensor, layout: torch.memory_format,
             dtype: torch.dtype = None) -> torch.Tensor:
    """An uninitialised tensor of `shape` with at::empty's strides for `layout`."""
    return torch.empty(shape, dtype=like.dtype if dtype is None else dtype, device=like.device,
                       memory_format=layout)


def in_memory_format(t: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """As csrc/ops/layout.h: `t` when its strides are those empty_in gives, else a copy
    with them."""
    out = empty_in(t.shape, t, layout)
    return t if out.stride() == t.stride() else out.copy_(t)
