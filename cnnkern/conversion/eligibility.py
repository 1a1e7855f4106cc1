"""Which modules `cnnkern.convert` can swap, and which algorithm a converted conv runs: each
question answered with "" (it can) or the reason, which goes into the report.

LAYERS is the one table of the module types convert knows: those it replaces (with the
cnnkern layer they become), and those it cannot (with the reason), so that the report lists
every layer a user might have expected to be converted. A module's row is that of the
nearest class in its MRO that has one (a dynamic quantized conv is a quantized conv; a
LazyConv2d, a subclass of nn.Conv2d, has its own row before nn.Conv2d's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.ao.nn.intrinsic.qat as _intrinsic_qat
import torch.ao.nn.qat as _qat
import torch.ao.nn.quantized as _quantized
import torch.ao.nn.quantized.reference as _reference
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
        if t.is_floating_point() or t.is_complex():  # not the integer buffers (BN's counter)
            why = device_problem(t, f"the model's {name}")
            if why:
                return why
    return ""


def _weight_problem(m: nn.Module, model_problem: str) -> str:
    return device_problem(m.weight)


def _transposed_problem(m: nn.ConvTranspose2d, model_problem: str) -> str:
    # torch's constructor refuses other modes, but the attribute can be set afterwards (its
    # forward then raises); cnnkern.nn.ConvTranspose2d's constructor refuses them too.
    if m.padding_mode != "zeros":
        return (f"padding_mode={m.padding_mode!r}: a transposed convolution pads with zeros "
                f"only (torch's forward refuses it as well)")
    return device_problem(m.weight)


def _pool_problem(m: nn.Module, model_problem: str) -> str:
    return model_problem


@dataclass(frozen=True)
class Layer:
    """A row of LAYERS: the report's kind for modules of this type, and either how to replace
    one (`make(module, algo)`, after `problem(module, model_problem)` found nothing against
    it) or why modules of this type are never replaced (`never`)."""

    kind: str
    make: Optional[Callable[[nn.Module, str], nn.Module]] = None
    problem: Optional[Callable[[nn.Module, str], str]] = None
    never: str = ""


def _not_2d(what: str) -> str:
    return f"{what}: cnnkern's kernels are 2-D only"


_LAZY = ("an uninitialised lazy module (its weight has no shape until the first forward); "
         "run one forward, which makes it an nn.{}, then convert")
_QUANTIZED = ("a quantized conv (integer weights and activations); cnnkern's kernels are "
              "floating-point only")
_FAKE_QUANT = ("{}: its forward quantizes and dequantizes the weight, which a cnnkern conv "
               "would skip; convert the float model instead")
_ALREADY = "already a cnnkern.nn.{}"

LAYERS: Dict[type, Layer] = {
    # Replaced.
    nn.Conv2d: Layer("conv2d", lambda m, algo: cnn.Conv2d.from_torch(m, algo), _weight_problem),
    nn.ConvTranspose2d: Layer("conv_transpose2d",
                              lambda m, algo: cnn.ConvTranspose2d.from_torch(m, algo),
                              _transposed_problem),
    nn.MaxPool2d: Layer("max_pool2d", lambda m, algo: cnn.MaxPool2d.from_torch(m), _pool_problem),
    nn.AvgPool2d: Layer("avg_pool2d", lambda m, algo: cnn.AvgPool2d.from_torch(m), _pool_problem),
    nn.AdaptiveAvgPool2d: Layer("adaptive_avg_pool2d",
                                lambda m, algo: cnn.AdaptiveAvgPool2d.from_torch(m),
                                _pool_problem),
    # Already cnnkern's.
    FusedConvBatchNorm2d: Layer("conv2d", never="already converted (a cnnkern fused conv)"),
    cnn.Conv2d: Layer("conv2d", never=_ALREADY.format("Conv2d")),
    cnn.ConvTranspose2d: Layer("conv_transpose2d", never=_ALREADY.format("ConvTranspose2d")),
    cnn.MaxPool2d: Layer("max_pool2d", never=_ALREADY.format("MaxPool2d")),
    cnn.AvgPool2d: Layer("avg_pool2d", never=_ALREADY.format("AvgPool2d")),
    cnn.AdaptiveAvgPool2d: Layer("adaptive_avg_pool2d", never=_ALREADY.format("AdaptiveAvgPool2d")),
    # Never replaced: other dimensions.
    nn.Conv1d: Layer("conv1d", never=_not_2d("a 1-D convolution")),
    nn.Conv3d: Layer("conv3d", never=_not_2d("a 3-D convolution")),
    nn.ConvTranspose1d: Layer("conv_transpose1d", never=_not_2d("a 1-D transposed convolution")),
    nn.ConvTranspose3d: Layer("conv_transpose3d", never=_not_2d("a 3-D transposed convolution")),
    nn.MaxPool1d: Layer("max_pool1d", never=_not_2d("1-D pooling")),
    nn.MaxPool3d: Layer("max_pool3d", never=_not_2d("3-D pooling")),
    nn.AvgPool1d: Layer("avg_pool1d", never=_not_2d("1-D pooling")),
    nn.AvgPool3d: Layer("avg_pool3d", never=_not_2d("3-D pooling")),
    nn.AdaptiveAvgPool1d: Layer("adaptive_avg_pool1d", never=_not_2d("1-D pooling")),
    nn.AdaptiveAvgPool3d: Layer("adaptive_avg_pool3d", never=_not_2d("3-D pooling")),
    # Never replaced: uninitialised lazy convs (an initialised one is an nn.Conv2d...).
    nn.LazyConv1d: Layer("conv1d", never=_LAZY.format("Conv1d")),
    nn.LazyConv2d: Layer("conv2d", never=_LAZY.format("Conv2d")),
    nn.LazyConv3d: Layer("conv3d", never=_LAZY.format("Conv3d")),
    nn.LazyConvTranspose1d: Layer("conv_transpose1d", never=_LAZY.format("ConvTranspose1d")),
    nn.LazyConvTranspose2d: Layer("conv_transpose2d", never=_LAZY.format("ConvTranspose2d")),
    nn.LazyConvTranspose3d: Layer("conv_transpose3d", never=_LAZY.format("ConvTranspose3d")),
    # Never replaced: 2-D pooling cnnkern has no kernel for.
    nn.AdaptiveMaxPool1d: Layer("adaptive_max_pool1d", never=_not_2d("1-D pooling")),
    nn.AdaptiveMaxPool2d: Layer("adaptive_max_pool2d",
                                never="cnnkern has no adaptive max pooling kernel"),
    nn.AdaptiveMaxPool3d: Layer("adaptive_max_pool3d", never=_not_2d("3-D pooling")),
    nn.LPPool1d: Layer("lp_pool1d", never=_not_2d("1-D pooling")),
    nn.LPPool2d: Layer("lp_pool2d", never="cnnkern has no power-average (LP) pooling kernel"),
    nn.LPPool3d: Layer("lp_pool3d", never=_not_2d("3-D pooling")),
    nn.FractionalMaxPool2d: Layer("fractional_max_pool2d",
                                  never="cnnkern has no fractional (random-window) max pooling "
                                        "kernel"),
    nn.FractionalMaxPool3d: Layer("fractional_max_pool3d", never=_not_2d("3-D pooling")),
    nn.MaxUnpool1d: Layer("max_unpool1d", never=_not_2d("1-D unpooling")),
    nn.MaxUnpool2d: Layer("max_unpool2d", never="cnnkern has no max unpooling kernel"),
    nn.MaxUnpool3d: Layer("max_unpool3d", never=_not_2d("3-D unpooling")),
    # Never replaced: quantization (dynamic and fused quantized convs inherit these rows).
    _quantized.Conv1d: Layer("quantized_conv1d", never=_QUANTIZED),
    _quantized.Conv2d: Layer("quantized_conv2d", never=_QUANTIZED),
    _quantized.Conv3d: Layer("quantized_conv3d", never=_QUANTIZED),
    _quantized.ConvTranspose1d: Layer("quantized_conv_transpose1d", never=_QUANTIZED),
    _quantized.ConvTranspose2d: Layer("quantized_conv_transpose2d", never=_QUANTIZED),
    _quantized.ConvTranspose3d: Layer("quantized_conv_transpose3d", never=_QUANTIZED),
    _qat.Conv2d: Layer("conv2d", never=_FAKE_QUANT.format("a quantization-aware-training conv")),
    _intrinsic_qat.ConvBn2d: Layer("conv2d", never=_FAKE_QUANT.format(
        "a quantization-aware-training conv + BN")),
    _reference.Conv2d: Layer("conv2d", never=_FAKE_QUANT.format(
        "a reference quantized conv")),
    _reference.ConvTranspose2d: Layer("conv_transpose2d", never=_FAKE_QUANT.format(
        "a reference quantized transposed conv")),
}


def lookup(m: nn.Module) -> Optional[Tuple[type, Layer]]:
    """(the class whose row applies, the row) for `m`, or None if convert has nothing to say."""
    for cls in type(m).__mro__:
        if cls in LAYERS:
            return cls, LAYERS[cls]
    return None


def replace_problem(m: nn.Module, model_problem: str = "") -> str:
    """Why `m` (a module LAYERS has a row for) is not replaced ("" if it is).

    model_problem: pool_problem(model), which decides for layers without tensors of their own.
    """
    cls, layer = lookup(m)
    return layer.never or swap_problem(m, cls) or layer.problem(m, model_problem)


def conv_problem(conv: nn.Module) -> str:
    """Why `conv` cannot be fused with the BN after it ("" if it can): a cnnkern Conv2d can
    (convert does not re-create it), a torch one if convert could replace it."""
    if type(conv) is cnn.Conv2d:
        return ""
    return replace_problem(conv)


def algo_for_layer(conv: nn.Module, algo: str) -> Tuple[str, str]:
    """(algorithm for this layer, note): `algo`, or "auto" where `algo` cannot run the layer.

    Whether an algorithm can run a convolution depends on the kernel, stride, dilation, groups,
    dtype and device (not on the input's height and width), so a small probe input decides.
    A transposed conv runs the grad-input pass of the conv whose weight it has (in_channels
    of that conv: the transposed conv's out_channels); the algorithms' rules do not depend on
    the pass.
    """
    if algo == "auto" or conv.weight.device.type == "meta":
        return algo, ""
    transposed = isinstance(conv, nn.ConvTranspose2d)
    k = conv.weight.shape[2:]
    size = [max(16, d * (kk - 1) + 1) for d, kk in zip(conv.dilation, k)]
    probe = torch.empty(1, conv.out_channels if transposed else conv.in_channels, *size,
                        dtype=conv.weight.dtype, device=conv.weight.device)
    ok, why = _algo.can_implement(probe, conv.weight, None, conv.stride,
                                  0 if conv.padding_mode != "zeros" else conv.padding,
                                  conv.dilation, conv.groups, algo=algo)
    if ok:
        return algo, ""
    return "auto", f"{why}, so it runs 'auto'"
