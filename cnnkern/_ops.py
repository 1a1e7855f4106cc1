"""Fake (meta) kernels and autograd for the ops declared in csrc/cnnkern.cpp.

The backward formulas call registered cnnkern ops (never Python loops), so torch.compile
traces forward and backward without graph breaks.
"""

from __future__ import annotations

import torch
from torch import _prims_common

from . import _meta

ops = torch.ops.cnnkern
_CONV = "cnnkern.conv2d"


def _is_concrete(*values) -> bool:
    return all(isinstance(v, int) for v in values)


# --- conv2d -------------------------------------------------------------------------------

def _check_conv_algo(input, weight, stride, padding, dilation, groups, algo):
    """The algorithm checks the C++ op makes (the dtype among them), asked of the C++ rules
    when the sizes are concrete; with symbolic sizes only the dtype can be checked here."""
    sizes = list(input.shape) + list(weight.shape)
    if not _is_concrete(*sizes):
        _meta.check_floating_dtype(_CONV, "input", input)
        return
    reason = ops.conv2d_why_not(list(input.shape), list(weight.shape), stride, padding,
                                dilation, groups, input.dtype, input.device.type, algo)
    if reason:
        raise RuntimeError(f"{_CONV}: {reason}")


# `allow_tf32` (cnnkern.backends) changes how float32 rounds on CUDA, never a shape, dtype or
# error, so the fake kernels take it and ignore it; the autograd formulas pass the forward's
# value on to the backward ops.

@torch.library.register_fake("cnnkern::conv2d")
def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups, algo,
                 allow_tf32=False):
    _meta.check_conv2d_tensors(_CONV, input, weight, bias)
    shape = _meta.conv2d_output_shape(_CONV, input.shape, weight.shape, stride, padding,
                                      dilation, groups)
    _check_conv_algo(input, weight, stride, padding, dilation, groups, algo)
    return input.new_empty(shape)


@torch.library.register_fake("cnnkern::conv2d_backward_input")
def _conv2d_backward_input_fake(grad_output, weight, input_size, stride, padding, dilation,
                                groups, algo, allow_tf32=False):
    _meta.check_same_device_dtype(_CONV, "grad_output", grad_output, "weight", weight)
    shape = _meta.conv2d_output_shape(_CONV, input_size, weight.shape, stride, padding,
                                      dilation, groups)
    _meta.check_grad_output(_CONV, grad_output, shape)
    return grad_output.new_empty(input_size)


@torch.library.register_fake("cnnkern::conv2d_backward_weight")
def _conv2d_backward_weight_fake(grad_output, input, weight_size, stride, padding, dilation,
                                 groups, algo, allow_tf32=False):
    _meta.check_same_device_dtype(_CONV, "grad_output", grad_output, "input", input)
    shape = _meta.conv2d_output_shape(_CONV, input.shape, weight_size, stride, padding,
                                      dilation, groups)
    _meta.check_grad_output(_CONV, grad_output, shape)
    return grad_output.new_empty(weight_size)


def _conv2d_setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups, algo, allow_tf32 = inputs
    ctx.save_for_backward(input, weight)
    ctx.conv_args = (stride, padding, dilation, groups, algo, allow_tf32)
    ctx.has_bias = bias is not None


def _conv2d_backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = ops.conv2d_backward_input(grad_output, weight, input.shape, *ctx.conv_args)
    if ctx.needs_input_grad[1]:
        grad_weight = ops.conv2d_backward_weight(grad_output, input, weight.shape,
                                                 *ctx.conv_args)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad_output.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias, None, None, None, None, None, None


torch.library.register_autograd("cnnkern::conv2d", _conv2d_backward,
                                setup_context=_conv2d_setup_context)


# conv2d_backward_input is also the transposed convolution (cnnkern.conv_transpose2d), so it
# is differentiable: its adjoint in grad_output is the forward conv, and its derivative in the
# weight is the weight gradient of that conv with the roles of the two tensors swapped.
def _conv2d_backward_input_setup_context(ctx, inputs, output):
    grad_output, weight, input_size, stride, padding, dilation, groups, algo, allow_tf32 = inputs
    ctx.save_for_backward(grad_output, weight)
    ctx.conv_args = (stride, padding, dilation, groups, algo, allow_tf32)


def _conv2d_backward_input_backward(ctx, grad):
    grad_output, weight = ctx.saved_tensors
    d_grad_output = d_weight = None
    if ctx.needs_input_grad[0]:
        d_grad_output = ops.conv2d(grad, weight, None, *ctx.conv_args)
    if ctx.needs_input_grad[1]:
        d_weight = ops.conv2d_backward_weight(grad_output, grad, weight.shape, *ctx.conv_args)
    return d_grad_output, d_weight, None, None, None, None, None, None, None


torch.library.register_autograd("cnnkern::conv2d_backward_input",
                                _conv2d_backward_input_backward,
                                setup_context=_conv2d_backward_input_setup_context)


# --- pooling layouts ----------------------------------------------------------------------
# The C++ op bodies run channels_last when the deciding tensor's strides suggest it (the
# input; for max_pool2d_backward the indices, which the forward made in its input's layout;
# for the other backward ops grad_output) and give their outputs that layout, as torch's
# pooling does. The fake kernels say the same, and autograd hands grad_output to the avg and
# adaptive backward ops in the forward input's layout, so that grad_input has the input's
# layout whatever grad_output's, as torch's backward does.


