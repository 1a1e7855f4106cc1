"""Shape rules and argument checks for the fake (meta) kernels.

These mirror csrc/common/checks.cpp message for message, so that an op traced by
torch.compile (which runs the fake kernels, not the C++ ones) rejects bad input with the same
error as eager mode; tests/test_errors.py checks both paths. Sizes may be SymInts: only
plain arithmetic and comparisons are used on them.
"""

from __future__ import annotations

from typing import Sequence

import torch

_FLOAT_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


def _fail(msg: str):
    raise RuntimeError(msg)


def _check(cond, msg_fn):
    if not cond:
        _fail(msg_fn())


def sizes_str(sizes) -> str:
    return "[" + ", ".join(str(s) for s in sizes) + "]"


def _check_pair(op: str, what: str, v: Sequence[int]):
    _check(len(v) == 2, lambda: f"{op}: expected {what} to have 2 elements; got {sizes_str(v)}")


def _check_positive(op: str, what: str, v: Sequence[int]):
    _check_pair(op, what, v)
    _check(v[0] > 0 and v[1] > 0, lambda: f"{op}: {what} must be positive; got {sizes_str(v)}")


def _check_non_negative(op: str, what: str, v: Sequence[int]):
    _check_pair(op, what, v)
    _check(v[0] >= 0 and v[1] >= 0,
           lambda: f"{op}: {what} must be non-negative; got {sizes_str(v)}")


def _check_input_sizes(op: str, size: Sequence[int]):
    _check(len(size) == 4, lambda: (f"{op}: expected a 4-D input (N, C, H, W); got a {len(size)}"
                                    f"-D input of size {sizes_str(size)}"))
    _check(all(s >= 0 for s in size),
           lambda: f"{op}: input sizes must be non-negative; got {sizes_str(size)}")
    _check(size[1] > 0 and size[2] > 0 and size[3] > 0,
           lambda: (f"{op}: input must have non-zero channels, height and width; got size "
                    f"{sizes_str(size)}"))


def _dtype_name(dtype: torch.dtype) -> str:
    # c10's ScalarType names, as the C++ messages print them.
    return {
        torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
        torch.bfloat16: "BFloat16", torch.int64: "Long", torch.int32: "Int",
        torch.int16: "Short", torch.int8: "Char", torch.uint8: "Byte", torch.bool: "Bool",
        torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble",
    }.get(dtype, str(dtype))


def check_same_device_dtype(op: str, what_a: str, a: torch.Tensor, what_b: str, b: torch.Tensor):
    _check(a.device == b.device,
           lambda: (f"{op}: {what_a} and {what_b} must be on the same device; got {what_a} on "
                    f"{a.device} and {what_b} on {b.device}"))
    _check(a.dtype == b.dtype,
           lambda: (f"{op}: {what_a} and {what_b} must have the same dtype; got {what_a} "
                    f"{_dtype_name(a.dtype)} and {what_b} {_dtype_name(b.dtype)}"))


def check_floating_dtype(op: str, what: str, t: torch.Tensor):
    allowed = _FLOAT_DTYPES.get(t.device.type, _FLOAT_DTYPES["cuda"])
    _check(t.dtype in allowed,
           lambda: (f"{op}: {what} has dtype {_dtype_name(t.dtype)}, but the {t.device.type} "
                    f"kernels support {', '.join(_dtype_name(d) for d in allowed)}"))


