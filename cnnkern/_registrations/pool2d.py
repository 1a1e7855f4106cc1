"""Fake kernels and autograd of the pooling ops: max_pool2d_with_indices, max_pool2d (the
values alone), avg_pool2d, adaptive_avg_pool2d and their backward ops.

Layouts: the C++ op bodies run channels_last when the deciding tensor's strides suggest it
(the input; for max_pool2d_backward the indices, which the forward made in its input's
layout; for the other backward ops grad_output) and give their outputs that layout, as
torch's pooling does. The fakes say the same, and autograd hands grad_output to the avg and
adaptive backward ops in the forward input's layout, so that grad_input has the input's
layout whatever grad_output's, as torch's backward does.
"""

from __future__ import annotations

import torch
from torch import _prims_common

from torch._subclasses.fake_tensor import unset_fake_temporarily

from ._shape import check_rank, check_same_device, check_shape, concrete
from ._shape import empty_in as _empty

ops = torch.ops.cnnkern


def _layout(t):
    return _prims_common.suggest_memory_format(t)


def _in_layout(t, layout):
    """t itself when its strides suggest `layout`, else a copy whose strides do. (Not
    t.contiguous(memory_format=...): for an N x C x 1 x 1 gradient, say, that keeps NCHW
    strides, which also count as channels_last-contiguous but do not suggest it.)"""
    if _layout(t) == layout:
        return t
    return _empty(t.shape, t, layout).copy_(t)