def _layout(t):
    return _prims_common.suggest_memory_format(t)


def _empty_like_layout(shape, like, layout, dtype=None):
    return torch.empty(shape, dtype=like.dtype if dtype is None else dtype, device=like.device,
                       memory_format=layout)


def _in_layout(t, layout):
    """t itself when its strides suggest `layout`, else a copy whose strides do. (Not
    t.contiguous(memory_format=...): for an N x C x 1 x 1 gradient, say, that keeps NCHW
    strides, which also count as channels_last-contiguous but do not suggest it.)"""
    if _layout(t) == layout:
        return t
    return _empty_like_layout(t.shape, t, layout).copy_(t)


# --- max_pool2d ---------------------------------------------------------------------------

_MAX = "cnnkern.max_pool2d"


@torch.library.register_fake("cnnkern::max_pool2d_with_indices")
def _max_pool2d_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    shape = _meta.pool2d_output_shape(_MAX, input.shape, kernel_size, stride, padding, dilation,
                                      ceil_mode)
    _meta.check_floating_dtype(_MAX, "input", input)
    layout = _layout(input)
    return (_empty_like_layout(shape, input, layout),
            _empty_like_layout(shape, input, layout, dtype=torch.int64))


@torch.library.register_fake("cnnkern::max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, indices, input_size, kernel_size, stride, padding,
                              dilation, ceil_mode):
    op = "cnnkern.max_pool2d_backward"
    shape = _meta.pool2d_output_shape(op, input_size, kernel_size, stride, padding, dilation,
                                      ceil_mode)
    _meta.check_floating_dtype(op, "grad_output", grad_output)
    _meta.check_grad_output(op, grad_output, shape)
    return _empty_like_layout(input_size, grad_output, _layout(indices))


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


# --- avg_pool2d ---------------------------------------------------------------------------

_AVG = "cnnkern.avg_pool2d"


@torch.library.register_fake("cnnkern::avg_pool2d")
def _avg_pool2d_fake(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override):
    shape = _meta.pool2d_output_shape(_AVG, input.shape, kernel_size, stride, padding, [1, 1],
                                      ceil_mode)
    _meta.check_divisor_override(_AVG, divisor_override)
    _meta.check_floating_dtype(_AVG, "input", input)
    return _empty_like_layout(shape, input, _layout(input))


@torch.library.register_fake("cnnkern::avg_pool2d_backward")
def _avg_pool2d_backward_fake(grad_output, input_size, kernel_size, stride, padding, ceil_mode,
                              count_include_pad, divisor_override):
    op = "cnnkern.avg_pool2d_backward"
    shape = _meta.pool2d_output_shape(op, input_size, kernel_size, stride, padding, [1, 1],
                                      ceil_mode)
    _meta.check_divisor_override(op, divisor_override)
    _meta.check_floating_dtype(op, "grad_output", grad_output)
    _meta.check_grad_output(op, grad_output, shape)
    return _empty_like_layout(input_size, grad_output, _layout(grad_output))


def _avg_pool2d_setup_context(ctx, inputs, output):
    ctx.input_size = inputs[0].shape
    ctx.layout = _layout(inputs[0])
    ctx.pool_args = inputs[1:]


def _avg_pool2d_backward(ctx, grad_output):
    grad_output = _in_layout(grad_output, ctx.layout)
    grad_input = ops.avg_pool2d_backward(grad_output, ctx.input_size, *ctx.pool_args)
    return grad_input, None, None, None, None, None, None


torch.library.register_autograd("cnnkern::avg_pool2d", _avg_pool2d_backward,
                                setup_context=_avg_pool2d_setup_context)


# --- adaptive_avg_pool2d ------------------------------------------------------------------

_ADAPTIVE = "cnnkern.adaptive_avg_pool2d"


@torch.library.register_fake("cnnkern::adaptive_avg_pool2d")
def _adaptive_avg_pool2d_fake(input, output_size):
    shape = _meta.adaptive_output_shape(_ADAPTIVE, input.shape, output_size)
    _meta.check_floating_dtype(_ADAPTIVE, "input", input)
    return _empty_like_layout(shape, input, _layout(input))


@torch.library.register_fake("cnnkern::adaptive_avg_pool2d_backward")
def _adaptive_avg_pool2d_backward_fake(grad_output, input_size):
    op = "cnnkern.adaptive_avg_pool2d_backward"
    _meta._check(grad_output.dim() == 4,
                 lambda: f"{op}: expected a 4-D grad_output; got size "
                         f"{_meta.sizes_str(grad_output.shape)}")
    shape = _meta.adaptive_output_shape(op, input_size, grad_output.shape[2:])
    _meta.check_floating_dtype(op, "grad_output", grad_output)
    _meta.check_grad_output(op, grad_output, shape)
    return _empty_like_layout(input_size, grad_output, _layout(grad_output))


def _adaptive_avg_pool2d_setup_context(ctx, inputs, output):
    ctx.input_size = inputs[0].shape
    ctx.layout = _layout(inputs[0])


def _adaptive_avg_pool2d_backward(ctx, grad_output):
    grad_output = _in_layout(grad_output, ctx.layout)
    return ops.adaptive_avg_pool2d_backward(grad_output, ctx.input_size), None


torch.library.register_autograd("cnnkern::adaptive_avg_pool2d", _adaptive_avg_pool2d_backward,
                                setup_context=_adaptive_avg_pool2d_setup_context)
