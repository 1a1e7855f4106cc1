"""torch.nn.functional-compatible entry points for cnnkern's ops, and the fused
conv + BatchNorm (+ ReLU) with its BN folding.

Each function takes the same arguments as its torch.nn.functional namesake (plus `algo=` for
convolution), normalises them (int -> pair, "same"/"valid" padding, unbatched 3-D input:
_args.py) and calls the registered op, which does the argument checks. Python checks only
what never reaches an op: the BatchNorm tensors conv_bn_relu folds or updates itself.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from . import backends as _backends
from . import tuning as _tuning
from ._args import batched as _batched
from ._args import conv_padding  # noqa: F401  (public: padding as these functions resolve it)
from ._args import pair as _pair

IntOrPair = Union[int, Sequence[int]]

_ops = torch.ops.cnnkern


def _conv_args(op, input, weight, stride, padding, dilation, algo):
    """(4-D input, was_3d, stride, padding, dilation) as the conv ops take them; "same"
    padding with an odd total pads the input's right/bottom here, as torch does."""
    if not isinstance(algo, str):
        raise TypeError(f"{op}: algo must be a string; got {algo!r}")
    x, unbatched = _batched(input, op)
    stride = _pair(stride, "stride", op)
    dilation = _pair(dilation, "dilation", op)
    pad, extra = conv_padding(padding, weight.shape, stride, dilation, op)
    if extra is not None:
        x = F.pad(x, extra)
    return x, unbatched, stride, pad, dilation


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           stride: IntOrPair = 1, padding: Union[IntOrPair, str] = 0, dilation: IntOrPair = 1,
           groups: int = 1, *, algo: str = "auto") -> torch.Tensor:
    """2-D convolution (cross-correlation, as torch.nn.functional.conv2d) by `algo`."""
    x, unbatched, stride, pad, dilation = _conv_args("cnnkern.conv2d", input, weight, stride,
                                                     padding, dilation, algo)
    out = folded_conv(x, weight, bias, stride, pad, dilation, groups, relu=False, algo=algo)
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
    out = _ops.conv2d_backward_input(x, weight, out_size, stride, padding, dilation, groups, algo,
                                     _backends.get_allow_tf32())
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


# --- fused conv + BatchNorm (+ ReLU) ------------------------------------------------------

def fold_bn(weight: torch.Tensor, bias: Optional[torch.Tensor], bn_weight: Optional[torch.Tensor],
            bn_bias: Optional[torch.Tensor], running_mean: torch.Tensor,
            running_var: torch.Tensor, eps: float = 1e-5) -> Tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm (eval) folded into the conv before it: (w', b') with
    w' = w * gamma / sqrt(var + eps) and b' = (b - mean) * gamma / sqrt(var + eps) + beta,
    computed in float64 and rounded once to the weight's dtype. Differentiable."""
    dt = weight.dtype
    scale = torch.sqrt(running_var.double() + eps).reciprocal()
    if bn_weight is not None:
        scale = scale * bn_weight.double()
    w = (weight.double() * scale.view(-1, 1, 1, 1)).to(dt)
    b = -running_mean.double() if bias is None else bias.double() - running_mean.double()
    b = b * scale
    if bn_bias is not None:
        b = b + bn_bias.double()
    return w, b.to(dt)