def conv_output_size(size, k, pad, stride, dil):
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def conv2d_output_shape(op, input_size, weight_size, stride, padding, dilation, groups):
    """(N, K, P, Q), after the same checks as make_conv2d_problem."""
    _check_input_sizes(op, input_size)
    _check(len(weight_size) == 4,
           lambda: (f"{op}: expected a 4-D weight (out_channels, in_channels/groups, kH, kW); "
                    f"got a {len(weight_size)}-D weight of size {sizes_str(weight_size)}"))
    _check(all(s > 0 for s in weight_size),
           lambda: f"{op}: weight sizes must be positive; got {sizes_str(weight_size)}")
    _check_positive(op, "stride", stride)
    _check_non_negative(op, "padding", padding)
    _check_positive(op, "dilation", dilation)
    _check(groups > 0, lambda: f"{op}: groups must be positive; got {groups}")
    N, C, H, W = input_size
    K, Cg, R, S = weight_size
    _check(C == Cg * groups,
           lambda: (f"{op}: input has {C} channels but weight expects {Cg * groups} channels "
                    f"(weight.size(1)={Cg} x groups={groups})"))
    _check(K % groups == 0,
           lambda: f"{op}: out_channels={K} (weight.size(0)) must be divisible by groups={groups}")
    ph, pw = H + 2 * padding[0], W + 2 * padding[1]
    kh, kw = dilation[0] * (R - 1) + 1, dilation[1] * (S - 1) + 1
    _check(ph >= kh and pw >= kw,
           lambda: (f"{op}: the (dilated) kernel size ({kh} x {kw}) is larger than the padded "
                    f"input size ({ph} x {pw})"))
    P = conv_output_size(H, R, padding[0], stride[0], dilation[0])
    Q = conv_output_size(W, S, padding[1], stride[1], dilation[1])
    return N, K, P, Q


def check_conv2d_tensors(op, input, weight, bias):
    check_same_device_dtype(op, "input", input, "weight", weight)
    if bias is not None:
        check_same_device_dtype(op, "input", input, "bias", bias)
        k = weight.shape[0] if weight.dim() >= 1 else -1
        _check(bias.dim() == 1 and (weight.dim() < 1 or bias.shape[0] == weight.shape[0]),
               lambda: (f"{op}: expected bias to be 1-D with out_channels={k} elements; got bias "
                        f"of size {sizes_str(bias.shape)}"))


def check_grad_output(op, grad_output, expected):
    _check(tuple(grad_output.shape) == tuple(expected),
           lambda: (f"{op}: expected grad_output of size {sizes_str(expected)}; got "
                    f"{sizes_str(grad_output.shape)}"))


def pool_output_size(size, k, pad, stride, dil, ceil_mode):
    num = size + 2 * pad - dil * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = num // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out = out - 1
    return out


def pool2d_output_shape(op, input_size, kernel_size, stride, padding, dilation, ceil_mode):
    """(N, C, P, Q), after the same checks as make_pool2d_geometry."""
    _check_input_sizes(op, input_size)
    _check_positive(op, "kernel_size", kernel_size)
    _check_positive(op, "stride", stride)
    _check_non_negative(op, "padding", padding)
    _check_positive(op, "dilation", dilation)
    _check(2 * padding[0] <= kernel_size[0] and 2 * padding[1] <= kernel_size[1],
           lambda: (f"{op}: padding must be at most half of the kernel size; got "
                    f"padding={sizes_str(padding)}, kernel_size={sizes_str(kernel_size)}"))
    N, C, H, W = input_size
    P = pool_output_size(H, kernel_size[0], padding[0], stride[0], dilation[0], ceil_mode)
    Q = pool_output_size(W, kernel_size[1], padding[1], stride[1], dilation[1], ceil_mode)
    _check(P >= 1 and Q >= 1,
           lambda: (f"{op}: output size is too small: input {H} x {W} gives output {P} x {Q} "
                    f"with kernel_size={sizes_str(kernel_size)}, stride={sizes_str(stride)}, "
                    f"padding={sizes_str(padding)}, dilation={sizes_str(dilation)}"))
    return N, C, P, Q


def check_divisor_override(op, divisor_override):
    _check(divisor_override is None or divisor_override != 0,
           lambda: f"{op}: divisor_override must be non-zero; got {divisor_override}")


def adaptive_output_shape(op, input_size, output_size):
    _check_input_sizes(op, input_size)
    _check_non_negative(op, "output_size", output_size)
    return input_size[0], input_size[1], output_size[0], output_size[1]
