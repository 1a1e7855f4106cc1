"""The CPU pooling kernels' vector paths, at their edges, against torch.

csrc/cpu/pool2d_core_impl.h runs the columns of a row whose windows lie inside the input as
vector lanes when the stride along W is 1 or 2 (the rest, and every other shape, with scalar
code), redoes a row's last partial chunk as a full overlapping one, and sums global average
pools as one run per plane. These shapes put the number of such columns below, at and
around the vector widths (2 to 8 lanes), with NaN, -inf and ties inside vector windows, for
every instruction-set variant this CPU runs. Max pooling must match torch bit for bit
(values and indices); average pooling exactly where the arithmetic is exact.
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import assert_close, assert_exact, int_tensor
from shapes import PoolCase

# fmt: off
VECTOR_CASES = [
    #        id                          N  C   H   W  kernel   stride  padding  dil     ceil
    PoolCase("k2s2_w2",                  1, 2,  4,  2, 2,       2,      0,       1,      False),
    PoolCase("k2s2_w9",                  2, 1,  5,  9, 2,       2,      0,       1,      False),
    PoolCase("k2s2_w16",                 1, 3,  6, 16, 2,       2,      0,       1,      False),
    PoolCase("k2s2_w17_ceil",            1, 2,  7, 17, 2,       2,      0,       1,      True),
    PoolCase("k2s2_w18",                 1, 2,  4, 18, 2,       2,      0,       1,      False),
    PoolCase("k2s2_w35",                 2, 2,  6, 35, 2,       2,      0,       1,      False),
    PoolCase("k2s2_w64",                 1, 1,  4, 64, 2,       2,      0,       1,      False),
    PoolCase("k3s2p1_w1",                1, 2,  3,  1, 3,       2,      1,       1,      False),
    PoolCase("k3s2p1_w5",                1, 2,  5,  5, 3,       2,      1,       1,      False),
    PoolCase("k3s2p1_w17",               2, 2,  9, 17, 3,       2,      1,       1,      False),
    PoolCase("k3s2p1_w18_ceil",          1, 2,  8, 18, 3,       2,      1,       1,      True),
    PoolCase("k3s2p1_w35",               1, 3,  7, 35, 3,       2,      1,       1,      False),
    PoolCase("k3s2p1_w49",               1, 1, 11, 49, 3,       2,      1,       1,      False),
    PoolCase("k3s1p1_w8",                1, 2,  5,  8, 3,       1,      1,       1,      False),
    PoolCase("k3s1p1_w17",               1, 2,  4, 17, 3,       1,      1,       1,      False),
    PoolCase("k2s1_w20",                 1, 2,  5, 20, 2,       1,      0,       1,      False),
    PoolCase("k3s2_w34_ceil_overhang",   1, 2,  9, 34, 3,       2,      0,       1,      True),
    PoolCase("k_1x3_s_1x2_h1_w40",       2, 2,  1, 40, (1, 3),  (1, 2), 0,       1,      False),
    PoolCase("k_2x3_s_3x2_p1_w29_ceil",  1, 2, 10, 29, (2, 3),  (3, 2), (1, 1),  1,      True),
    PoolCase("k_3x2_s_2x1_p_1x0_w19",    1, 2,  9, 19, (3, 2),  (2, 1), (1, 0),  1,      False),
]
MAX_ONLY_CASES = [
    PoolCase("dil2_k3s2p1_w37",          1, 2,  9, 37, 3,       2,      1,       2,      False),
    PoolCase("dil_1x3_k2s1_w26",         1, 2,  6, 26, 2,       1,      0,       (1, 3), False),
    PoolCase("dil3_k2s2p1_w33_ceil",     1, 2,  7, 33, 2,       2,      1,       3,      True),
]
# fmt: on

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
ALL_MAX = [pytest.param(c, id=c.id) for c in VECTOR_CASES + MAX_ONLY_CASES]
ALL_AVG = [pytest.param(c, id=c.id) for c in VECTOR_CASES]


def max_grads(fn, x, g):
    xl = x.detach().clone().requires_grad_(True)
    out, idx = fn(xl)
    out.backward(g)
    return out, idx, xl.grad


def check_max_like_torch(x, case):
    kw = case.max_kwargs()
    ref_out, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    g = int_tensor(*ref_out.shape, dtype=x.dtype)
    out, idx, gx = max_grads(lambda t: cnnkern.max_pool2d(t, **kw, return_indices=True), x, g)
    _, _, ref_gx = max_grads(lambda t: F.max_pool2d(t, **kw, return_indices=True), x, g)
    assert_exact(out, ref_out, equal_nan=True)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ALL_MAX)
def test_max_distinct_values(case, dtype, cpu_isa):
    check_max_like_torch(torch.randn(case.input_shape, dtype=dtype), case)


@pytest.mark.parametrize("case", ALL_MAX)
def test_max_ties_pick_the_first(case, cpu_isa):
    check_max_like_torch(int_tensor(*case.input_shape, lo=0, hi=2), case)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ALL_MAX)
def test_max_nan_and_minus_inf_inside_vector_windows(case, dtype, cpu_isa):
    x = torch.randn(case.input_shape, dtype=dtype)
    r = torch.rand(case.input_shape)
    x[r < 0.12] = float("nan")
    x[(r >= 0.12) & (r < 0.3)] = float("-inf")
    check_max_like_torch(x, case)


def test_max_all_nan_and_all_minus_inf_rows(cpu_isa):
    # Whole vector chunks of NaN (the last NaN in scan order wins) and of -inf (the first tap
    # keeps the index).
    x = torch.randn(1, 2, 6, 40)
    x[0, 0, 2:4] = float("nan")
    x[0, 1, :, 5:30] = float("-inf")
    check_max_like_torch(x, PoolCase("rows", 1, 2, 6, 40, 3, 2, 1))
    check_max_like_torch(x, PoolCase("rows", 1, 2, 6, 40, 2, 2, 0))


AVG_SETTINGS = [
    pytest.param(True, None, id="include_pad"),
    pytest.param(False, None, id="exclude_pad"),
    pytest.param(True, 5, id="divisor5"),
]


def avg_grads(fn, x, g):
    xl = x.detach().clone().requires_grad_(True)
    out = fn(xl)
    out.backward(g)
    return out, xl.grad


@pytest.mark.parametrize("count_include_pad, divisor_override", AVG_SETTINGS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ALL_AVG)
def test_avg_forward_backward(case, dtype, count_include_pad, divisor_override, cpu_isa):
    kw = dict(case.avg_kwargs(), count_include_pad=count_include_pad,
              divisor_override=divisor_override)
    x = torch.randn(case.input_shape, dtype=dtype)
    ref = F.avg_pool2d(x.double(), **kw)
    g = torch.randn(ref.shape, dtype=dtype)
    out, gx = avg_grads(lambda t: cnnkern.avg_pool2d(t, **kw), x, g)
    _, ref_gx = avg_grads(lambda t: F.avg_pool2d(t, **kw), x.double(), g.double())
    assert_close(out, ref)
    assert_close(gx, ref_gx)


@pytest.mark.parametrize("case", [c for c in ALL_AVG if "k2s2" in c.id])
def test_avg_2x2_exact_for_integer_inputs(case, cpu_isa):
    # Sums of four small integers and a division by 4 are exact in float32.
    x = int_tensor(*case.input_shape)
    kw = case.avg_kwargs()
    ref = F.avg_pool2d(x.double(), **kw)
    g = int_tensor(*ref.shape)
    out, gx = avg_grads(lambda t: cnnkern.avg_pool2d(t, **kw), x, g)
    _, ref_gx = avg_grads(lambda t: F.avg_pool2d(t, **kw), x.double(), g.double())
    assert_exact(out, ref.float())
    assert_exact(gx, ref_gx.float())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 2, 1, 1), (1, 4, 5, 40), (2, 1, 3, 5)],
                         ids=str)
def test_global_average_pool(shape, dtype, cpu_isa):
    x = torch.randn(shape, dtype=dtype)
    out = cnnkern.adaptive_avg_pool2d(x, 1)
    assert_close(out, F.adaptive_avg_pool2d(x.double(), 1))
    xi = int_tensor(*shape)  # integer sums and a power-of-two count: exact
    if shape[2] * shape[3] in (1, 2, 4, 8, 16, 32, 64):
        assert_exact(cnnkern.adaptive_avg_pool2d(xi, 1), F.adaptive_avg_pool2d(xi.double(), 1).float())


def test_max_backward_rejects_an_index_outside_the_plane():
    g = torch.ones(1, 2, 2, 2)
    idx = torch.zeros(1, 2, 2, 2, dtype=torch.int64)
    idx[0, 1, 1, 0] = 16  # the plane has 16 elements
    with pytest.raises(RuntimeError, match="index 16 is outside the input plane of 16"):
        torch.ops.cnnkern.max_pool2d_backward(g, idx, [1, 2, 4, 4], [2, 2], [2, 2], [0, 0],
                                              [1, 1], False)
    idx[0, 1, 1, 0] = -1
    with pytest.raises(RuntimeError, match="index -1 is outside"):
        torch.ops.cnnkern.max_pool2d_backward(g, idx, [1, 2, 4, 4], [2, 2], [2, 2], [0, 0],
                                              [1, 1], False)


def _pool_results_1_and_2_threads(x, max_kwargs, avg_kwargs, threads):
    """{name: (result at 1 thread, result at 2 threads)} of max (+ indices), avg and adaptive
    pooling forward and backward of x."""
    def run():
        xm = x.detach().clone().requires_grad_(True)
        out, idx = cnnkern.max_pool2d(xm, **max_kwargs, return_indices=True)
        out.backward(torch.ones_like(out) / 3)
        xa = x.detach().clone().requires_grad_(True)
        avg = cnnkern.avg_pool2d(xa, **avg_kwargs, count_include_pad=False)
        avg.backward(torch.full_like(avg, 0.7))
        xd = x.detach().clone().requires_grad_(True)
        ada = cnnkern.adaptive_avg_pool2d(xd, (5, 7))
        ada.backward(torch.full_like(ada, 1.3))
        return out, idx, xm.grad, avg, xa.grad, ada, xd.grad

    threads(1)
    one = run()
    threads(2)
    two = run()
    names = ("max", "idx", "max grad", "avg", "avg grad", "adaptive", "adaptive grad")
    return {name: (a, b) for name, a, b in zip(names, one, two)}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in (
    PoolCase("k2s2", 4, 16, 30, 46, 2, 2, 0),
    PoolCase("k3s2p1", 4, 16, 31, 45, 3, 2, 1),
    PoolCase("k3s1p1_ceil", 3, 10, 17, 23, 3, 1, 1, 1, True),
)])
def test_pool_bitwise_equal_for_1_and_2_threads(case, threads):
    x = torch.randn(case.input_shape)
    x[torch.rand(case.input_shape) < 0.02] = float("nan")
    results = _pool_results_1_and_2_threads(x, case.max_kwargs(), case.avg_kwargs(), threads)
    for name, (a, b) in results.items():
        assert torch.equal(a.nan_to_num(1234.5), b.nan_to_num(1234.5)), name


# ---------------------------------------------------------------------------------------------
# channels_last kernels (cpu/pool2d_nhwc_impl.h): vectorised along C
# ---------------------------------------------------------------------------------------------

CL = torch.channels_last
# Channel counts around the vector widths (2 to 8 lanes) and the max kernel's 128-channel block.
CL_CHANNELS = [1, 3, 8, 9, 17, 129]
CL_CASES = [c for c in VECTOR_CASES if c.id in ("k2s2_w9", "k3s2p1_w17", "k3s1p1_w8",
                                                 "k3s2_w34_ceil_overhang",
                                                 "k_2x3_s_3x2_p1_w29_ceil")]
CL_MAX = [pytest.param(c, id=c.id) for c in CL_CASES + MAX_ONLY_CASES[:1]]


def _cl_input(case, C, dtype):
    return torch.randn(case.N, C, case.H, case.W, dtype=dtype).contiguous(memory_format=CL)


@pytest.mark.parametrize("C", CL_CHANNELS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CL_MAX)
def test_channels_last_max_nan_ties_like_torch(case, dtype, C, cpu_isa):
    x = _cl_input(case, C, dtype).round()  # ties
    r = torch.rand(x.shape)
    x[r < 0.1] = float("nan")
    x[(r >= 0.1) & (r < 0.2)] = float("-inf")
    kw = case.max_kwargs()
    ref_out, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    g = int_tensor(*ref_out.shape, dtype=dtype).contiguous(memory_format=CL)
    out, idx, gx = max_grads(lambda t: cnnkern.max_pool2d(t, **kw, return_indices=True), x, g)
    _, _, ref_gx = max_grads(lambda t: F.max_pool2d(t, **kw, return_indices=True), x, g)
    assert_exact(out, ref_out, equal_nan=True)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)
    assert out.stride() == ref_out.stride() and idx.stride() == ref_idx.stride()
    assert gx.stride() == ref_gx.stride()


@pytest.mark.parametrize("C", CL_CHANNELS)
@pytest.mark.parametrize("count_include_pad, divisor_override", AVG_SETTINGS)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CL_CASES])
def test_channels_last_avg_and_adaptive_like_torch(case, count_include_pad, divisor_override,
                                                   C, cpu_isa):
    x = _cl_input(case, C, torch.float32)
    kw = dict(case.avg_kwargs(), count_include_pad=count_include_pad,
              divisor_override=divisor_override)
    ref = F.avg_pool2d(x.double(), **kw)
    g = torch.randn(ref.shape).contiguous(memory_format=CL)
    out, gx = avg_grads(lambda t: cnnkern.avg_pool2d(t, **kw), x, g)
    _, ref_gx = avg_grads(lambda t: F.avg_pool2d(t, **kw), x.double(), g.double())
    assert_close(out, ref)
    assert_close(gx, ref_gx)
    assert out.is_contiguous(memory_format=CL) and gx.is_contiguous(memory_format=CL)
    size = (max(1, case.H // 2), 3)
    ref = F.adaptive_avg_pool2d(x.double(), size)
    g = torch.randn(ref.shape).contiguous(memory_format=CL)
    out, gx = avg_grads(lambda t: cnnkern.adaptive_avg_pool2d(t, size), x, g)
    _, ref_gx = avg_grads(lambda t: F.adaptive_avg_pool2d(t, size), x.double(), g.double())
    assert_close(out, ref)
    assert_close(gx, ref_gx)


def test_channels_last_bitwise_equal_for_1_and_2_threads(threads):
    # Large enough that each pass splits its rows over both threads (jobs of >= 32K elements).
    x = torch.randn(4, 32, 45, 47)
    x[torch.rand(x.shape) < 0.02] = float("nan")
    x = x.contiguous(memory_format=CL)

    results = _pool_results_1_and_2_threads(
        x, dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=3, stride=1, padding=1, ceil_mode=True), threads)
    for name, (a, b) in results.items():
        assert a.is_contiguous(memory_format=CL), name
        assert torch.equal(a.nan_to_num(1234.5), b.nan_to_num(1234.5)), name
