"""cnnkern.max_pool2d / avg_pool2d / adaptive_avg_pool2d against torch, forward and backward."""

import math

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import OpRecorder, assert_close, assert_exact, int_tensor
from shapes import AVG_POOL_CASES, POOL_CASES, adaptive_params, pool_params

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def grads_of(fn, x, g):
    """(outputs, x.grad) for fn(leaf x) with grad_output g on the first output."""
    xl = x.detach().clone().requires_grad_(True)
    res = fn(xl)
    out = res[0] if isinstance(res, tuple) else res
    out.backward(g)
    return res, xl.grad


# ---------------------------------------------------------------------------------------------
# max_pool2d
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", pool_params())
def test_max_pool_matrix(case, dtype):
    x = torch.randn(case.input_shape, dtype=dtype)  # distinct values: no ties
    kw = case.max_kwargs()
    ref_out, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    g = int_tensor(*ref_out.shape, dtype=dtype)
    (out, idx), gx = grads_of(lambda t: cnnkern.max_pool2d(t, **kw, return_indices=True), x, g)
    (_, _), ref_gx = grads_of(lambda t: F.max_pool2d(t, **kw, return_indices=True), x, g)
    assert out.dtype == dtype
    assert idx.dtype == torch.int64
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)


@pytest.mark.parametrize("case", pool_params(POOL_CASES[:8]))
def test_max_pool_without_indices(case):
    x = torch.randn(case.input_shape)
    kw = case.max_kwargs()
    ref = F.max_pool2d(x, **kw)
    g = int_tensor(*ref.shape)
    out, gx = grads_of(lambda t: cnnkern.max_pool2d(t, **kw), x, g)
    assert isinstance(out, torch.Tensor)
    _, ref_gx = grads_of(lambda t: F.max_pool2d(t, **kw), x, g)
    assert_exact(out, ref)
    assert_exact(gx, ref_gx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", pool_params([c for c in POOL_CASES if c.N > 0][::2]))
def test_max_pool_ties_pick_torchs_index(case, dtype):
    x = int_tensor(*case.input_shape, lo=0, hi=3, dtype=dtype)  # lots of ties
    kw = case.max_kwargs()
    ref_out, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    g = int_tensor(*ref_out.shape, dtype=dtype)
    (out, idx), gx = grads_of(lambda t: cnnkern.max_pool2d(t, **kw, return_indices=True), x, g)
    _, ref_gx = grads_of(lambda t: F.max_pool2d(t, **kw, return_indices=True), x, g)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)


def test_max_pool_hand_example_indices():
    x = torch.tensor([[[[1., 9., 2., 3.],
                        [4., 5., 8., 0.],
                        [7., 6., 1., 2.],
                        [0., 3., 4., 9.]]]])
    out, idx = cnnkern.max_pool2d(x, 2, return_indices=True)
    assert_exact(out, torch.tensor([[[[9., 8.], [7., 9.]]]]))
    # flat positions within the 4x4 plane
    assert_exact(idx, torch.tensor([[[[1, 6], [8, 15]]]]))


def _with_specials(shape, dtype, frac, value):
    x = torch.randn(shape, dtype=dtype)
    mask = torch.rand(shape) < frac
    x[mask] = value
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", pool_params([c for c in POOL_CASES if c.N > 0][::3]))
def test_max_pool_nan_propagates_like_torch(case, dtype):
    x = _with_specials(case.input_shape, dtype, 0.15, float("nan"))
    kw = case.max_kwargs()
    ref_out, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    g = int_tensor(*ref_out.shape, dtype=dtype)
    (out, idx), gx = grads_of(lambda t: cnnkern.max_pool2d(t, **kw, return_indices=True), x, g)
    _, ref_gx = grads_of(lambda t: F.max_pool2d(t, **kw, return_indices=True), x, g)
    assert_exact(out, ref_out, equal_nan=True)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)


