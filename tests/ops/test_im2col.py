"""algo="im2col" on the CPU: forward and both gradients against torch.nn.functional.conv2d in
float64 over the whole shape matrix, layouts, tiled column matrices, gradcheck, opcheck, and
results that do not depend on the thread count.

Integer-valued data make every partial sum exact in float32 and float64, so most checks are
bit-exact whatever order the GEMM adds in.
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import assert_close, assert_exact, int_tensor
from shapes import CONV_CASES, ConvCase, conv_params

ALGO = "im2col"
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]

pytestmark = pytest.mark.skipif(ALGO not in cnnkern.algorithms("cpu"),
                                reason="im2col is not built for the CPU")


def run(x, w, b, g, **kwargs):
    """(out, grad_input, grad_weight, grad_bias) of cnnkern.conv2d with algo=im2col."""
    x, w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    b = b.detach().clone().requires_grad_() if b is not None else None
    out = cnnkern.conv2d(x, w, b, algo=ALGO, **kwargs)
    out.backward(g)
    return out, x.grad, w.grad, (b.grad if b is not None else None)


def reference(x, w, b, g, **kwargs):
    x, w = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    b = b.detach().double().requires_grad_() if b is not None else None
    out = F.conv2d(x, w, b, **kwargs)
    out.backward(g.double())
    return out, x.grad, w.grad, (b.grad if b is not None else None)


NAMES = ("output", "grad_input", "grad_weight", "grad_bias")


def check(got, ref, exact):
    for name, a, r in zip(NAMES, got, ref):
        if r is None:
            assert a is None, name
            continue
        if exact:
            assert_exact(a, r.to(a.dtype))
        else:
            assert_close(a, r, msg=lambda m, name=name: f"{name}: {m}")


def int_problem(case, dtype, bias=True):
    x = int_tensor(*case.input_shape, dtype=dtype)
    w = int_tensor(*case.weight_shape, dtype=dtype)
    b = int_tensor(case.K, dtype=dtype) if bias else None
    g = int_tensor(*case.output_shape, dtype=dtype)
    return x, w, b, g


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", conv_params())
def test_matrix_exact_integer_inputs(case, dtype, bias):
    x, w, b, g = int_problem(case, dtype, bias)
    got = run(x, w, b, g, **case.kwargs())
    assert tuple(got[0].shape) == case.output_shape
    check(got, reference(x, w, b, g, **case.kwargs()), exact=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", conv_params())
def test_matrix_random_normal(case, dtype):
    x = torch.randn(case.input_shape, dtype=dtype)
    w = torch.randn(case.weight_shape, dtype=dtype)
    b = torch.randn(case.K, dtype=dtype)
    g = torch.randn(case.output_shape, dtype=dtype)
    check(run(x, w, b, g, **case.kwargs()), reference(x, w, b, g, **case.kwargs()), exact=False)


# The column matrix is built a tile of output positions at a time (at most 4 MiB, at least 64
# positions): these cross tile boundaries mid output row, in every pass.
TILED = [
    # C/g*R*S = 576: 1808 positions per tile, 2304 in the image
    ConvCase("two_tiles_mid_row", 2, 64, 48, 48, 8, 3, 3, 1, 1, 1, 1),
    # C/g*R*S = 18432 > 16384: the 64-position minimum tile, 81 positions
    ConvCase("min_tile_huge_crs", 1, 2048, 9, 9, 3, 3, 3, 1, 1, 1, 1),
    # strided and grouped, C/g*R*S = 400: 2608 positions per tile, 3660 in the image
    ConvCase("grouped_strided_tiles", 1, 32, 121, 120, 6, 5, 5, 2, 2, 1, 2),
]


@pytest.mark.parametrize("case", conv_params(TILED))
def test_tiled_column_matrix_exact(case):
    x, w, b, g = int_problem(case, torch.float32)
    check(run(x, w, b, g, **case.kwargs()), reference(x, w, b, g, **case.kwargs()), exact=True)


# 1x1, stride 1, no padding: the GEMM reads (and for grad-input writes) the image directly.
ONE_BY_ONE = [
    ConvCase("1x1_plain", 2, 8, 5, 7, 16, 1, 1, 1, 0, 1, 1),
    ConvCase("1x1_groups2", 3, 6, 4, 5, 4, 1, 1, 1, 0, 1, 2),
    ConvCase("1x1_dilated_is_still_1x1", 1, 5, 6, 6, 3, 1, 1, 1, 0, 3, 1),
    ConvCase("1x1_large_plane", 1, 3, 70, 70, 5, 1, 1, 1, 0, 1, 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", conv_params(ONE_BY_ONE))
def test_1x1_reads_the_input_directly(case, dtype):
    x, w, b, g = int_problem(case, dtype)
    check(run(x, w, b, g, **case.kwargs()), reference(x, w, b, g, **case.kwargs()), exact=True)


LAYOUTS = {
    "transposed_hw": lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),
    "channel_stride_2": lambda t: torch.stack([t, t], 2).flatten(1, 2)[:, ::2],
    "padded_storage_slice": lambda t: F.pad(t, (1, 2, 2, 1), value=99.0)[:, :, 2:-1, 1:-2],
    "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts(layout, dtype):
    case = ConvCase("layout", 2, 3, 7, 8, 4, 3, 3, (2, 1), 1, 1, 1)
    x0, w0, b, g0 = int_problem(case, dtype)
    x, w, g = (LAYOUTS[layout](t) for t in (x0, w0, g0))
    assert torch.equal(x, x0) and torch.equal(w, w0) and torch.equal(g, g0)
    if layout != "channels_last":
        assert not x.is_contiguous() and not w.is_contiguous()
    check(run(x, w, b, g, **case.kwargs()), reference(x0, w0, b, g0, **case.kwargs()),
          exact=True)


def _at_threads(n, fn):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


# Shapes that take each scheduling path: one image (GEMM parallel inside; backward passes
# cut into channel blocks), many images, fewer tasks than threads, grouped, 1x1, tiled. All
# above the 2 MFLOP below which a pass stays on one thread.
THREAD_CASES = [
    ConvCase("one_image_big_c", 1, 96, 20, 20, 40, 3, 3, 1, 1, 1, 1),
    ConvCase("many_images", 8, 16, 12, 12, 24, 3, 3, 1, 1, 1, 1),
    ConvCase("three_images_strided", 3, 24, 19, 17, 20, 3, 3, 2, 1, 1, 1),
    ConvCase("groups4", 2, 32, 24, 24, 32, 3, 3, 1, 1, 1, 4),
    ConvCase("1x1_one_image", 1, 128, 24, 24, 64, 1, 1, 1, 0, 1, 1),
    ConvCase("two_tiles", 1, 64, 48, 48, 48, 3, 3, 1, 1, 1, 1),
    ConvCase("one_channel_fewer_tasks_than_threads", 1, 1, 160, 160, 32, 3, 3, 1, 1, 1, 1),
    ConvCase("three_images_odd_channels", 3, 5, 30, 30, 16, 3, 3, 1, 1, 1, 1),
]


@pytest.mark.parametrize("case", conv_params(THREAD_CASES))
def test_thread_count_does_not_change_bits(case):
    x = torch.randn(case.input_shape)
    w = torch.randn(case.weight_shape)
    b = torch.randn(case.K)
    g = torch.randn(case.output_shape)
    one = _at_threads(1, lambda: run(x, w, b, g, **case.kwargs()))
    two = _at_threads(2, lambda: run(x, w, b, g, **case.kwargs()))
    for name, a, c in zip(NAMES, one, two):
        assert torch.equal(a, c), f"{name} differs between 1 and 2 threads"
    check(two, reference(x, w, b, g, **case.kwargs()), exact=False)


GRADCHECK = [
    ("pad1", (2, 3, 5, 5), (4, 3, 3, 3), dict(padding=1)),
    ("stride2_asym", (1, 2, 6, 7), (3, 2, 2, 3), dict(stride=(2, 1), padding=(1, 0))),
    ("dilation", (1, 2, 7, 6), (2, 2, 3, 3), dict(dilation=(2, 1), padding=1)),
    ("groups", (2, 4, 5, 5), (4, 2, 3, 3), dict(groups=2, padding=1)),
    ("1x1", (2, 3, 3, 4), (2, 3, 1, 1), dict()),
]


@pytest.mark.parametrize("xs, ws, kwargs", [pytest.param(*c[1:], id=c[0]) for c in GRADCHECK])
def test_gradcheck(xs, ws, kwargs):
    x = torch.randn(xs, dtype=torch.float64, requires_grad=True)
    w = torch.randn(ws, dtype=torch.float64, requires_grad=True)
    b = torch.randn(ws[0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: cnnkern.conv2d(x, w, b, algo=ALGO, **kwargs), (x, w, b))


OPCHECK = [
    ((2, 3, 6, 6), (4, 3, 3, 3), [1, 1], [1, 1], [1, 1], 1),
    ((1, 4, 7, 6), (6, 2, 3, 2), [2, 1], [0, 1], [1, 2], 2),
    ((2, 4, 5, 5), (3, 4, 1, 1), [1, 1], [0, 0], [1, 1], 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", OPCHECK)
def test_opcheck(xs, ws, stride, padding, dilation, groups, dtype):
    ops = torch.ops.cnnkern
    x = torch.randn(xs, dtype=dtype, requires_grad=True)
    w = torch.randn(ws, dtype=dtype, requires_grad=True)
    b = torch.randn(ws[0], dtype=dtype, requires_grad=True)
    args = (stride, padding, dilation, groups, ALGO)
    for op, inputs in (
        (ops.conv2d.default, (x, w, b, *args)),
        (ops.conv2d_backward_input.default,
         (torch.randn(F.conv2d(x, w, b, stride, padding, dilation, groups).shape, dtype=dtype),
          w.detach(), list(xs), *args)),
        (ops.conv2d_backward_weight.default,
         (torch.randn(F.conv2d(x, w, b, stride, padding, dilation, groups).shape, dtype=dtype),
          x.detach(), list(ws), *args)),
    ):
        result = torch.library.opcheck(op, inputs)
        assert all(v == "SUCCESS" for v in result.values()), (op, result)


def test_empty_batch():
    case = next(c for c in CONV_CASES if c.N == 0)
    x, w, b, g = int_problem(case, torch.float32)
    out, gx, gw, gb = run(x, w, b, g, **case.kwargs())
    assert out.shape == case.output_shape and gx.shape == case.input_shape
    assert_exact(gw, torch.zeros(case.weight_shape))
    assert_exact(gb, torch.zeros(case.K))


def test_other_dtypes_are_refused_with_a_reason():
    # float16/bfloat16 run (through float32: tests/ops/test_conv2d.py's low-precision tests).
    x, w = torch.ones(1, 2, 5, 5, dtype=torch.int32), torch.ones(3, 2, 3, 3, dtype=torch.int32)
    ok, reason = cnnkern.can_implement(x, w, algo=ALGO)
    assert not ok and "float32, float64, float16 and bfloat16" in reason and "Int" in reason, \
        reason
    assert cnnkern.can_implement(x.half(), w.half(), algo=ALGO) == (True, "")
