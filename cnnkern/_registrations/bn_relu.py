"""Fake kernels and autograd of the BatchNorm + ReLU ops (the training half of
cnnkern.conv_bn_relu; its eval half is conv2d_relu, in conv2d.py, with BN folded in):

- bn_relu_train: after the conv (cnnkern::conv2d, its own autograd node, which saves x and w),
  one statistics pass and one normalise(+ReLU) pass over the conv output z. Saves z and the
  per-channel mean/invstd (plus gamma/beta, which are parameters anyway) -- not the
  normalised tensor nor the output. Backward: bn_relu_backward (one reduction pass and one
  grad_z pass, the ReLU mask recomputed from z); then the conv node's backward ops. Being
  the later node, it runs first in backward and frees z before the conv's backward runs.
- bn_add_relu_train: a ResNet block's tail, out = relu(BN(z) + residual) in the same two
  passes. Saves z, the statistics and out (which the next block's conv keeps anyway). Backward:
  g = grad_out where out > 0 (one pass, threshold_backward: the residual's gradient, handed
  on as it is), then bn_relu_backward(g, relu=False) for z, gamma and beta.
"""

from __future__ import annotations

import math

import torch

from torch._prims_common import suggest_memory_format

from ._shape import check_rank, check_same_device, empty_in

ops = torch.ops.cnnkern


def _check_relu_max(op, relu, relu_max):
    """The C++ ops' check of the upper clamp (csrc/ops/bn_relu_ops.cpp), with its message."""
    if relu_max is None:
        return
    if not relu:
        raise RuntimeError(f"{op}: relu_max needs relu=True (it clamps the ReLU's output); got "
                           f"relu=False and relu_max={relu_max:g}")
    if not (relu_max > 0 and math.isfinite(relu_max)):
        raise RuntimeError(f"{op}: relu_max must be positive and finite; got {relu_max:g}")


@torch.library.register_fake("cnnkern::bn_relu_train")
def _bn_relu_train_fake(z, bn_weight, bn_bias, eps, relu, relu_max=None):
    check_rank("cnnkern.conv_bn_relu", "z", z.shape, 4, "the conv output: N, K, P, Q")
    check_same_device("cnnkern.conv_bn_relu", z=z, bn_weight=bn_weight, bn_bias=bn_bias)
    _check_relu_max("cnnkern.conv_bn_relu", relu, relu_max)
    k = z.shape[1]
    # The statistics are float64 for float64 z, else float32 (csrc/ops/bn_relu_ops.cpp).
    sd = torch.float64 if z.dtype == torch.float64 else torch.float32
    # The output keeps z's layout (F.batch_norm's rule).
    return (empty_in(z.shape, z, suggest_memory_format(z)), z.new_empty(k, dtype=sd),
            z.new_empty(k, dtype=sd), z.new_empty(k, dtype=sd))


@torch.library.register_fake("cnnkern::bn_relu_backward")
def _bn_relu_backward_fake(grad_out, z, mean, invstd, bn_weight, bn_bias, relu, relu_max=None):
    op = "cnnkern.conv_bn_relu (backward)"
    check_rank(op, "z", z.shape, 4, "N, K, P, Q")
    _check_relu_max(op, relu, relu_max)
    check_same_device(op, grad_out=grad_out, z=z, mean=mean, invstd=invstd, bn_weight=bn_weight,
                      bn_bias=bn_bias)
    k = z.shape[1]
    wd = bn_weight.dtype if bn_weight is not None else z.dtype
    return (empty_in(z.shape, z, suggest_memory_format(z)), z.new_empty(k, dtype=wd),
            z.new_empty(k, dtype=wd))


@torch.library.register_fake("cnnkern::bn_add_relu_train")
def _bn_add_relu_train_fake(z, residual, bn_weight, bn_bias, eps):
    op = "cnnkern.bn_add_relu_train"
    check_rank(op, "z", z.shape, 4, "the conv output: N, K, P, Q")
    check_same_device(op, z=z, residual=residual, bn_weight=bn_weight, bn_bias=bn_bias)
    if residual.shape != z.shape:
        raise RuntimeError(f"{op}: residual must have the size of z (the conv output) "
                           f"{list(z.shape)}; got {list(residual.shape)}")
    return _bn_relu_train_fake(z, bn_weight, bn_bias, eps, True)


def _add_relu_setup_context(ctx, inputs, output):
    z, residual, bn_weight, bn_bias, eps = inputs
    out, mean, invstd, var = output
    ctx.mark_non_differentiable(mean, invstd, var)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(z, mean, invstd, bn_weight, bn_bias, out)


def _add_relu_backward(ctx, grad_out, _gmean, _ginvstd, _gvar):
    z, mean, invstd, bn_weight, bn_bias, out = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(z)
    # The ReLU's mask from its output, as torch's relu backward (bitwise its gradient).
    g = torch.ops.aten.threshold_backward(grad_out, out, 0)
    gz, g_gamma, g_beta = ops.bn_relu_backward(g, z, mean, invstd, bn_weight, bn_bias, False)
    need = ctx.needs_input_grad
    return (gz if need[0] else None, g if need[1] else None, g_gamma if need[2] else None,
            g_beta if need[3] else None, None)


torch.library.register_autograd("cnnkern::bn_add_relu_train", _add_relu_backward,
                                setup_context=_add_relu_setup_context)


def _train_setup_context(ctx, inputs, output):
    z, bn_weight, bn_bias, eps, relu, *rest = inputs
    out, mean, invstd, var = output
    ctx.mark_non_differentiable(mean, invstd, var)
    # The statistics get no gradient: without this autograd fills three zero tensors for them
    # on every backward (and grad_out may then be None: _train_backward handles it).
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(z, mean, invstd, bn_weight, bn_bias)
    ctx.relu = relu
    ctx.relu_max = rest[0] if rest else None


def _train_backward(ctx, grad_out, _gmean, _ginvstd, _gvar):
    z, mean, invstd, bn_weight, bn_bias = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(z)
    gz, g_gamma, g_beta = ops.bn_relu_backward(grad_out, z, mean, invstd, bn_weight, bn_bias,
                                               ctx.relu, ctx.relu_max)
    need = ctx.needs_input_grad
    return (gz if need[0] else None, g_gamma if need[1] else None,
            g_beta if need[2] else None) + (None,) * (len(need) - 3)


torch.library.register_autograd("cnnkern::bn_relu_train", _train_backward,
                                setup_context=_train_setup_context)
