"""Fake kernels and autograd of the convolution ops: conv2d, conv2d_relu (conv2d with the ReLU
in the algorithm's epilogue), conv2d_backward_input and conv2d_backward_weight.

The backward formulas call registered cnnkern ops (never Python loops), so torch.compile
traces forward and backward without graph breaks. `allow_tf32` (cnnkern.backends) changes how
float32 rounds on CUDA, never a shape or dtype, so the fakes take it and ignore it; the
autograd formulas hand the forward's value (and its `algo`) on to the backward ops.

Layouts follow torch's convolution rule (csrc/ops/layout.h): an output is channels_last when
either operand suggests it. The backward ops apply it to their own operands; the autograd
formulas then give each gradient the layout torch's backward gives it (the forward's).
"""

from __future__ import annotations

import torch

from ._shape import check_rank, check_same_device, check_same_dtype, check_shape, concrete
from ._shape import conv_layout, empty_in, in_memory_format, sizes_str

ops = torch.ops.cnnkern


def conv2d_output_shape(op, input_size, weight_size, stride, padding, dilation):
    """(N, K, P, Q) of a convolution (the formula of csrc/core/conv2d_problem.h)."""
    check_rank(op, "input", input_size, 4, "N, C, H, W")
    check_rank(op, "weight", weight_size, 4, "out_channels, in_channels/groups, kH, kW")
    N, _, H, W = input_size
    K, _, R, S = weight_size
    args = dict(input=input_size, weight=weight_size, stride=stride, padding=padding,
                dilation=dilation)
    check_shape(op, len(stride) == 2 and stride[0] > 0 and stride[1] > 0,
                "stride must be two positive numbers to size the output", **args)
    ph, pw = H + 2 * padding[0], W + 2 * padding[1]
    kh, kw = dilation[0] * (R - 1) + 1, dilation[1] * (S - 1) + 1
    check_shape(op, ph >= kh and pw >= kw,
                lambda: (f"the (dilated) kernel size ({kh} x {kw}) is larger than the padded "
                         f"input size ({ph} x {pw}): no output"), **args)
    return N, K, (ph - kh) // stride[0] + 1, (pw - kw) // stride[1] + 1


def _backend(device: torch.device):
    """The backend whose rules judge an algorithm on `device`: None for meta (and for a fake
    CUDA tensor in a build without the CUDA backend), where only the sizes are judged."""
    if device.type in ("cpu", "cuda") and ops.conv2d_algorithms(device.type):
        return device.type
    return None


def check_problem(op, input_size, weight_size, stride, padding, dilation, groups,
                  dtype=torch.float32, device=None, algo="auto"):
    """The C++ op's checks, with its messages, when the sizes are concrete: the sizes
    (make_conv2d_problem, run by the sizes-only introspection op conv2d_why_not) and, given
    the device, whether `algo` (auto: any algorithm) can run the problem in `dtype` there."""
    if not concrete(input_size, weight_size, stride, padding, dilation, [groups]):
        return
    backend = _backend(device) if device is not None else None
    why = ops.conv2d_why_not(list(input_size), list(weight_size), list(stride), list(padding),
                             list(dilation), groups, dtype, backend or "cpu", algo)
    torch._check(backend is None or not why, lambda: f"{op}: {why}")


# conv2d and conv2d_relu share the schema, the output and (up to the ReLU mask) the backward.
def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups, algo,
                 allow_tf32=False):
    op = "cnnkern.conv2d"
    check_same_device(op, input=input, weight=weight, bias=bias)
    check_same_dtype(op, input=input, weight=weight, bias=bias)
    if bias is not None:
        torch._check(bias.dim() == 1 and (weight.dim() < 1 or bias.shape[0] == weight.shape[0]),
                     lambda: (f"{op}: expected bias to be 1-D with out_channels="
                              f"{weight.shape[0] if weight.dim() else -1} elements; got bias of "
                              f"size {list(bias.shape)}"))
    check_problem(op, input.shape, weight.shape, stride, padding, dilation, groups,
                  input.dtype, input.device, algo)
    shape = conv2d_output_shape("cnnkern.conv2d", input.shape, weight.shape, stride, padding,
                                dilation)
    return empty_in(shape, input, conv_layout(input, weight))


