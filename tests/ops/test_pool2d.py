"""cnnkern.max_pool2d / avg_pool2d / adaptive_avg_pool2d against torch, forward and backward,
on every backend: the CPU, a GPU ("cuda") and the CUDA emulator ("cuda_emu"; the `dev` fixture,
tests/conftest.py). Max pooling must match torch bit for bit (values, indices, and gradients of
integer-valued grad_outputs); average pooling within the dtype's tolerance of float64, and for
fp16/bf16 by flash-attention's rule (error vs float64 at most K_LOWP x torch's own).

The emulator runs every thread as a fiber: where a GPU takes the whole shape matrix in every
dtype, the CPU and the emulator may take a subset (per_device)."""

import math

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import (DEVICES, OpRecorder, assert_close, assert_exact, cross,
                      fp64_error_ratio, int_tensor, per_device)
from shapes import AVG_POOL_CASES, POOL_CASES, adaptive_params, pool_params

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
LOWP_DTYPES = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]
ALL_DTYPES = DTYPES + LOWP_DTYPES
LOWP = (torch.float16, torch.bfloat16)
K_LOWP = 3.0
BATCHED = [c for c in POOL_CASES if c.N > 0]
AVG_BATCHED = [c for c in AVG_POOL_CASES if c.N > 0]


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
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_matrix(case, dtype, dev):
    x = torch.randn(case.input_shape, dtype=dtype, device=dev.device)  # distinct values: no ties
    kw = case.max_kwargs()
    ref_out, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    g = int_tensor(*ref_out.shape, dtype=dtype, device=dev.device)
    (out, idx), gx = grads_of(lambda t: cnnkern.max_pool2d(t, **kw, return_indices=True), x, g)
    (_, _), ref_gx = grads_of(lambda t: F.max_pool2d(t, **kw, return_indices=True), x, g)
    assert out.dtype == dtype
    assert idx.dtype == torch.int64
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)