def test_max_pool_nan_hand_example():
    nan = float("nan")
    x = torch.tensor([[[[1., nan, 3.], [4., 5., 6.], [7., 8., nan]]]])
    out, idx = cnnkern.max_pool2d(x, 2, 1, return_indices=True)
    assert torch.isnan(out[0, 0, 0, 0]) and torch.isnan(out[0, 0, 0, 1])
    assert torch.isnan(out[0, 0, 1, 1]) and out[0, 0, 1, 0].item() == 8.0
    assert_exact(idx, torch.tensor([[[[1, 1], [7, 8]]]]))


@pytest.mark.parametrize("fill", [float("-inf"), float("inf")], ids=["-inf", "+inf"])
@pytest.mark.parametrize("case", pool_params([c for c in POOL_CASES if c.N > 0][1::3]))
def test_max_pool_infinities_like_torch(case, fill):
    x = _with_specials(case.input_shape, torch.float32, 0.3, fill)
    kw = case.max_kwargs()
    ref_out, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    out, idx = cnnkern.max_pool2d(x, **kw, return_indices=True)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)


@pytest.mark.parametrize("padding", [0, 1])
def test_max_pool_all_minus_inf_plane(padding):
    # Every window is all -inf: the max is -inf and its index is the window's first in-bounds
    # tap (padding never wins), as in torch.
    x = torch.full((1, 2, 3, 3), float("-inf"))
    ref_out, ref_idx = F.max_pool2d(x, 3 if padding else 2, 1, padding, return_indices=True)
    out, idx = cnnkern.max_pool2d(x, 3 if padding else 2, 1, padding, return_indices=True)
    assert torch.all(out == float("-inf"))
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)
    if padding:
        assert_exact(idx[0, 0], torch.tensor([[0, 0, 1], [0, 0, 1], [3, 3, 4]]))
    g = torch.ones_like(out)
    _, gx = grads_of(lambda t: cnnkern.max_pool2d(t, 3 if padding else 2, 1, padding), x, g)
    _, ref_gx = grads_of(lambda t: F.max_pool2d(t, 3 if padding else 2, 1, padding), x, g)
    assert_exact(gx, ref_gx)


def test_max_pool_negative_values_with_padding():
    # Padding must act as -inf, not 0: all-negative inputs keep negative maxima.
    x = -1.0 - torch.rand(1, 1, 4, 4)
    out, idx = cnnkern.max_pool2d(x, 3, 2, 1, return_indices=True)
    ref_out, ref_idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert torch.all(out < 0)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_unbatched(dtype):
    x = torch.randn(3, 7, 6, dtype=dtype)
    g = int_tensor(3, 4, 4, dtype=dtype)  # H: ceil((7+2-2)/2)+1 = 5 -> 4 (5th starts in padding)
    (out, idx), gx = grads_of(
        lambda t: cnnkern.max_pool2d(t, 2, 2, 1, ceil_mode=True, return_indices=True), x, g)
    (ref_out, ref_idx), ref_gx = grads_of(
        lambda t: F.max_pool2d(t, 2, 2, 1, ceil_mode=True, return_indices=True), x, g)
    assert out.shape == (3, 4, 4)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_max_pool_non_contiguous(layout):
    x0 = torch.randn(2, 3, 7, 8)
    x = {
        "channels_last": lambda: x0.contiguous(memory_format=torch.channels_last),
        "transposed": lambda: x0.transpose(2, 3).contiguous().transpose(2, 3),
        "sliced": lambda: F.pad(x0, (1, 1, 0, 0))[..., 1:-1],
    }[layout]()
    assert torch.equal(x, x0)
    ref_out, ref_idx = F.max_pool2d(x0, 3, 2, 1, return_indices=True)
    g = int_tensor(*ref_out.shape)
    (out, idx), gx = grads_of(lambda t: cnnkern.max_pool2d(t, 3, 2, 1, return_indices=True), x, g)
    _, ref_gx = grads_of(lambda t: F.max_pool2d(t, 3, 2, 1), x0, g)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)