def _save_conv(ctx, inputs, relu_output):
    input, weight, bias, stride, padding, dilation, groups, algo, allow_tf32 = inputs
    # conv2d_relu keeps its output for the ReLU mask (y > 0); conv2d keeps nothing extra.
    ctx.save_for_backward(input, weight, relu_output)
    ctx.conv_args = (stride, padding, dilation, groups, algo, allow_tf32)
    ctx.has_bias = bias is not None


def _conv2d_setup_context(ctx, inputs, output):
    _save_conv(ctx, inputs, None)


def _conv2d_relu_setup_context(ctx, inputs, output):
    _save_conv(ctx, inputs, output)


def _weight_grad(grad_output, input, weight, conv_args, layout):
    """The weight gradient in `layout`; with nothing to sum (an empty batch) zeros strided
    like the weight itself, as torch's backward gives them (at::zeros_like)."""
    if grad_output.numel() == 0 or input.numel() == 0:
        return torch.zeros_like(weight)
    return in_memory_format(ops.conv2d_backward_weight(grad_output, input, weight.shape,
                                                       *conv_args), layout)


def _conv2d_backward(ctx, grad_output):
    input, weight, relu_output = ctx.saved_tensors
    if relu_output is not None:
        grad_output = torch.where(relu_output > 0, grad_output, 0)
    grad_input = grad_weight = grad_bias = None
    layout = conv_layout(input, weight)
    if ctx.needs_input_grad[0]:
        grad_input = in_memory_format(
            ops.conv2d_backward_input(grad_output, weight, input.shape, *ctx.conv_args), layout)
    if ctx.needs_input_grad[1]:
        grad_weight = _weight_grad(grad_output, input, weight, ctx.conv_args, layout)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad_output.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias, None, None, None, None, None, None


for _op, _setup in (("conv2d", _conv2d_setup_context), ("conv2d_relu", _conv2d_relu_setup_context)):
    torch.library.register_fake(f"cnnkern::{_op}", _conv2d_fake)
    torch.library.register_autograd(f"cnnkern::{_op}", _conv2d_backward, setup_context=_setup)


def _check_grad_output(grad_output, input_size, weight_size, stride, padding, dilation):
    """As check_grad_output in csrc/ops/checks.cpp."""
    expected = conv2d_output_shape("cnnkern.conv2d", input_size, weight_size, stride, padding,
                                   dilation)
    torch._check(tuple(grad_output.shape) == tuple(expected),
                 lambda: (f"cnnkern.conv2d: expected grad_output of size {sizes_str(expected)}; "
                          f"got {sizes_str(grad_output.shape)}"))


# The backward ops return a tensor of the size they are given.
@torch.library.register_fake("cnnkern::conv2d_backward_input")
def _conv2d_backward_input_fake(grad_output, weight, input_size, stride, padding, dilation,
                                groups, algo, allow_tf32=False):
    check_same_device("cnnkern.conv2d", grad_output=grad_output, weight=weight)
    check_same_dtype("cnnkern.conv2d", grad_output=grad_output, weight=weight)
    check_problem("cnnkern.conv2d", input_size, weight.shape, stride, padding, dilation, groups)
    _check_grad_output(grad_output, input_size, weight.shape, stride, padding, dilation)
    return empty_in(input_size, grad_output, conv_layout(grad_output, weight))


@torch.library.register_fake("cnnkern::conv2d_backward_weight")
def _conv2d_backward_weight_fake(grad_output, input, weight_size, stride, padding, dilation,
                                 groups, algo, allow_tf32=False):
    check_same_device("cnnkern.conv2d", grad_output=grad_output, input=input)
    check_same_dtype("cnnkern.conv2d", grad_output=grad_output, input=input)
    check_problem("cnnkern.conv2d", input.shape, weight_size, stride, padding, dilation, groups)
    _check_grad_output(grad_output, input.shape, weight_size, stride, padding, dilation)
    return empty_in(weight_size, grad_output, conv_layout(grad_output, input))


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
    layout = conv_layout(grad_output, weight)  # the transposed convolution's own rule
    if ctx.needs_input_grad[0]:
        d_grad_output = in_memory_format(ops.conv2d(grad, weight, None, *ctx.conv_args), layout)
    if ctx.needs_input_grad[1]:
        d_weight = _weight_grad(grad_output, grad, weight, ctx.conv_args, layout)
    return d_grad_output, d_weight, None, None, None, None, None, None, None


torch.library.register_autograd("cnnkern::conv2d_backward_input",
                                _conv2d_backward_input_backward,
                                setup_context=_conv2d_backward_input_setup_context)