@pytest.mark.parametrize("case", pool_params(POOL_CASES[:8]))
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_without_indices(case, dev):
    x = torch.randn(case.input_shape, device=dev.device)
    kw = case.max_kwargs()
    ref = F.max_pool2d(x, **kw)
    g = int_tensor(*ref.shape, device=dev.device)
    out, gx = grads_of(lambda t: cnnkern.max_pool2d(t, **kw), x, g)
    assert isinstance(out, torch.Tensor)
    _, ref_gx = grads_of(lambda t: F.max_pool2d(t, **kw), x, g)
    assert_exact(out, ref)
    assert_exact(gx, ref_gx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", pool_params(BATCHED[::2]))
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_ties_pick_torchs_index(case, dtype, dev):
    x = int_tensor(*case.input_shape, lo=0, hi=3, dtype=dtype, device=dev.device)  # lots of ties
    kw = case.max_kwargs()
    ref_out, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    g = int_tensor(*ref_out.shape, dtype=dtype, device=dev.device)
    (out, idx), gx = grads_of(lambda t: cnnkern.max_pool2d(t, **kw, return_indices=True), x, g)
    _, ref_gx = grads_of(lambda t: F.max_pool2d(t, **kw, return_indices=True), x, g)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_hand_example_indices(dev):
    x = torch.tensor([[[[1., 9., 2., 3.],
                        [4., 5., 8., 0.],
                        [7., 6., 1., 2.],
                        [0., 3., 4., 9.]]]], device=dev.device)
    out, idx = cnnkern.max_pool2d(x, 2, return_indices=True)
    assert_exact(out, torch.tensor([[[[9., 8.], [7., 9.]]]]))
    # flat positions within the 4x4 plane
    assert_exact(idx, torch.tensor([[[[1, 6], [8, 15]]]]))


def _with_specials(shape, dtype, frac, value, device):
    x = torch.randn(shape, dtype=dtype, device=device)
    mask = torch.rand(shape, device=device) < frac
    x[mask] = value
    return x


# 15% NaN on a third of the matrix; 5% on all of it (most windows with a NaN, many without).
NAN_CASES = (cross(pool_params(BATCHED[::3]), DTYPES, [pytest.param(0.15, id="nan15")])
             + cross(pool_params(), DTYPES, [pytest.param(0.05, id="nan5")]))


@pytest.mark.parametrize("case, dtype, frac", NAN_CASES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_nan_propagates_like_torch(case, dtype, frac, dev):
    x = _with_specials(case.input_shape, dtype, frac, float("nan"), dev.device)
    kw = case.max_kwargs()
    ref_out, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    g = int_tensor(*ref_out.shape, dtype=dtype, device=dev.device)
    (out, idx), gx = grads_of(lambda t: cnnkern.max_pool2d(t, **kw, return_indices=True), x, g)
    _, ref_gx = grads_of(lambda t: F.max_pool2d(t, **kw, return_indices=True), x, g)
    assert_exact(out, ref_out, equal_nan=True)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_nan_hand_example(dev):
    nan = float("nan")
    x = torch.tensor([[[[1., nan, 3.], [4., 5., 6.], [7., 8., nan]]]], device=dev.device)
    out, idx = cnnkern.max_pool2d(x, 2, 1, return_indices=True)
    assert torch.isnan(out[0, 0, 0, 0]) and torch.isnan(out[0, 0, 0, 1])
    assert torch.isnan(out[0, 0, 1, 1]) and out[0, 0, 1, 0].item() == 8.0
    assert_exact(idx, torch.tensor([[[[1, 1], [7, 8]]]]))


@pytest.mark.parametrize("fill", [float("-inf"), float("inf")], ids=["-inf", "+inf"])
@pytest.mark.parametrize("case", pool_params(BATCHED[1::3]))
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_infinities_like_torch(case, fill, dev):
    x = _with_specials(case.input_shape, torch.float32, 0.3, fill, dev.device)
    kw = case.max_kwargs()
    ref_out, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    out, idx = cnnkern.max_pool2d(x, **kw, return_indices=True)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_all_minus_inf_plane(padding, dev):
    # Every window is all -inf: the max is -inf and its index is the window's first in-bounds
    # tap (padding never wins), as in torch.
    x = torch.full((1, 2, 3, 3), float("-inf"), device=dev.device)
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


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "nhwc"])
@pytest.mark.parametrize("shape,args", [
    # every tap in the padding or the dilation gap: the stored index (torch's) aliases element
    # (1, 0), on the next row, which is in no window
    ((1, 1, 2, 1), ((2, 2), (1, 1), (0, 1), (1, 2))),
    ((1, 1, 2, 1), ((1, 2), (1, 1), (0, 1), (1, 2))),
    ((2, 3, 1, 1), ((2, 1), (1, 1), (1, 0), (2, 1))),  # issue 15's 1x1 plane
], ids=["2x1_k2x2_dil2", "2x1_k1x2_dil2", "1x1_k2x1_pad1_dil2"])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_window_entirely_in_padding_passes_no_gradient(shape, args, layout, dev):
    """A window with no tap inside the input gives -inf (and torch's index), and no gradient to
    any element: its output depends on none. Found by the property tests; torch itself
    scatters such gradients to the aliased index, or past the tensor."""
    x = torch.randn(shape, dtype=torch.float64, device=dev.device)
    x = x.contiguous(memory_format=layout).requires_grad_()
    out, idx = cnnkern.max_pool2d(x, *args, return_indices=True)
    ref, ref_idx = F.max_pool2d(x.detach().cpu(), *args, return_indices=True)
    assert_exact(out, ref)
    assert_exact(idx, ref_idx)
    assert out.isinf().all()
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert_exact(grad, torch.zeros(shape, dtype=torch.float64))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_negative_values_with_padding(dev):
    # Padding must act as -inf, not 0: all-negative inputs keep negative maxima.
    x = -1.0 - torch.rand(1, 1, 4, 4, device=dev.device)
    out, idx = cnnkern.max_pool2d(x, 3, 2, 1, return_indices=True)
    ref_out, ref_idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert torch.all(out < 0)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_unbatched(dtype, dev):
    x = torch.randn(3, 7, 6, dtype=dtype, device=dev.device)
    # H: ceil((7+2-2)/2)+1 = 5 -> 4 (the 5th window starts in the padding)
    g = int_tensor(3, 4, 4, dtype=dtype, device=dev.device)
    (out, idx), gx = grads_of(
        lambda t: cnnkern.max_pool2d(t, 2, 2, 1, ceil_mode=True, return_indices=True), x, g)
    (ref_out, ref_idx), ref_gx = grads_of(
        lambda t: F.max_pool2d(t, 2, 2, 1, ceil_mode=True, return_indices=True), x, g)
    assert out.shape == (3, 4, 4)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_non_contiguous(layout, dev):
    x0 = torch.randn(2, 3, 7, 8, device=dev.device)
    x = {
        "channels_last": lambda: x0.contiguous(memory_format=torch.channels_last),
        "transposed": lambda: x0.transpose(2, 3).contiguous().transpose(2, 3),
        "sliced": lambda: F.pad(x0, (1, 1, 0, 0))[..., 1:-1],
    }[layout]()
    assert torch.equal(x, x0)
    ref_out, ref_idx = F.max_pool2d(x0, 3, 2, 1, return_indices=True)
    g = int_tensor(*ref_out.shape, device=dev.device)
    (out, idx), gx = grads_of(lambda t: cnnkern.max_pool2d(t, 3, 2, 1, return_indices=True), x, g)
    _, ref_gx = grads_of(lambda t: F.max_pool2d(t, 3, 2, 1), x0, g)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)


