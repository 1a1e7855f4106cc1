"""Which modules `cnnkern.convert` can swap, and which algorithm a converted conv runs: each
question answered with "" (it can) or the reason, which goes into the report."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from .. import algo as _algo
from .. import nn as cnn
from ..nn import FusedConvBatchNorm2d


def hooks(m: nn.Module) -> str:
    """The kinds of hooks registered on `m` (a swap would drop them), or ""."""
    kinds = [k for k in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                         "_backward_pre_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
                         "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")
             if getattr(m, k, None)]
    return ", ".join(k.strip("_") for k in kinds)


def type_problem(m: nn.Module, torch_type: type) -> str:
    if type(m) is torch_type:
        return ""
    if torch.nn.utils.parametrize.is_parametrized(m):
        return "parametrized (torch.nn.utils.parametrize); left as it is"
    return (f"its type {type(m).__module__}.{type(m).__qualname__} is a subclass of "
            f"nn.{torch_type.__name__} whose forward may differ; left as it is")


def swap_problem(m: nn.Module, torch_type: type) -> str:
    """Why `m` cannot be swapped for cnnkern's twin of `torch_type`, as far as its type and its
    hooks tell ("" if it can)."""
    return type_problem(m, torch_type) or (
        f"has hooks ({hooks(m)}) that a swap would drop" if hooks(m) else "")


def device_problem(t: torch.Tensor, what: str = "its weight") -> str:
    """Why cnnkern has no kernels for tensors like `t` ("" if it has)."""
    device = t.device.type
    if device == "meta":
        return ""
    if device == "cuda":
        from .. import cuda_built
        if not cuda_built():
            return f"{what} is on cuda but cnnkern was built without its CUDA kernels"
    if device not in ("cpu", "cuda"):  # cnnkern's two backends
        return f"{what} is on {device}, which has no cnnkern kernels"
    if t.dtype not in _algo.dtypes(device):
        allowed = ", ".join(str(d).replace("torch.", "") for d in _algo.dtypes(device))
        return (f"{what} has dtype {str(t.dtype).replace('torch.', '')}; cnnkern's "
                f"{device} kernels take {allowed}")
    return ""


def pool_problem(model: nn.Module) -> str:
    """A pooling layer has no tensor of its own: the model's say what it will be fed."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point():
            why = device_problem(t, f"the model's {name}")
            if why:
                return why
    return ""


def conv_problem(conv: nn.Module) -> str:
    """Why `conv` cannot become a cnnkern conv ("" if it can)."""
    if isinstance(conv, FusedConvBatchNorm2d):
        return "already converted (a cnnkern fused conv)"
    if type(conv) is cnn.Conv2d:
        return ""
    return swap_problem(conv, nn.Conv2d) or device_problem(conv.weight)


def algo_for_layer(conv: nn.Conv2d, algo: str) -> Tuple[str, str]:
    """(algorithm for this layer, note): `algo`, or "auto" where `algo` cannot run the layer.

    Whether an algorithm can run a convolution depends on the kernel, stride, dilation, groups,
    dtype and device (not on the input's height and width), so a small probe input decides.
    """
    if algo == "auto" or conv.weight.device.type == "meta":
        return algo, ""
    k = conv.weight.shape[2:]
    size = [max(16, d * (kk - 1) + 1) for d, kk in zip(conv.dilation, k)]
    probe = torch.empty(1, conv.in_channels, *size, dtype=conv.weight.dtype,
                        device=conv.weight.device)
    ok, why = _algo.can_implement(probe, conv.weight, conv.bias, conv.stride,
                                  0 if conv.padding_mode != "zeros" else conv.padding,
                                  conv.dilation, conv.groups, algo=algo)
    if ok:
        return algo, ""
    return "auto", f"{why}, so it runs 'auto'"
