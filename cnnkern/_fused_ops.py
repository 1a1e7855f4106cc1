"""Fake (meta) kernels and autograd for the fused ops (csrc/cnnkern.cpp):

- conv2d_relu: conv2d with the ReLU in the algorithm's epilogue (the eval path of the fused
  conv + BN + ReLU layers, with BN folded into the weight and bias). Backward: the gradient
  through the ReLU mask taken from the output (y > 0), then the conv's backward ops.
- bn_relu_train: after the conv (cnnkern::conv2d, its own autograd node, which saves x and w),
  one statistics pass and one normalise(+ReLU) pass over the conv output z. Saves z and the
  per-channel mean/invstd (plus gamma/beta, which are parameters anyway) -- not the
  normalised tensor nor the output. Backward: bn_relu_backward (one reduction pass and one
  grad_z pass, the ReLU mask recomputed from z); then the conv node's backward ops. Being
  the later node, it runs first in backward and frees z before the conv's backward runs.
"""

from __future__ import annotations

import torch

from . import _meta
from ._ops import _check_conv_algo, _is_concrete  # noqa: F401

ops = torch.ops.cnnkern
_FUSED = "cnnkern.conv_bn_relu"
_CONV = "cnnkern.conv2d"


def _stats_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_bn_vector(op, what, t, ref, k):
    """gamma / beta / running stats: None, or 1-D with k (= out_channels) elements."""
    if t is None:
        return
    _meta._check(t.dim() == 1 and t.shape[0] == k,
                 lambda: (f"{op}: {what} must have {k} elements (the conv's out_channels, "
                          f"weight.size(0)); got size {_meta.sizes_str(t.shape)}"))
    _meta.check_same_device_dtype(op, "input", ref, what, t)


# --- conv2d_relu --------------------------------------------------------------------------

@torch.library.register_fake("cnnkern::conv2d_relu")
def _conv2d_relu_fake(input, weight, bias, stride, padding, dilation, groups, algo,
                      allow_tf32=False):
    _meta.check_conv2d_tensors(_CONV, input, weight, bias)
    shape = _meta.conv2d_output_shape(_CONV, input.shape, weight.shape, stride, padding,
                                      dilation, groups)
    _check_conv_algo(input, weight, stride, padding, dilation, groups, algo)
    return input.new_empty(shape)


def _conv2d_relu_setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups, algo, allow_tf32 = inputs
    ctx.save_for_backward(input, weight, output)
    ctx.conv_args = (stride, padding, dilation, groups, algo, allow_tf32)
    ctx.has_bias = bias is not None


def _conv2d_relu_backward(ctx, grad_output):
    input, weight, output = ctx.saved_tensors
    grad = torch.where(output > 0, grad_output, 0)
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = ops.conv2d_backward_input(grad, weight, input.shape, *ctx.conv_args)
    if ctx.needs_input_grad[1]:
        grad_weight = ops.conv2d_backward_weight(grad, input, weight.shape, *ctx.conv_args)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias, None, None, None, None, None, None


torch.library.register_autograd("cnnkern::conv2d_relu", _conv2d_relu_backward,
                                setup_context=_conv2d_relu_setup_context)


# --- bn_relu_train / bn_relu_backward ----------------------------------------------------

@torch.library.register_fake("cnnkern::bn_relu_train")
def _bn_relu_train_fake(z, bn_weight, bn_bias, eps, relu):
    _meta._check(z.dim() == 4, lambda: f"{_FUSED}: expected a 4-D z (the conv output); got size "
                                       f"{_meta.sizes_str(z.shape)}")
    k = z.shape[1]
    check_bn_vector(_FUSED, "bn_weight", bn_weight, z, k)
    check_bn_vector(_FUSED, "bn_bias", bn_bias, z, k)
    _meta._check(eps > 0, lambda: f"{_FUSED}: eps must be positive; got {eps}")
    n, _, p, q = z.shape
    if _is_concrete(n, p, q):
        _meta._check(n * p * q != 1,
                     lambda: (f"{_FUSED}: expected more than 1 value per channel when "
                              f"training; got conv output size {_meta.sizes_str(z.shape)}"))
    sd = _stats_dtype(z.dtype)
    return (z.new_empty(z.shape), z.new_empty(k, dtype=sd), z.new_empty(k, dtype=sd),
            z.new_empty(k, dtype=sd))


@torch.library.register_fake("cnnkern::bn_relu_backward")
def _bn_relu_backward_fake(grad_out, z, mean, invstd, bn_weight, bn_bias, relu):
    op = "cnnkern.conv_bn_relu (backward)"
    _meta._check(z.dim() == 4, lambda: f"{op}: expected a 4-D z; got size "
                                       f"{_meta.sizes_str(z.shape)}")
    _meta.check_same_device_dtype(op, "grad_out", grad_out, "z", z)
    _meta.check_grad_output(op, grad_out, z.shape)
    k = z.shape[1]
    wd = bn_weight.dtype if bn_weight is not None else z.dtype
    return z.new_empty(z.shape), z.new_empty(k, dtype=wd), z.new_empty(k, dtype=wd)


def _train_setup_context(ctx, inputs, output):
    z, bn_weight, bn_bias, eps, relu = inputs
    out, mean, invstd, var = output
    ctx.mark_non_differentiable(mean, invstd, var)
    ctx.save_for_backward(z, mean, invstd, bn_weight, bn_bias)
    ctx.relu = relu


def _train_backward(ctx, grad_out, _gmean, _ginvstd, _gvar):
    z, mean, invstd, bn_weight, bn_bias = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(z)
    gz, g_gamma, g_beta = ops.bn_relu_backward(grad_out, z, mean, invstd, bn_weight, bn_bias,
                                               ctx.relu)
    need = ctx.needs_input_grad
    return (gz if need[0] else None, g_gamma if need[1] else None,
            g_beta if need[2] else None, None, None)


torch.library.register_autograd("cnnkern::bn_relu_train", _train_backward,
                                setup_context=_train_setup_context)
