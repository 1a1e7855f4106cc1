"""torch.nn.functional-compatible entry points for cnnkern's ops, and the fused
conv + BatchNorm (+ ReLU) with its BN folding.

Each function takes the same arguments as its torch.nn.functional namesake (plus `algo=` for
convolution), normalises them (int -> pair, "same"/"valid" padding, unbatched 3-D input,
torch's type errors: _args.py) and calls the registered op, which does the argument checks.
Python checks only what never reaches an op as itself: the BatchNorm tensors conv_bn_relu
folds or updates itself, and conv_transpose2d's arguments (it runs on the grad-input op of
another convolution, whose checks would speak of that one).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from . import backends as _backends
from . import tuning as _tuning
from ._args import batched as _batched
from ._args import check_conv_transpose2d
from ._args import conv_padding  # noqa: F401  (public: padding as these functions resolve it)
from ._args import flag as _flag
from ._args import integer as _integer
from ._args import pair as _pair
from ._args import pool_stride as _pool_stride

IntOrPair = Union[int, Sequence[int]]

_ops = torch.ops.cnnkern


def _conv_args(op, input, weight, stride, padding, dilation, groups, algo):
    """(4-D input, was_3d, stride, padding, dilation, groups) as the conv ops take them; "same"
    padding with an odd total pads the input's right/bottom here, as torch does."""
    if not isinstance(algo, str):
        raise TypeError(f"{op}: algo must be a string; got {algo!r}")
    x, unbatched = _batched(input, op)
    stride = _pair(stride, "stride", op)
    dilation = _pair(dilation, "dilation", op)
    pad, extra = conv_padding(padding, weight.shape, stride, dilation, op)
    if extra is not None:
        x = F.pad(x, extra)
    return x, unbatched, stride, pad, dilation, _integer(groups, "groups", op)


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           stride: IntOrPair = 1, padding: Union[IntOrPair, str] = 0, dilation: IntOrPair = 1,
           groups: int = 1, *, algo: str = "auto") -> torch.Tensor:
    """2-D convolution (cross-correlation, as torch.nn.functional.conv2d) by `algo`."""
    x, unbatched, stride, pad, dilation, groups = _conv_args(
        "cnnkern.conv2d", input, weight, stride, padding, dilation, groups, algo)
    out = folded_conv(x, weight, bias, stride, pad, dilation, groups, relu=False, algo=algo)
    return out.squeeze(0) if unbatched else out