def _check_bn_args(op, x, weight, bn_weight, bn_bias, running_mean, running_var):
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        shape = list(weight.shape) if isinstance(weight, torch.Tensor) else weight
        raise RuntimeError(f"{op}: expected a 4-D weight (out_channels, in_channels/groups, kH, "
                           f"kW); got {shape}")
    k = weight.shape[0]
    for name, t in (("bn_weight", bn_weight), ("bn_bias", bn_bias),
                    ("running_mean", running_mean), ("running_var", running_var)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor or None; got {type(t).__name__}")
        if t.dim() != 1 or t.shape[0] != k:
            raise RuntimeError(f"{op}: {name} must have {k} elements (the conv's out_channels, "
                               f"weight.size(0)); got size {list(t.shape)}")
        if t.device != x.device:
            raise RuntimeError(f"{op}: input and {name} must be on the same device; got input on "
                               f"{x.device} and {name} on {t.device}")
        if t.dtype != x.dtype:
            raise RuntimeError(f"{op}: input and {name} must have the same dtype; got input "
                               f"{x.dtype} and {name} {t.dtype}")


def conv_bn_relu(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                 bn_weight: Optional[torch.Tensor], bn_bias: Optional[torch.Tensor],
                 running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor],
                 training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
                 stride: IntOrPair = 1, padding: Union[IntOrPair, str] = 0,
                 dilation: IntOrPair = 1, groups: int = 1, *, relu: bool = True,
                 algo: str = "auto", fold: Optional[Callable] = None) -> torch.Tensor:
    """relu(batch_norm(conv2d(input, weight, bias, ...), ...)) in one fused layer.

    Arguments as F.conv2d and F.batch_norm (momentum is the already-resolved exponential
    average factor; running stats may be None when training, then only the batch statistics
    are used; they are updated in place when training). relu=False gives conv + BN.

    Eval (training=False): BN is folded into the conv's weight and bias and the ReLU runs in
    the conv algorithm's epilogue: one convolution, one pass over the output. `fold` does the
    folding, with fold_bn's arguments and result (fold_bn when None; cnnkern.nn's fused
    layers pass one that caches).
    Training: the conv, then one statistics pass and one normalise+ReLU pass over its output
    (cnnkern::bn_relu_train; cnnkern/_registrations/bn_relu.py says what is saved for
    backward).
    """
    op = "cnnkern.conv_bn_relu"
    x, unbatched, stride, pad, dilation = _conv_args(op, input, weight, stride, padding,
                                                     dilation, algo)
    _check_bn_args(op, x, weight, bn_weight, bn_bias, running_mean, running_var)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError(f"{op}: running_mean and running_var are needed when not training "
                             f"(training=False); got running_mean "
                             f"{'None' if running_mean is None else 'given'} and running_var "
                             f"{'None' if running_var is None else 'given'}")
        w, b = (fold or fold_bn)(weight, bias, bn_weight, bn_bias, running_mean, running_var, eps)
        out = folded_conv(x, w, b, stride, pad, dilation, groups, relu=relu, algo=algo)
    else:
        z = folded_conv(x, weight, bias, stride, pad, dilation, groups, relu=False, algo=algo)
        out, mean, _invstd, var = _ops.bn_relu_train(z, bn_weight, bn_bias, float(eps),
                                                     bool(relu))
        count = z.numel() // max(z.shape[1], 1)
        if count > 0 and (running_mean is not None or running_var is not None):
            # An empty batch leaves the running statistics as they were (as F.batch_norm).
            _update_running_stats(running_mean, running_var, mean, var, count, momentum)
    return out.squeeze(0) if unbatched else out


def folded_conv(x, w, b, stride, pad, dilation, groups, *, relu, algo):
    """One convolution, the ReLU in its epilogue when relu; arguments already resolved.
    Autotuning (cnnkern.tuning) picks `algo` here when it is "auto"."""
    if algo == "auto" and _tuning.enabled():
        algo = _tuning.choose(x, w, b, stride, pad, dilation, groups)
    conv = _ops.conv2d_relu if relu else _ops.conv2d
    return conv(x, w, b, stride, pad, dilation, groups, algo, _backends.get_allow_tf32())


def _update_running_stats(running_mean, running_var, mean, var, count, momentum):
    """As nn.BatchNorm2d: r = (1 - momentum) * r + momentum * batch value, the batch variance
    unbiased (count / (count - 1)); computed in float64, rounded once."""
    with torch.no_grad():
        m = float(momentum)
        if running_mean is not None:
            running_mean.copy_(running_mean.double() * (1 - m) + mean.double() * m)
        if running_var is not None:
            unbiased = var.double() * (count / (count - 1))
            running_var.copy_(running_var.double() * (1 - m) + unbiased * m)