@pytest.mark.parametrize("case", pool_params([c for c in POOL_CASES if c.N > 0][::4]))
def test_max_pool_raw_ops(case):
    x = torch.randn(case.input_shape)
    k, s = _pair(case.kernel_size), _pair(case.stride if case.stride is not None else case.kernel_size)
    p, d = _pair(case.padding), _pair(case.dilation)
    out, idx = torch.ops.cnnkern.max_pool2d_with_indices(x, k, s, p, d, case.ceil_mode)
    ref_out, ref_idx = torch.ops.aten.max_pool2d_with_indices(x, k, s, p, d, case.ceil_mode)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)
    g = int_tensor(*out.shape)
    gx = torch.ops.cnnkern.max_pool2d_backward(g, idx, list(x.shape), k, s, p, d, case.ceil_mode)
    ref_gx = torch.ops.aten.max_pool2d_with_indices_backward(g, x, k, s, p, d, case.ceil_mode,
                                                             ref_idx)
    assert_exact(gx, ref_gx)


def test_max_pool_dispatches_to_cnnkern():
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    with OpRecorder() as rec:
        cnnkern.max_pool2d(x, 2).sum().backward()
    assert "cnnkern::max_pool2d_with_indices" in rec.names
    assert "cnnkern::max_pool2d_backward" in rec.names
    assert not [n for n in rec.names if n.startswith("aten::max_pool")], rec.names


# ---------------------------------------------------------------------------------------------
# avg_pool2d
# ---------------------------------------------------------------------------------------------

AVG_SETTINGS = [
    pytest.param(True, None, id="include_pad"),
    pytest.param(False, None, id="exclude_pad"),
    pytest.param(True, 3, id="divisor3"),
    pytest.param(False, 2, id="divisor2_exclude_pad"),
]