def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor,
                     bias: Optional[torch.Tensor] = None, stride: IntOrPair = 1,
                     padding: IntOrPair = 0, output_padding: IntOrPair = 0, groups: int = 1,
                     dilation: IntOrPair = 1, *, algo: str = "auto") -> torch.Tensor:
    """Transposed convolution as torch.nn.functional.conv_transpose2d.

    It is the grad-input of the convolution that maps the output size back to the input's,
    so it runs on the conv2d_backward_input kernels of `algo`; weight is laid out
    (in_channels, out_channels/groups, kH, kW) as in torch. Its arguments are checked here
    (_args.check_conv_transpose2d), so that every error names this function.
    """
    op = "cnnkern.conv_transpose2d"
    if not isinstance(algo, str):
        raise TypeError(f"{op}: algo must be a string; got {algo!r}")
    x, unbatched = _batched(input, op)
    stride = _pair(stride, "stride", op)
    padding = _pair(padding, "padding", op)
    output_padding = _pair(output_padding, "output_padding", op)
    dilation = _pair(dilation, "dilation", op)
    groups = _integer(groups, "groups", op)
    size = check_conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation,
                                  groups, op)
    out = _transposed_by_grad_input(op, x, weight, size, stride, padding, output_padding,
                                    dilation, groups, algo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out.squeeze(0) if unbatched else out


def _transposed_by_grad_input(op, x, weight, size, stride, padding, output_padding, dilation,
                              groups, algo):
    """The transposed convolution (no bias) of checked arguments, `size` its output's [H, W].

    Uncropped, it has full = (in - 1) * stride + dilation * (k - 1) + 1 rows, and the output is
    rows [padding, padding + size) of them, zeros past full. The grad-input op computes that
    crop when output_padding < stride: the conv of an input that size has this input's size.
    An output_padding allowed only by the dilation has no such conv, so along that axis the op
    computes all `full` rows unpadded, and F.pad crops `padding` rows off the front and adds
    output_padding - padding at the back (a crop when negative, zeros beyond `full` when not).
    """
    direct = [output_padding[i] < stride[i] for i in range(2)]
    full = [(x.shape[2 + i] - 1) * stride[i] + dilation[i] * (weight.shape[2 + i] - 1) + 1
            for i in range(2)]
    computed = [size[i] if direct[i] else full[i] for i in range(2)]
    pad = [padding[i] if direct[i] else 0 for i in range(2)]
    out_size = [x.shape[0], weight.shape[1] * groups] + computed
    try:
        out = _ops.conv2d_backward_input(x, weight, out_size, stride, pad, dilation, groups, algo,
                                         _backends.get_allow_tf32())
    except RuntimeError as e:
        # What only the op can refuse (a dtype or an `algo` its kernels cannot run) it words
        # as the conv it is the backward of; the caller called this function.
        prefix = "cnnkern.conv2d:"
        if str(e).startswith(prefix):
            raise RuntimeError(op + ":" + str(e)[len(prefix):]) from None
        raise
    if all(direct):
        return out
    crop = []
    for i in (1, 0):  # F.pad lists the last dimension first
        crop += [0, 0] if direct[i] else [-padding[i], output_padding[i] - padding[i]]
    return F.pad(out, crop)


def max_pool2d(input: torch.Tensor, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None,
               padding: IntOrPair = 0, dilation: IntOrPair = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max pooling as torch.nn.functional.max_pool2d; indices are flat within each plane."""
    op = "cnnkern.max_pool2d"
    x, unbatched = _batched(input, op)
    kernel_size = _pair(kernel_size, "kernel_size", op)
    args = (kernel_size, _pool_stride(stride, kernel_size, op), _pair(padding, "padding", op),
            _pair(dilation, "dilation", op), _flag(ceil_mode, "ceil_mode", op))
    # As torch decides (ATen's max_pool2d): the indices are made when the caller wants them or
    # when autograd will need them for the backward; otherwise (eval, no_grad, an input that
    # needs no gradient) the values-only op runs and no int64 tensor is allocated or written.
    if return_indices or (torch.is_grad_enabled() and x.requires_grad):
        out, indices = _ops.max_pool2d_with_indices(x, *args)
    else:
        out, indices = _ops.max_pool2d(x, *args), None
    if unbatched:
        out = out.squeeze(0)
        indices = indices.squeeze(0) if return_indices else None
    return (out, indices) if return_indices else out


def avg_pool2d(input: torch.Tensor, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None,
               padding: IntOrPair = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None) -> torch.Tensor:
    """Average pooling as torch.nn.functional.avg_pool2d."""
    op = "cnnkern.avg_pool2d"
    x, unbatched = _batched(input, op)
    kernel_size = _pair(kernel_size, "kernel_size", op)
    if divisor_override is not None:
        divisor_override = _integer(divisor_override, "divisor_override", op)
    out = _ops.avg_pool2d(x, kernel_size, _pool_stride(stride, kernel_size, op),
                          _pair(padding, "padding", op), _flag(ceil_mode, "ceil_mode", op),
                          _flag(count_include_pad, "count_include_pad", op), divisor_override)
    return out.squeeze(0) if unbatched else out


def adaptive_avg_pool2d(input: torch.Tensor, output_size) -> torch.Tensor:
    """Adaptive average pooling as torch.nn.functional.adaptive_avg_pool2d (None keeps a size)."""
    op = "cnnkern.adaptive_avg_pool2d"
    x, unbatched = _batched(input, op)
    # torch takes an int or exactly two entries here (a 1-sequence is an error, unlike the
    # window arguments of the other functions)
    size = _pair(output_size, "output_size", op, one=False, none=True)
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
                 relu_max: Optional[float] = None, algo: str = "auto",
                 fold: Optional[Callable] = None,
                 residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """relu(batch_norm(conv2d(input, weight, bias, ...), ...)) in one fused layer.

    Arguments as F.conv2d and F.batch_norm (momentum is the already-resolved exponential
    average factor; running stats may be None when training, then only the batch statistics
    are used; they are updated in place when training). relu=False gives conv + BN;
    relu_max clamps the ReLU's output above (relu_max=6: F.relu6, MobileNetV2's activation).

    Eval (training=False): BN is folded into the conv's weight and bias and the ReLU runs in
    the conv algorithm's epilogue: one convolution, one pass over the output. `fold` does the
    folding, with fold_bn's arguments and result (fold_bn when None; cnnkern.nn's fused
    layers pass one that caches).
    Training: the conv, then one statistics pass and one normalise+ReLU pass over its output
    (cnnkern::bn_relu_train; cnnkern/_registrations/bn_relu.py says what is saved for
    backward).

    residual (relu=True only, no relu_max): relu(batch_norm(conv2d(...)) + residual), a ResNet
    block's tail; residual has the output's shape. Training on the CPU in float32/float64 runs
    it in the same two passes (cnnkern::bn_add_relu_train); elsewhere (eval, CUDA, half
    types) as batch_norm, then add, then relu.
    """
    op = "cnnkern.conv_bn_relu"
    x, unbatched, stride, pad, dilation, groups = _conv_args(op, input, weight, stride, padding,
                                                             dilation, groups, algo)
    _check_bn_args(op, x, weight, bn_weight, bn_bias, running_mean, running_var)
    if relu_max is not None:
        if not relu:
            raise ValueError(f"{op}: relu_max needs relu=True (it clamps the ReLU's output); "
                             f"got relu=False and relu_max={relu_max}")
        if isinstance(relu_max, bool) or not (isinstance(relu_max, (int, float))
                                               and 0 < relu_max < math.inf):
            raise ValueError(f"{op}: relu_max must be a positive finite number; got "
                             f"{relu_max!r}")
        relu_max = float(relu_max)
    if residual is not None:
        if not isinstance(residual, torch.Tensor):
            raise TypeError(f"{op}: residual must be a Tensor or None; got "
                            f"{type(residual).__name__}")
        if not relu or relu_max is not None:
            raise ValueError(f"{op}: residual needs relu=True and no relu_max (it computes "
                             f"relu(bn(conv) + residual)); got relu={relu}, "
                             f"relu_max={relu_max}")
        if unbatched:
            residual = residual.unsqueeze(0)
        return _with_residual(op, x, weight, bias, bn_weight, bn_bias, running_mean,
                              running_var, training, momentum, eps, stride, pad, dilation,
                              groups, algo, fold, residual, unbatched)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError(f"{op}: running_mean and running_var are needed when not training "
                             f"(training=False); got running_mean "
                             f"{'None' if running_mean is None else 'given'} and running_var "
                             f"{'None' if running_var is None else 'given'}")
        w, b = (fold or fold_bn)(weight, bias, bn_weight, bn_bias, running_mean, running_var, eps)
        out = folded_conv(x, w, b, stride, pad, dilation, groups, relu=relu, algo=algo)
        if relu_max is not None:
            # The conv epilogues know ReLU only: the upper clamp is one more pass (in place
            # when no gradient is recorded; conv2d_relu keeps its output for backward).
            in_place = not (torch.is_grad_enabled() and out.requires_grad)
            out = out.clamp_max_(relu_max) if in_place else out.clamp_max(relu_max)
    else:
        z = folded_conv(x, weight, bias, stride, pad, dilation, groups, relu=False, algo=algo)
        out, mean, _invstd, var = _ops.bn_relu_train(z, bn_weight, bn_bias, float(eps),
                                                     bool(relu), relu_max)
        count = z.numel() // max(z.shape[1], 1)
        if count > 0 and (running_mean is not None or running_var is not None):
            # An empty batch leaves the running statistics as they were (as F.batch_norm).
            _update_running_stats(running_mean, running_var, mean, var, count, momentum)
    return out.squeeze(0) if unbatched else out


def _with_residual(op, x, weight, bias, bn_weight, bn_bias, running_mean, running_var,
                   training, momentum, eps, stride, pad, dilation, groups, algo, fold, residual,
                   unbatched):
    """conv_bn_relu's residual form, arguments already checked and resolved."""
    if not training:
        w, b = (fold or fold_bn)(weight, bias, bn_weight, bn_bias, running_mean, running_var, eps)
        z = folded_conv(x, w, b, stride, pad, dilation, groups, relu=False, algo=algo)
        _check_residual(op, residual, z)
        out = torch.relu(z + residual)
        return out.squeeze(0) if unbatched else out
    z = folded_conv(x, weight, bias, stride, pad, dilation, groups, relu=False, algo=algo)
    _check_residual(op, residual, z)
    if z.device.type == "cpu" and z.dtype in (torch.float32, torch.float64):
        out, mean, _invstd, var = _ops.bn_add_relu_train(z, residual, bn_weight, bn_bias,
                                                         float(eps))
    else:
        # No fused kernel here (CUDA's table has none; float16/bfloat16 would round the BN
        # value before the add): the unfused sequence, as torchvision's block runs it.
        bn, mean, _invstd, var = _ops.bn_relu_train(z, bn_weight, bn_bias, float(eps), False,
                                                    None)
        out = torch.relu(bn + residual)
    count = z.numel() // max(z.shape[1], 1)
    if count > 0 and (running_mean is not None or running_var is not None):
        _update_running_stats(running_mean, running_var, mean, var, count, momentum)
    return out.squeeze(0) if unbatched else out


def _check_residual(op, residual, z):
    if residual.shape != z.shape or residual.device != z.device or residual.dtype != z.dtype:
        raise ValueError(f"{op}: residual must match the conv output (shape {list(z.shape)}, "
                         f"{z.dtype}, {z.device}); got shape {list(residual.shape)}, "
                         f"{residual.dtype}, {residual.device}")


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
