"""cnnkern's CUDA backend on the CPU: loads the emulated library (build.py) and routes cnnkern's
ops to it.

    import sys; sys.path.insert(0, "csrc/testing/cuda_emu")
    import emulator, torch, cnnkern
    emulator.load()
    with emulator.CudaEmulation():
        y = cnnkern.conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), algo="im2col")

Inside CudaEmulation every call of a `torch.ops.cnnkern.*` op that has a CUDA implementation
(forward and backward, from autograd, nn modules, convert, ...) runs `torch.ops.cnnkern_emu.*`
instead: the same op bodies, CUDA glue and kernels a GPU runs, on CPU tensors; everything else
(torch's own ops, the references) runs as usual.
"""

from __future__ import annotations

import os
import zlib

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch._subclasses.functional_tensor import FunctionalTensor
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

import build

ORDERS = ("forward", "reverse", "random")
_loaded: str | None = None
_order: tuple[str, int] = ("forward", 0)


def _preloaded(runtime: str) -> bool:
    """Whether a sanitizer runtime (libasan / libtsan) is in this process."""
    try:
        with open("/proc/self/maps") as f:
            return any(runtime in line for line in f)
    except OSError:
        return False


def default_flavour() -> str:
    """CNNKERN_EMU_FLAVOUR, else the sanitizer this process was started with, else plain."""
    forced = os.environ.get("CNNKERN_EMU_FLAVOUR", "").strip()
    if forced:
        return forced
    if _preloaded("libasan"):
        return "asan"
    if _preloaded("libtsan"):
        return "tsan"
    return "plain"


def load(flavour: str | None = None) -> str:
    """Builds (when a source changed) and loads the emulated library; returns its flavour.
    One flavour per process: an ASan or TSan build needs its runtime preloaded."""
    global _loaded
    flavour = flavour or default_flavour()
    if _loaded is None:
        torch.ops.load_library(str(build.build(flavour)))
        _loaded = flavour
    elif _loaded != flavour:
        raise RuntimeError(f"cuda_emu: the {_loaded} library is loaded; cannot load {flavour}")
    return _loaded


def loaded() -> str | None:
    return _loaded


def _emulated(func):
    """The cnnkern_emu overload standing for a cnnkern one, or None (a CPU-only op)."""
    if func.namespace != "cnnkern":
        return None
    packet = getattr(torch.ops.cnnkern_emu, func._opname, None)
    if packet is None:
        return None
    return getattr(packet, func._overloadname, None)


def _concrete(args, kwargs) -> bool:
    """Real tensors only: fake and meta tensors (opcheck, torch.compile) keep cnnkern's own fake
    kernels, which stand for every backend."""
    for leaf in pytree.tree_leaves((args, kwargs)):
        if isinstance(leaf, torch.Tensor) and (
                isinstance(leaf, (FakeTensor, FunctionalTensor)) or leaf.is_meta):
            return False
    return True


class CudaEmulation(TorchDispatchMode):
    """Routes cnnkern ops to the emulated CUDA backend (see the module docstring). `routed`
    counts the calls it sent there."""

    def __init__(self):
        super().__init__()
        self.routed = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = _emulated(func)
        if target is not None and _concrete(args, kwargs):
            self.routed += 1
            return target(*_as_cuda_device(func, args), **kwargs)
        return func(*args, **kwargs)


def _as_cuda_device(func, args):
    """The introspection ops' `device` argument (conv2d_algorithms, conv2d_why_not,
    conv2d_select, conv2d_explain): under emulation the CPU tensors stand for CUDA ones, so
    "cpu" asks the emulated CUDA backend (the only one the emulated library has)."""
    names = [a.name for a in func._schema.arguments]
    if "device" not in names:
        return args
    i = names.index("device")
    if i < len(args) and isinstance(args[i], str) and args[i].split(":")[0] == "cpu":
        args = args[:i] + ("cuda",) + args[i + 1:]
    return args


def set_order(order: str, seed: int = 0) -> None:
    """Threads between synchronisation points, and blocks, run in this order (ORDERS)."""
    global _order
    torch.ops.cnnkern_emu._emu_set_order(ORDERS.index(order), seed)
    _order = (order, seed)


def current_order() -> tuple[str, int]:
    return _order


def order_for(name: str) -> tuple[str, int]:
    """A fixed order and seed for a name (a test's id): every order is used across a suite,
    each test always gets the same one."""
    h = zlib.crc32(name.encode())
    return ORDERS[h % len(ORDERS)], h


def stats() -> dict[str, int]:
    keys = ("launches", "blocks", "threads", "barriers", "warp_collectives", "mmas", "ldmatrices",
            "cp_asyncs")
    return dict(zip(keys, torch.ops.cnnkern_emu._emu_stats()))


def algorithms() -> list[str]:
    """The CUDA convolution algorithms of the emulated build."""
    return list(torch.ops.cnnkern_emu.conv2d_algorithms("cuda"))


def why_not(input_size, weight_size, stride, padding, dilation, groups, dtype, algo) -> str:
    """The CUDA rules' reason `algo` cannot run a problem ("" if it can)."""
    return torch.ops.cnnkern_emu.conv2d_why_not(list(input_size), list(weight_size), stride,
                                                padding, dilation, groups, dtype, "cuda", algo)