@pytest.mark.parametrize("case", pool_params(BATCHED[::4]))
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_raw_ops(case, dev):
    x = torch.randn(case.input_shape, device=dev.device)
    k, s = _pair(case.kernel_size), _pair(case.stride if case.stride is not None else case.kernel_size)
    p, d = _pair(case.padding), _pair(case.dilation)
    out, idx = torch.ops.cnnkern.max_pool2d_with_indices(x, k, s, p, d, case.ceil_mode)
    ref_out, ref_idx = torch.ops.aten.max_pool2d_with_indices(x, k, s, p, d, case.ceil_mode)
    assert_exact(out, ref_out)
    assert_exact(idx, ref_idx)
    g = int_tensor(*out.shape, device=dev.device)
    gx = torch.ops.cnnkern.max_pool2d_backward(g, idx, list(x.shape), k, s, p, d, case.ceil_mode)
    ref_gx = torch.ops.aten.max_pool2d_with_indices_backward(g, x, k, s, p, d, case.ceil_mode,
                                                             ref_idx)
    assert_exact(gx, ref_gx)


def _dispatches_to_cnnkern(fn, device, ops, aten_prefix):
    """fn and its backward run the cnnkern ops `ops` and no aten op named aten_prefix*."""
    x = torch.randn(1, 2, 6, 6, device=device, requires_grad=True)
    with OpRecorder() as rec:
        fn(x).sum().backward()
    for op in ops:
        assert f"cnnkern::{op}" in rec.names, (op, rec.names)
    assert not [n for n in rec.names if n.startswith(aten_prefix)], rec.names


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool_dispatches_to_cnnkern(dev):
    _dispatches_to_cnnkern(lambda x: cnnkern.max_pool2d(x, 2), dev.device,
                           ["max_pool2d_with_indices", "max_pool2d_backward"], "aten::max_pool")


# ---------------------------------------------------------------------------------------------
# avg_pool2d
# ---------------------------------------------------------------------------------------------

AVG_SETTINGS = [
    pytest.param(True, None, id="include_pad"),
    pytest.param(False, None, id="exclude_pad"),
    pytest.param(True, 3, id="divisor3"),
    pytest.param(False, 2, id="divisor2_exclude_pad"),
]


# The emulator takes the first three settings (the fourth combines two of them).
@pytest.mark.parametrize("dev, case, dtype, count_include_pad, divisor_override", per_device(
    cpu=cross(pool_params(AVG_POOL_CASES), DTYPES, AVG_SETTINGS),
    gpu=cross(pool_params(AVG_POOL_CASES), DTYPES, AVG_SETTINGS),
    emu=cross(pool_params(AVG_POOL_CASES), DTYPES, AVG_SETTINGS[:3])), indirect=["dev"])