@pytest.mark.parametrize("count_include_pad, divisor_override", AVG_SETTINGS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", pool_params(AVG_POOL_CASES))
def test_avg_pool_matrix(case, dtype, count_include_pad, divisor_override):
    x = torch.randn(case.input_shape, dtype=dtype)
    kw = dict(case.avg_kwargs(), count_include_pad=count_include_pad,
              divisor_override=divisor_override)
    ref = F.avg_pool2d(x.double(), **kw)
    g = torch.randn(ref.shape, dtype=dtype)
    out, gx = grads_of(lambda t: cnnkern.avg_pool2d(t, **kw), x, g)
    _, ref_gx = grads_of(lambda t: F.avg_pool2d(t, **kw), x.double(), g.double())
    assert out.dtype == dtype
    assert_close(out, ref)
    assert_close(gx, ref_gx)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_hand_example_padding_divisor(count_include_pad):
    # 2x2 plane of ones, 3x3 window, padding 1, stride 1: every window covers 4 real pixels and
    # 5 padded ones -> 4/9 with count_include_pad, 1 without.
    x = torch.ones(1, 1, 2, 2)
    out = cnnkern.avg_pool2d(x, 3, 1, 1, count_include_pad=count_include_pad)
    expected = torch.full((1, 1, 2, 2), 4.0 / 9.0 if count_include_pad else 1.0)
    assert_close(out, expected.double())


def test_avg_pool_ceil_overhang_divisor():
    # 1x1x1x5 row, kernel (1,2), stride 2, ceil_mode: last window covers only x[4] (it
    # overhangs the input with no padding), so its divisor is 1, not 2 (torch's rule).
    x = torch.tensor([[[[1.0, 3.0, 5.0, 7.0, 9.0]]]])
    for cip in (True, False):
        out = cnnkern.avg_pool2d(x, (1, 2), 2, 0, ceil_mode=True, count_include_pad=cip)
        assert_exact(out, torch.tensor([[[[2.0, 6.0, 9.0]]]]))
        assert_exact(out, F.avg_pool2d(x, (1, 2), 2, 0, ceil_mode=True, count_include_pad=cip))


def test_avg_pool_divisor_override_hand_example():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = cnnkern.avg_pool2d(x, 2, divisor_override=2)
    # window sums: [0+1+4+5, 2+3+6+7; 8+9+12+13, 10+11+14+15] = [10, 18; 42, 50]
    assert_exact(out, torch.tensor([[[[5.0, 9.0], [21.0, 25.0]]]]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_unbatched(dtype):
    x = torch.randn(2, 7, 5, dtype=dtype)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    ref = F.avg_pool2d(x.double(), **kw)
    g = torch.randn(ref.shape, dtype=dtype)
    out, gx = grads_of(lambda t: cnnkern.avg_pool2d(t, **kw), x, g)
    _, ref_gx = grads_of(lambda t: F.avg_pool2d(t, **kw), x.double(), g.double())
    assert out.shape == ref.shape == (2, 4, 3)
    assert_close(out, ref)
    assert_close(gx, ref_gx)


def test_avg_pool_channels_last_input():
    x = torch.randn(2, 3, 6, 7)
    out = cnnkern.avg_pool2d(x.contiguous(memory_format=torch.channels_last), 2, 2, 1)
    assert_close(out, F.avg_pool2d(x.double(), 2, 2, 1))


@pytest.mark.parametrize("case", pool_params([c for c in AVG_POOL_CASES if c.N > 0][::4]))
@pytest.mark.parametrize("count_include_pad, divisor_override", AVG_SETTINGS[:3])
def test_avg_pool_raw_ops(case, count_include_pad, divisor_override):
    x = torch.randn(case.input_shape, dtype=torch.float64)
    k = _pair(case.kernel_size)
    s = _pair(case.stride if case.stride is not None else case.kernel_size)
    p = _pair(case.padding)
    out = torch.ops.cnnkern.avg_pool2d(x, k, s, p, case.ceil_mode, count_include_pad,
                                       divisor_override)
    ref = torch.ops.aten.avg_pool2d(x, k, s, p, case.ceil_mode, count_include_pad,
                                    divisor_override)
    assert_close(out, ref)
    g = torch.randn(out.shape, dtype=torch.float64)
    gx = torch.ops.cnnkern.avg_pool2d_backward(g, list(x.shape), k, s, p, case.ceil_mode,
                                               count_include_pad, divisor_override)
    ref_gx = torch.ops.aten.avg_pool2d_backward(g, x, k, s, p, case.ceil_mode, count_include_pad,
                                                divisor_override)
    assert_close(gx, ref_gx)


def test_avg_pool_dispatches_to_cnnkern():
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    with OpRecorder() as rec:
        cnnkern.avg_pool2d(x, 2).sum().backward()
    assert "cnnkern::avg_pool2d" in rec.names
    assert "cnnkern::avg_pool2d_backward" in rec.names
    assert not [n for n in rec.names if n.startswith("aten::avg_pool")], rec.names


# ---------------------------------------------------------------------------------------------
# adaptive_avg_pool2d
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, C, H, W, output_size", adaptive_params())
def test_adaptive_avg_pool(N, C, H, W, output_size, dtype):
    x = torch.randn(N, C, H, W, dtype=dtype)
    ref = F.adaptive_avg_pool2d(x.double(), output_size)
    g = torch.randn(ref.shape, dtype=dtype)
    out, gx = grads_of(lambda t: cnnkern.adaptive_avg_pool2d(t, output_size), x, g)
    _, ref_gx = grads_of(lambda t: F.adaptive_avg_pool2d(t, output_size), x.double(), g.double())
    assert out.dtype == dtype
    assert out.shape == ref.shape
    assert_close(out, ref)
    assert_close(gx, ref_gx)


def test_adaptive_hand_example_non_divisible():
    # 1x5 row to 3 outputs: windows [floor(i*5/3), ceil((i+1)*5/3)) = [0,2), [1,4), [3,5).
    x = torch.tensor([[[[1.0, 2.0, 4.0, 8.0, 16.0]]]])
    out = cnnkern.adaptive_avg_pool2d(x, (1, 3))
    assert_close(out, torch.tensor([[[[1.5, 14.0 / 3.0, 12.0]]]], dtype=torch.float64))


def test_adaptive_global_pool_is_mean():
    x = torch.randn(3, 4, 7, 5, dtype=torch.float64)
    out = cnnkern.adaptive_avg_pool2d(x, 1)
    assert out.shape == (3, 4, 1, 1)
    assert_close(out, x.mean(dim=(2, 3), keepdim=True))


@pytest.mark.parametrize("output_size", [3, (2, 4), (None, 2)], ids=str)
def test_adaptive_unbatched(output_size):
    x = torch.randn(2, 6, 7, dtype=torch.float64)
    ref = F.adaptive_avg_pool2d(x, output_size)
    g = torch.randn(ref.shape, dtype=torch.float64)
    out, gx = grads_of(lambda t: cnnkern.adaptive_avg_pool2d(t, output_size), x, g)
    _, ref_gx = grads_of(lambda t: F.adaptive_avg_pool2d(t, output_size), x, g)
    assert out.dim() == 3
    assert_close(out, ref)
    assert_close(gx, ref_gx)


@pytest.mark.parametrize("output_size", [[3, 4], [1, 1], [7, 2], [9, 9]], ids=str)
def test_adaptive_raw_ops(output_size):
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    out = torch.ops.cnnkern.adaptive_avg_pool2d(x, output_size)
    assert_close(out, torch.ops.aten._adaptive_avg_pool2d(x, output_size))
    g = torch.randn(out.shape, dtype=torch.float64)
    gx = torch.ops.cnnkern.adaptive_avg_pool2d_backward(g, list(x.shape))
    assert_close(gx, torch.ops.aten._adaptive_avg_pool2d_backward(g, x))


def test_adaptive_dispatches_to_cnnkern():
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    with OpRecorder() as rec:
        cnnkern.adaptive_avg_pool2d(x, 4).sum().backward()
    assert "cnnkern::adaptive_avg_pool2d" in rec.names
    assert "cnnkern::adaptive_avg_pool2d_backward" in rec.names
    assert not [n for n in rec.names if "adaptive" in n and n.startswith("aten::")], rec.names


def test_pool_outputs_have_no_nan_from_empty_windows():
    # Sanity for every op on a ceil_mode shape whose last window is dropped by torch's rule:
    # if the kernel kept it, it would average/max an empty window (NaN / -inf / 0 / index -1).
    x = torch.randn(1, 1, 5, 5)
    mx, idx = cnnkern.max_pool2d(x, 2, 2, 1, ceil_mode=True, return_indices=True)
    av = cnnkern.avg_pool2d(x, 2, 2, 1, ceil_mode=True)
    assert mx.shape == av.shape == (1, 1, 3, 3)
    assert torch.isfinite(mx).all() and torch.isfinite(av).all()
    assert int(idx.min()) >= 0 and int(idx.max()) < 25
    assert math.isclose(float(av[0, 0, 0, 0]), float(x[0, 0, 0, 0]) / 4, rel_tol=1e-6)


# ---------------------------------------------------------------------------------------------
# channels_last: read in place, outputs and gradients in torch's layout
# ---------------------------------------------------------------------------------------------

CL = torch.channels_last
GRAD_LAYOUTS = [pytest.param(torch.contiguous_format, id="grad_nchw"),
                pytest.param(CL, id="grad_nhwc")]
INPUT_LAYOUTS = [pytest.param(torch.contiguous_format, id="in_nchw"),
                 pytest.param(CL, id="in_nhwc")]


def _grads_in_layout(fn, x, g):
    """(outputs, x.grad) for fn(leaf x), grad_output g on the first output (any layout)."""
    xl = x.detach().clone().requires_grad_(True)
    res = fn(xl)
    (res[0] if isinstance(res, tuple) else res).backward(g)
    return res, xl.grad


def _check_layouts_like_torch(ours_fn, torch_fn, x, grad_layout, exact):
    ref = torch_fn(x)
    ref0 = ref[0] if isinstance(ref, tuple) else ref
    g = int_tensor(*ref0.shape, dtype=x.dtype).contiguous(memory_format=grad_layout)
    res, gx = _grads_in_layout(ours_fn, x, g)
    ref, ref_gx = _grads_in_layout(torch_fn, x, g)
    outs = res if isinstance(res, tuple) else (res,)
    refs = ref if isinstance(ref, tuple) else (ref,)
    for a, b in zip(outs, refs):
        (assert_exact if exact or a.dtype == torch.int64 else assert_close)(a, b)
        assert a.stride() == b.stride(), (a.stride(), b.stride())
    (assert_exact if exact else assert_close)(gx, ref_gx)
    assert gx.stride() == ref_gx.stride(), (gx.stride(), ref_gx.stride())


@pytest.mark.parametrize("grad_layout", GRAD_LAYOUTS)
@pytest.mark.parametrize("in_layout", INPUT_LAYOUTS)
@pytest.mark.parametrize("case", pool_params([c for c in POOL_CASES if c.N > 0][::2]))
def test_max_pool_layouts_like_torch(case, in_layout, grad_layout):
    x = torch.randn(case.input_shape, dtype=torch.float64).contiguous(memory_format=in_layout)
    kw = dict(case.max_kwargs(), return_indices=True)
    _check_layouts_like_torch(lambda t: cnnkern.max_pool2d(t, **kw),
                              lambda t: F.max_pool2d(t, **kw), x, grad_layout, exact=True)


@pytest.mark.parametrize("grad_layout", GRAD_LAYOUTS)
@pytest.mark.parametrize("in_layout", INPUT_LAYOUTS)
@pytest.mark.parametrize("case", pool_params([c for c in AVG_POOL_CASES if c.N > 0][::2]))
def test_avg_pool_layouts_like_torch(case, in_layout, grad_layout):
    x = torch.randn(case.input_shape, dtype=torch.float64).contiguous(memory_format=in_layout)
    kw = dict(case.avg_kwargs(), count_include_pad=False)
    _check_layouts_like_torch(lambda t: cnnkern.avg_pool2d(t, **kw),
                              lambda t: F.avg_pool2d(t, **kw), x, grad_layout, exact=False)


@pytest.mark.parametrize("grad_layout", GRAD_LAYOUTS)
@pytest.mark.parametrize("in_layout", INPUT_LAYOUTS)
@pytest.mark.parametrize("N, C, H, W, output_size", adaptive_params())
def test_adaptive_avg_pool_layouts_like_torch(N, C, H, W, output_size, in_layout, grad_layout):
    x = torch.randn(N, C, H, W, dtype=torch.float64).contiguous(memory_format=in_layout)
    _check_layouts_like_torch(lambda t: cnnkern.adaptive_avg_pool2d(t, output_size),
                              lambda t: F.adaptive_avg_pool2d(t, output_size), x, grad_layout,
                              exact=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_last_in_channels_last_out(dtype):
    x = torch.randn(2, 5, 9, 11, dtype=dtype).contiguous(memory_format=CL)
    out, idx = cnnkern.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert out.is_contiguous(memory_format=CL) and idx.is_contiguous(memory_format=CL)
    assert not out.is_contiguous()
    ref, ref_idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert_exact(out, ref)
    assert_exact(idx, ref_idx)
    assert cnnkern.avg_pool2d(x, 2).is_contiguous(memory_format=CL)
    assert cnnkern.adaptive_avg_pool2d(x, (3, 4)).is_contiguous(memory_format=CL)