def _pool_output_size(size, k, pad, stride, dil, ceil_mode):
    # As csrc/core/pool2d_problem.h (and ATen): with ceil_mode the last window must start
    # inside the input or its left padding.
    out = (size + 2 * pad - dil * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out = out - 1
    return out


def pool2d_output_shape(op, input_size, kernel_size, stride, padding, dilation, ceil_mode):
    """(N, C, P, Q) of a max or average pooling."""
    check_rank(op, "input", input_size, 4, "N, C, H, W")
    N, C, H, W = input_size
    args = dict(input=input_size, kernel_size=kernel_size, stride=stride, padding=padding,
                dilation=dilation, ceil_mode=ceil_mode)
    check_shape(op, len(stride) == 2 and stride[0] > 0 and stride[1] > 0,
                "stride must be two positive numbers to size the output", **args)
    P = _pool_output_size(H, kernel_size[0], padding[0], stride[0], dilation[0], ceil_mode)
    Q = _pool_output_size(W, kernel_size[1], padding[1], stride[1], dilation[1], ceil_mode)
    check_shape(op, P >= 1 and Q >= 1,
                lambda: f"output size is too small: input {H} x {W} gives output {P} x {Q}",
                **args)
    return N, C, P, Q


def _eager_checks(op, input_size, *args):
    """The C++ op's own argument checks, with its messages (csrc/ops/checks.cpp): `op` run
    on the CPU on an empty batch of the input's planes, which checks every argument and
    computes nothing. Skipped when a size is symbolic (the compiled call meets the checks when
    it runs)."""
    sizes = [a for a in args if isinstance(a, (list, tuple))]
    if not concrete(input_size, *sizes):
        return
    with unset_fake_temporarily():
        op(torch.empty((0, *input_size[1:])), *args)


# --- max_pool2d ---------------------------------------------------------------------------

@torch.library.register_fake("cnnkern::max_pool2d_with_indices")
def _max_pool2d_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    check_rank("cnnkern.max_pool2d", "input", input.shape, 4, "N, C, H, W")
    _eager_checks(ops.max_pool2d_with_indices, input.shape, kernel_size, stride, padding,
                  dilation, ceil_mode)
    shape = pool2d_output_shape("cnnkern.max_pool2d", input.shape, kernel_size, stride, padding,
                                dilation, ceil_mode)
    layout = _layout(input)
    return _empty(shape, input, layout), _empty(shape, input, layout, dtype=torch.int64)


@torch.library.register_fake("cnnkern::max_pool2d")
def _max_pool2d_values_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    return _max_pool2d_fake(input, kernel_size, stride, padding, dilation, ceil_mode)[0]


@torch.library.register_fake("cnnkern::max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, indices, input_size, kernel_size, stride, padding,
                              dilation, ceil_mode):
    check_same_device("cnnkern.max_pool2d_backward", grad_output=grad_output, indices=indices)
    return _empty(input_size, grad_output, _layout(indices))


def _max_pool2d_setup_context(ctx, inputs, output):
    input, kernel_size, stride, padding, dilation, ceil_mode = inputs
    ctx.save_for_backward(output[1])
    ctx.input_size = input.shape
    ctx.pool_args = (kernel_size, stride, padding, dilation, ceil_mode)
    # The int64 indices never get a gradient: without this, autograd fills an indices-sized
    # tensor with zeros for them on every backward (a fifth of a channels_last max-pool
    # backward's time).
    ctx.set_materialize_grads(False)


def _max_pool2d_backward(ctx, grad_output, _grad_indices):
    if grad_output is None:  # only the indices were used
        return None, None, None, None, None, None
    (indices,) = ctx.saved_tensors
    grad_input = ops.max_pool2d_backward(grad_output, indices, ctx.input_size, *ctx.pool_args)
    return grad_input, None, None, None, None, None


torch.library.register_autograd("cnnkern::max_pool2d_with_indices", _max_pool2d_backward,
                                setup_context=_max_pool2d_setup_context)


# The values-only op. cnnkern.max_pool2d calls it only when no gradient is wanted (it takes
# max_pool2d_with_indices otherwise, as ATen does: the indices saved by the forward make the
# backward a single gather, and an eval forward writes no index). Called directly on an input
# that requires grad, it saves the input (a reference, no copy) and its backward recomputes the
# argmax with max_pool2d_with_indices: one extra forward pass, paid only on that path, and
# the gradient is exactly torch's (the same indices, ties and NaNs included).
def _max_pool2d_values_setup_context(ctx, inputs, output):
    input, *pool_args = inputs
    ctx.save_for_backward(input)
    ctx.pool_args = tuple(pool_args)


def _max_pool2d_values_backward(ctx, grad_output):
    (input,) = ctx.saved_tensors
    _, indices = ops.max_pool2d_with_indices(input, *ctx.pool_args)
    grad_input = ops.max_pool2d_backward(grad_output, indices, input.shape, *ctx.pool_args)
    return grad_input, None, None, None, None, None


torch.library.register_autograd("cnnkern::max_pool2d", _max_pool2d_values_backward,
                                setup_context=_max_pool2d_values_setup_context)


# --- avg_pool2d and adaptive_avg_pool2d ---------------------------------------------------
# Their backward ops take grad_output (in the input's layout), the input size and the
# forward's other arguments, which the shared setup keeps.

def _keep_input_geometry(ctx, inputs, output):
    ctx.input_size = inputs[0].shape
    ctx.layout = _layout(inputs[0])
    ctx.op_args = inputs[1:]


def _backward_fake(grad_output, input_size, *op_args):
    return _empty(input_size, grad_output, _layout(grad_output))


@torch.library.register_fake("cnnkern::avg_pool2d")
def _avg_pool2d_fake(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override):
    check_rank("cnnkern.avg_pool2d", "input", input.shape, 4, "N, C, H, W")
    _eager_checks(ops.avg_pool2d, input.shape, kernel_size, stride, padding, ceil_mode,
                  count_include_pad, divisor_override)
    shape = pool2d_output_shape("cnnkern.avg_pool2d", input.shape, kernel_size, stride, padding,
                                [1, 1], ceil_mode)
    return _empty(shape, input, _layout(input))


def _avg_pool2d_backward(ctx, grad_output):
    grad_output = _in_layout(grad_output, ctx.layout)
    grad_input = ops.avg_pool2d_backward(grad_output, ctx.input_size, *ctx.op_args)
    return grad_input, None, None, None, None, None, None


@torch.library.register_fake("cnnkern::adaptive_avg_pool2d")
def _adaptive_avg_pool2d_fake(input, output_size):
    op = "cnnkern.adaptive_avg_pool2d"
    check_rank(op, "input", input.shape, 4, "N, C, H, W")
    check_shape(op, len(output_size) == 2 and output_size[0] >= 0 and output_size[1] >= 0,
                "output_size must be two non-negative numbers", input=input.shape,
                output_size=output_size)
    _eager_checks(ops.adaptive_avg_pool2d, input.shape, output_size)
    return _empty((*input.shape[:2], *output_size), input, _layout(input))


def _adaptive_avg_pool2d_backward(ctx, grad_output):
    grad_output = _in_layout(grad_output, ctx.layout)
    return ops.adaptive_avg_pool2d_backward(grad_output, ctx.input_size), None


for _op, _backward in (("avg_pool2d", _avg_pool2d_backward),
                       ("adaptive_avg_pool2d", _adaptive_avg_pool2d_backward)):
    torch.library.register_fake(f"cnnkern::{_op}_backward", _backward_fake)
    torch.library.register_autograd(f"cnnkern::{_op}", _backward,
                                    setup_context=_keep_input_geometry)