def test_avg_pool_matrix(case, dtype, count_include_pad, divisor_override, dev):
    x = torch.randn(case.input_shape, dtype=dtype, device=dev.device)
    kw = dict(case.avg_kwargs(), count_include_pad=count_include_pad,
              divisor_override=divisor_override)
    ref = F.avg_pool2d(x.double(), **kw)
    g = torch.randn(ref.shape, dtype=dtype, device=dev.device)
    out, gx = grads_of(lambda t: cnnkern.avg_pool2d(t, **kw), x, g)
    _, ref_gx = grads_of(lambda t: F.avg_pool2d(t, **kw), x.double(), g.double())
    assert out.dtype == dtype
    assert_close(out, ref)
    assert_close(gx, ref_gx)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_avg_pool_hand_example_padding_divisor(count_include_pad, dev):
    # 2x2 plane of ones, 3x3 window, padding 1, stride 1: every window covers 4 real pixels and
    # 5 padded ones -> 4/9 with count_include_pad, 1 without.
    x = torch.ones(1, 1, 2, 2, device=dev.device)
    out = cnnkern.avg_pool2d(x, 3, 1, 1, count_include_pad=count_include_pad)
    expected = torch.full((1, 1, 2, 2), 4.0 / 9.0 if count_include_pad else 1.0)
    assert_close(out, expected.double())


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_avg_pool_ceil_overhang_divisor(dev):
    # 1x1x1x5 row, kernel (1,2), stride 2, ceil_mode: last window covers only x[4] (it
    # overhangs the input with no padding), so its divisor is 1, not 2 (torch's rule).
    x = torch.tensor([[[[1.0, 3.0, 5.0, 7.0, 9.0]]]], device=dev.device)
    for cip in (True, False):
        out = cnnkern.avg_pool2d(x, (1, 2), 2, 0, ceil_mode=True, count_include_pad=cip)
        assert_exact(out, torch.tensor([[[[2.0, 6.0, 9.0]]]]))
        assert_exact(out, F.avg_pool2d(x, (1, 2), 2, 0, ceil_mode=True, count_include_pad=cip))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_avg_pool_divisor_override_hand_example(dev):
    x = torch.arange(16.0, device=dev.device).reshape(1, 1, 4, 4)
    out = cnnkern.avg_pool2d(x, 2, divisor_override=2)
    # window sums: [0+1+4+5, 2+3+6+7; 8+9+12+13, 10+11+14+15] = [10, 18; 42, 50]
    assert_exact(out, torch.tensor([[[[5.0, 9.0], [21.0, 25.0]]]]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_avg_pool_unbatched(dtype, dev):
    x = torch.randn(2, 7, 5, dtype=dtype, device=dev.device)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    ref = F.avg_pool2d(x.double(), **kw)
    g = torch.randn(ref.shape, dtype=dtype, device=dev.device)
    out, gx = grads_of(lambda t: cnnkern.avg_pool2d(t, **kw), x, g)
    _, ref_gx = grads_of(lambda t: F.avg_pool2d(t, **kw), x.double(), g.double())
    assert out.shape == ref.shape == (2, 4, 3)
    assert_close(out, ref)
    assert_close(gx, ref_gx)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_avg_pool_channels_last_input(dev):
    x = torch.randn(2, 3, 6, 7, device=dev.device)
    out = cnnkern.avg_pool2d(x.contiguous(memory_format=torch.channels_last), 2, 2, 1)
    assert_close(out, F.avg_pool2d(x.double(), 2, 2, 1))


@pytest.mark.parametrize("case", pool_params(AVG_BATCHED[::4]))
@pytest.mark.parametrize("count_include_pad, divisor_override", AVG_SETTINGS[:3])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_avg_pool_raw_ops(case, count_include_pad, divisor_override, dev):
    x = torch.randn(case.input_shape, dtype=torch.float64, device=dev.device)
    k = _pair(case.kernel_size)
    s = _pair(case.stride if case.stride is not None else case.kernel_size)
    p = _pair(case.padding)
    out = torch.ops.cnnkern.avg_pool2d(x, k, s, p, case.ceil_mode, count_include_pad,
                                       divisor_override)
    ref = torch.ops.aten.avg_pool2d(x, k, s, p, case.ceil_mode, count_include_pad,
                                    divisor_override)
    assert_close(out, ref)
    g = torch.randn(out.shape, dtype=torch.float64, device=dev.device)
    gx = torch.ops.cnnkern.avg_pool2d_backward(g, list(x.shape), k, s, p, case.ceil_mode,
                                               count_include_pad, divisor_override)
    ref_gx = torch.ops.aten.avg_pool2d_backward(g, x, k, s, p, case.ceil_mode, count_include_pad,
                                                divisor_override)
    assert_close(gx, ref_gx)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_avg_pool_dispatches_to_cnnkern(dev):
    _dispatches_to_cnnkern(lambda x: cnnkern.avg_pool2d(x, 2), dev.device,
                           ["avg_pool2d", "avg_pool2d_backward"], "aten::avg_pool")


# ---------------------------------------------------------------------------------------------
# adaptive_avg_pool2d
# ---------------------------------------------------------------------------------------------

# The curated cases, and a 7x9 plane to sizes that split it unevenly or upsample it.
ADAPTIVE = adaptive_params() + [pytest.param(2, 3, 7, 9, o, id=f"7x9_to_{o}")
                                for o in (1, 3, (2, 5), (None, 4), (9, 11))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, C, H, W, output_size", ADAPTIVE)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_adaptive_avg_pool(N, C, H, W, output_size, dtype, dev):
    x = torch.randn(N, C, H, W, dtype=dtype, device=dev.device)
    ref = F.adaptive_avg_pool2d(x.double(), output_size)
    g = torch.randn(ref.shape, dtype=dtype, device=dev.device)
    out, gx = grads_of(lambda t: cnnkern.adaptive_avg_pool2d(t, output_size), x, g)
    _, ref_gx = grads_of(lambda t: F.adaptive_avg_pool2d(t, output_size), x.double(), g.double())
    assert out.dtype == dtype
    assert out.shape == ref.shape
    assert_close(out, ref)
    assert_close(gx, ref_gx)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_adaptive_hand_example_non_divisible(dev):
    # 1x5 row to 3 outputs: windows [floor(i*5/3), ceil((i+1)*5/3)) = [0,2), [1,4), [3,5).
    x = torch.tensor([[[[1.0, 2.0, 4.0, 8.0, 16.0]]]], device=dev.device)
    out = cnnkern.adaptive_avg_pool2d(x, (1, 3))
    assert_close(out, torch.tensor([[[[1.5, 14.0 / 3.0, 12.0]]]], dtype=torch.float64))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_adaptive_global_pool_is_mean(dev):
    x = torch.randn(3, 4, 7, 5, dtype=torch.float64, device=dev.device)
    out = cnnkern.adaptive_avg_pool2d(x, 1)
    assert out.shape == (3, 4, 1, 1)
    assert_close(out, x.mean(dim=(2, 3), keepdim=True))


@pytest.mark.parametrize("output_size", [3, (2, 4), (None, 2)], ids=str)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_adaptive_unbatched(output_size, dev):
    x = torch.randn(2, 6, 7, dtype=torch.float64, device=dev.device)
    ref = F.adaptive_avg_pool2d(x, output_size)
    g = torch.randn(ref.shape, dtype=torch.float64, device=dev.device)
    out, gx = grads_of(lambda t: cnnkern.adaptive_avg_pool2d(t, output_size), x, g)
    _, ref_gx = grads_of(lambda t: F.adaptive_avg_pool2d(t, output_size), x, g)
    assert out.dim() == 3
    assert_close(out, ref)
    assert_close(gx, ref_gx)


@pytest.mark.parametrize("output_size", [[3, 4], [1, 1], [7, 2], [9, 9]], ids=str)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_adaptive_raw_ops(output_size, dev):
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, device=dev.device)
    out = torch.ops.cnnkern.adaptive_avg_pool2d(x, output_size)
    assert_close(out, torch.ops.aten._adaptive_avg_pool2d(x, output_size))
    g = torch.randn(out.shape, dtype=torch.float64, device=dev.device)
    gx = torch.ops.cnnkern.adaptive_avg_pool2d_backward(g, list(x.shape))
    assert_close(gx, torch.ops.aten._adaptive_avg_pool2d_backward(g, x))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_adaptive_dispatches_to_cnnkern(dev):
    x = torch.randn(1, 2, 6, 6, device=dev.device, requires_grad=True)
    with OpRecorder() as rec:
        cnnkern.adaptive_avg_pool2d(x, 4).sum().backward()
    assert "cnnkern::adaptive_avg_pool2d" in rec.names
    assert "cnnkern::adaptive_avg_pool2d_backward" in rec.names
    assert not [n for n in rec.names if "adaptive" in n and n.startswith("aten::")], rec.names


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_pool_outputs_have_no_nan_from_empty_windows(dev):
    # Sanity for every op on a ceil_mode shape whose last window is dropped by torch's rule:
    # if the kernel kept it, it would average/max an empty window (NaN / -inf / 0 / index -1).
    x = torch.randn(1, 1, 5, 5, device=dev.device)
    mx, idx = cnnkern.max_pool2d(x, 2, 2, 1, ceil_mode=True, return_indices=True)
    av = cnnkern.avg_pool2d(x, 2, 2, 1, ceil_mode=True)
    assert mx.shape == av.shape == (1, 1, 3, 3)
    assert torch.isfinite(mx).all() and torch.isfinite(av).all()
    assert int(idx.min()) >= 0 and int(idx.max()) < 25
    assert math.isclose(float(av[0, 0, 0, 0]), float(x[0, 0, 0, 0]) / 4, rel_tol=1e-6)


def _close_or_lowp(ours, ref64, torch_same_dtype):
    """float32/64: within the dtype's tolerance of float64; fp16/bf16: flash-attention's rule."""
    if ours.dtype in LOWP:
        err, torch_err = fp64_error_ratio(ours, ref64, torch_same_dtype)
        assert err <= K_LOWP * torch_err + torch.finfo(ours.dtype).eps * 4, (err, torch_err)
    else:
        assert_close(ours, ref64)


@pytest.mark.parametrize("dtype", LOWP_DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_pools_low_precision(dtype, dev):
    """NCHW (channels_last: the *_every_dtype tests): max values and indices exact (a max of
    half values is one of them), averages and every backward by the float64 rule."""
    x = torch.randn(2, 3, 9, 8, device=dev.device).to(dtype)
    out, idx = cnnkern.max_pool2d(x, 3, 2, 1, return_indices=True)
    ref, ref_idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert out.dtype == dtype
    assert_exact(out, ref)
    assert_exact(idx, ref_idx)
    pairs = [(lambda t: cnnkern.max_pool2d(t, 3, 2, 1), lambda t: F.max_pool2d(t, 3, 2, 1)),
             (lambda t: cnnkern.avg_pool2d(t, 3, 2, 1), lambda t: F.avg_pool2d(t, 3, 2, 1)),
             (lambda t: cnnkern.adaptive_avg_pool2d(t, (4, 3)),
              lambda t: F.adaptive_avg_pool2d(t, (4, 3)))]
    for ours_fn, torch_fn in pairs:
        g = torch.randn(torch_fn(x).shape, device=dev.device).to(dtype)
        ours, gx = grads_of(ours_fn, x, g)
        theirs, ref_gx = grads_of(torch_fn, x, g)
        ref64, ref64_gx = grads_of(torch_fn, x.double(), g.double())
        assert ours.dtype == gx.dtype == dtype
        _close_or_lowp(ours, ref64, theirs)
        _close_or_lowp(gx, ref64_gx, ref_gx)


# ---------------------------------------------------------------------------------------------
# channels_last: read in place (the NHWC paths, C fastest), outputs, indices and gradients in
# torch's layout
# ---------------------------------------------------------------------------------------------

CL = torch.channels_last
LAYOUTS2 = [pytest.param(torch.contiguous_format, id="nchw"), pytest.param(CL, id="nhwc")]
GRAD_LAYOUTS = [pytest.param(torch.contiguous_format, id="grad_nchw"),
                pytest.param(CL, id="grad_nhwc")]
INPUT_LAYOUTS = [pytest.param(torch.contiguous_format, id="in_nchw"),
                 pytest.param(CL, id="in_nhwc")]


def _same_strides(a, b, what):
    assert a.stride() == b.stride(), f"{what}: {a.stride()} != torch's {b.stride()}"


def _check_layouts_like_torch(ours_fn, torch_fn, shape, in_layout, grad_layout, exact, device):
    """float64 input of `shape` in in_layout, grad_output in grad_layout: values (exact or
    close), indices and the gradient like torch's, in torch's strides."""
    x = torch.randn(shape, dtype=torch.float64, device=device).contiguous(memory_format=in_layout)
    ref = torch_fn(x)
    ref0 = ref[0] if isinstance(ref, tuple) else ref
    g = int_tensor(*ref0.shape, dtype=x.dtype, device=x.device).contiguous(
        memory_format=grad_layout)
    res, gx = grads_of(ours_fn, x, g)
    ref, ref_gx = grads_of(torch_fn, x, g)
    outs = res if isinstance(res, tuple) else (res,)
    refs = ref if isinstance(ref, tuple) else (ref,)
    for a, b in zip(outs, refs):
        (assert_exact if exact or a.dtype == torch.int64 else assert_close)(a, b)
        _same_strides(a, b, "output")
    (assert_exact if exact else assert_close)(gx, ref_gx)
    _same_strides(gx, ref_gx, "grad_input")


def layouts_like_torch(cases):
    """per_device parameters: cases x every input and grad_output layout; the emulator takes the
    two mixed ones (the every-dtype tests below run it in channels_last throughout, the
    matrices above in NCHW)."""
    every = cross(cases, INPUT_LAYOUTS, GRAD_LAYOUTS)
    mixed = [p for p in every if p.id.endswith(("in_nchw-grad_nhwc", "in_nhwc-grad_nchw"))]
    return per_device(cpu=every, gpu=every, emu=mixed)


@pytest.mark.parametrize("dev, case, in_layout, grad_layout",
                         layouts_like_torch(pool_params(BATCHED[::2])), indirect=["dev"])
def test_max_pool_layouts_like_torch(case, in_layout, grad_layout, dev):
    kw = dict(case.max_kwargs(), return_indices=True)
    _check_layouts_like_torch(lambda t: cnnkern.max_pool2d(t, **kw),
                              lambda t: F.max_pool2d(t, **kw), case.input_shape, in_layout,
                              grad_layout, True, dev.device)


@pytest.mark.parametrize("dev, case, in_layout, grad_layout",
                         layouts_like_torch(pool_params(AVG_BATCHED[::2])), indirect=["dev"])
def test_avg_pool_layouts_like_torch(case, in_layout, grad_layout, dev):
    kw = dict(case.avg_kwargs(), count_include_pad=False)
    _check_layouts_like_torch(lambda t: cnnkern.avg_pool2d(t, **kw),
                              lambda t: F.avg_pool2d(t, **kw), case.input_shape, in_layout,
                              grad_layout, False, dev.device)


@pytest.mark.parametrize("dev, N, C, H, W, output_size, in_layout, grad_layout",
                         layouts_like_torch(adaptive_params()), indirect=["dev"])
def test_adaptive_avg_pool_layouts_like_torch(N, C, H, W, output_size, in_layout, grad_layout,
                                              dev):
    _check_layouts_like_torch(lambda t: cnnkern.adaptive_avg_pool2d(t, output_size),
                              lambda t: F.adaptive_avg_pool2d(t, output_size), (N, C, H, W),
                              in_layout, grad_layout, False, dev.device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_channels_last_in_channels_last_out(dtype, dev):
    x = torch.randn(2, 5, 9, 11, dtype=dtype, device=dev.device).contiguous(memory_format=CL)
    out, idx = cnnkern.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert out.is_contiguous(memory_format=CL) and idx.is_contiguous(memory_format=CL)
    assert not out.is_contiguous()
    ref, ref_idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert_exact(out, ref)
    assert_exact(idx, ref_idx)
    assert cnnkern.avg_pool2d(x, 2).is_contiguous(memory_format=CL)
    assert cnnkern.adaptive_avg_pool2d(x, (3, 4)).is_contiguous(memory_format=CL)


# In every dtype (fp16/bf16 on the CPU: the float32 kernels on float32 copies, rounded once):
# NaN inputs to max pooling, float64 references (flash-attention's rule for fp16/bf16) for the
# averages.


def every_dtype(*lists):
    """per_device parameters: lists x every dtype, on every backend."""
    return per_device(cpu=cross(*lists, ALL_DTYPES), gpu=cross(*lists, ALL_DTYPES))


@pytest.mark.parametrize("dev, case, dtype", every_dtype(pool_params()), indirect=["dev"])
def test_max_pool_channels_last_every_dtype(case, dtype, dev):
    x = torch.randn(case.input_shape, device=dev.device).to(dtype)
    x[torch.rand(case.input_shape, device=dev.device) < 0.05] = float("nan")
    x = x.contiguous(memory_format=CL)
    kw = dict(case.max_kwargs(), return_indices=True)
    ref, ref_idx = F.max_pool2d(x, **kw)
    g = int_tensor(*ref.shape, dtype=dtype, device=dev.device).contiguous(memory_format=CL)
    (out, idx), gx = grads_of(lambda t: cnnkern.max_pool2d(t, **kw), x, g)
    _, ref_gx = grads_of(lambda t: F.max_pool2d(t, **kw), x, g)
    assert_exact(out, ref, equal_nan=True)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)  # integer gradients: exact sums in every dtype
    _same_strides(out, ref, "output")
    _same_strides(idx, ref_idx, "indices")
    _same_strides(gx, ref_gx, "grad_input")


def _check_channels_last_vs_float64(ours_fn, torch_fn, x, grad_shape):
    g = torch.randn(grad_shape, device=x.device).to(x.dtype).contiguous(memory_format=CL)
    out, gx = grads_of(ours_fn, x, g)
    ref, ref_gx = grads_of(torch_fn, x, g)
    ref64, ref64_gx = grads_of(torch_fn, x.double(), g.double())
    _close_or_lowp(out, ref64, ref)
    _close_or_lowp(gx, ref64_gx, ref_gx)
    _same_strides(out, ref, "output")
    _same_strides(gx, ref_gx, "grad_input")


@pytest.mark.parametrize("dev, cip, div, case, dtype",
                         every_dtype(AVG_SETTINGS[:3], pool_params(AVG_POOL_CASES)),
                         indirect=["dev"])
def test_avg_pool_channels_last_every_dtype(case, dtype, cip, div, dev):
    x = torch.randn(case.input_shape, device=dev.device).to(dtype).contiguous(memory_format=CL)
    kw = dict(case.avg_kwargs(), count_include_pad=cip, divisor_override=div)
    _check_channels_last_vs_float64(lambda t: cnnkern.avg_pool2d(t, **kw),
                                    lambda t: F.avg_pool2d(t, **kw), x,
                                    F.avg_pool2d(x, **kw).shape)


@pytest.mark.parametrize("dev, output_size, dtype", every_dtype(
    [pytest.param(o, id=str(o)) for o in (1, 3, (2, 5), (None, 4), (9, 11))]), indirect=["dev"])
def test_adaptive_avg_pool_channels_last_every_dtype(output_size, dtype, dev):
    x = torch.randn(2, 5, 7, 9, device=dev.device).to(dtype).contiguous(memory_format=CL)
    _check_channels_last_vs_float64(lambda t: cnnkern.adaptive_avg_pool2d(t, output_size),
                                    lambda t: F.adaptive_avg_pool2d(t, output_size), x,
                                    F.adaptive_avg_pool2d(x, output_size).shape)


@pytest.mark.parametrize("grad_layout", [torch.contiguous_format, CL],
                         ids=["grad_nchw", "grad_nhwc"])
@pytest.mark.parametrize("in_layout", [torch.contiguous_format, CL], ids=["in_nchw", "in_nhwc"])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_pool_grad_input_follows_the_input_layout(in_layout, grad_layout, dev):
    # torch's backward gives grad_input the input's layout whatever grad_output's.
    x = torch.randn(2, 6, 9, 8, device=dev.device).contiguous(memory_format=in_layout)
    pairs = [(lambda t: cnnkern.max_pool2d(t, 3, 2, 1), lambda t: F.max_pool2d(t, 3, 2, 1)),
             (lambda t: cnnkern.avg_pool2d(t, 2), lambda t: F.avg_pool2d(t, 2)),
             (lambda t: cnnkern.adaptive_avg_pool2d(t, 3), lambda t: F.adaptive_avg_pool2d(t, 3))]
    for ours, theirs in pairs:
        g = int_tensor(*theirs(x).shape, device=dev.device).contiguous(memory_format=grad_layout)
        _, gx = grads_of(ours, x, g)
        _, ref_gx = grads_of(theirs, x, g)
        assert_close(gx, ref_gx.double())
        _same_strides(gx, ref_gx, "grad_input")


@pytest.mark.parametrize("dev, layout, dtype", per_device(
    cpu=cross(LAYOUTS2, DTYPES[:1]), gpu=cross(LAYOUTS2, [DTYPES[0], LOWP_DTYPES[0]])),
    indirect=["dev"])
def test_pool_bitwise_deterministic(layout, dtype, dev):
    # Gathers with one owner per element, no atomics: two runs agree bit for bit. (In the
    # emulator, a smaller tensor: every element is a fiber there.)
    shape = (2, 8, 17, 13) if dev.emulated else (4, 48, 37, 41)
    x = torch.randn(shape, device=dev.device).to(dtype).contiguous(memory_format=layout)

    def run():
        res = []
        for fn in (lambda t: cnnkern.max_pool2d(t, 3, 1, 1),
                   lambda t: cnnkern.avg_pool2d(t, 3, 2, 1, ceil_mode=True),
                   lambda t: cnnkern.adaptive_avg_pool2d(t, (5, 7))):
            xl = x.detach().clone().requires_grad_()
            out = fn(xl)
            out.backward(torch.full_like(out, 0.3))
            res += [out, xl.grad]
        return res

    first = run()
    dev.reorder()
    for a, b in zip(first, run()):
        assert torch.equal(a, b)
