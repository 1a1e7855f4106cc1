"""The CPU direct convolution's register-blocked kernels, at the edges of their tiling.

The kernels (csrc/cpu/conv2d_direct*.{h,cpp}) run every pass as a "flat correlation" on
zero-padded, stride-phase-split planes: tiles of 4 output channels (grad-weight: 3 filters
x 3 taps, 6 x 4 in the AVX-512 variants) x a few vectors of consecutive positions, with positions past the output width computed and
dropped (forward, grad-input) or masked (grad-weight). These shapes put the output width,
height, channel counts, strides, dilation and tap counts on either side of those tile
sizes, for every instruction-set variant this CPU runs, against the float64 reference
(exact: integer-valued data keeps every partial sum an integer below 2**24).
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import (assert_close, assert_exact, assert_non_finite_where_reference_has_it,
                      int_tensor, plant_non_finite)
from shapes import ConvCase

# fmt: off
EDGE_CASES = [
    #        id                          N   C   H    W   K  R  S  stride   padding  dilation groups
    ConvCase("h1_w1_3x3_pad1",           2,  3,  1,   1,  5, 3, 3, 1,       1,       1,       1),
    ConvCase("w1_h7",                    1,  2,  7,   1,  6, 3, 3, 1,       1,       1,       1),
    ConvCase("h1_w23_row",               1,  2,  1,  23,  7, 1, 3, 1,       (0, 1),  1,       1),
    ConvCase("w9_k9",                    2,  3,  9,   9,  9, 3, 3, 1,       1,       1,       1),
    ConvCase("w17_k13",                  1,  4,  5,  17, 13, 3, 3, 1,       1,       1,       1),
    ConvCase("w33_k1",                   1,  5,  4,  33,  1, 3, 3, 1,       1,       1,       1),
    ConvCase("c1_k2_w40",                2,  1,  6,  40,  2, 3, 3, 1,       1,       1,       1),
    ConvCase("k3_w25",                   1,  6,  4,  25,  3, 3, 3, 1,       0,       1,       1),
    ConvCase("k8_c9_w12",                1,  9,  8,  12,  8, 3, 3, 1,       1,       1,       1),
    ConvCase("stride2_odd_w19",          2,  3, 11,  19,  6, 3, 3, 2,       1,       1,       1),
    ConvCase("stride2_w2",               1,  2,  3,   2,  3, 3, 3, 2,       1,       1,       1),
    ConvCase("stride2_even_w30_k5",      1,  4, 10,  30,  5, 3, 3, 2,       1,       1,       1),
    ConvCase("stride3_dil2_w25",         1,  2, 13,  25,  5, 3, 3, 3,       2,       2,       1),
    ConvCase("stride_2x3_dil_1x2",       2,  3, 14,  21,  7, 3, 3, (2, 3),  (1, 2),  (1, 2),  1),
    ConvCase("stride2_no_taps_in_phase", 1,  2, 11,  10,  3, 3, 3, 2,       1,       2,       1),
    ConvCase("stride4_kernel2",          1,  2, 13,  17,  3, 2, 2, 4,       1,       1,       1),
    ConvCase("groups3_k12",              2,  6,  7,  13, 12, 3, 3, 1,       1,       1,       3),
    ConvCase("depthwise_w31",            2,  6,  9,  31,  6, 3, 3, 1,       1,       1,       6),
    ConvCase("depthwise_stride2_w27",    1,  5, 12,  27, 10, 3, 3, 2,       1,       1,       5),
    ConvCase("taps_5x7",                 1,  3, 12,  20,  5, 5, 7, 1,       (2, 3),  1,       1),
    ConvCase("1x1_w50",                  1,  7,  3,  50, 10, 1, 1, 1,       0,       1,       1),
    ConvCase("1x1_pad2_cropped_grad",    1,  2,  5,   6,  3, 1, 1, 1,       2,       1,       1),
    ConvCase("pad_gt_half_kernel",       1,  2,  6,   7,  5, 3, 3, 1,       3,       1,       1),
    ConvCase("wide_k20_w64",             1,  6,  6,  64, 20, 3, 3, 1,       1,       1,       1),
    # grad-weight's AVX-512 tile (6 filters x 4 taps): a conv1-like 7x7 stride 2 (49 taps =
    # 12 x 4 + 1; 11 filters = 6 + 5), and 2x3 taps (4 + 2) with 4 filters.
    ConvCase("conv1_like_7x7_s2_k11",    2,  3, 23,  21, 11, 7, 7, 2,       3,       1,       1),
    ConvCase("taps_2x3_k4",              1,  3,  7,   9,  4, 2, 3, 1,       0,       1,       1),
]
# fmt: on

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


def _pair(v):
    return list(v) if isinstance(v, tuple) else [v, v]


def _args(case):
    return _pair(case.stride), _pair(case.padding), _pair(case.dilation), case.groups


def direct_passes(x, w, b, g, case):
    """(output, grad_input, grad_weight) from the registered direct ops."""
    st, pd, dl, gr = _args(case)
    ops = torch.ops.cnnkern
    out = ops.conv2d(x, w, b, st, pd, dl, gr, "direct")
    gi = ops.conv2d_backward_input(g, w, list(x.shape), st, pd, dl, gr, "direct")
    gw = ops.conv2d_backward_weight(g, x, list(w.shape), st, pd, dl, gr, "direct")
    return out, gi, gw


def reference_passes(x, w, b, g, case):
    st, pd, dl, gr = _args(case)
    x, w, g = x.double(), w.double(), g.double()
    out = F.conv2d(x, w, None if b is None else b.double(), st, pd, dl, gr)
    gi, gw, _ = torch.ops.aten.convolution_backward(g, x, w, None, st, pd, dl, False, [0, 0], gr,
                                                    [True, True, False])
    return out, gi, gw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in EDGE_CASES])
def test_edges_exact_integer_inputs(case, dtype, cpu_isa):
    x = int_tensor(*case.input_shape, dtype=dtype)
    w = int_tensor(*case.weight_shape, dtype=dtype)
    b = int_tensor(case.K, dtype=dtype)
    g = int_tensor(*case.output_shape, dtype=dtype)
    got = direct_passes(x, w, b, g, case)
    ref = reference_passes(x, w, b, g, case)
    for name, a, r in zip(("output", "grad_input", "grad_weight"), got, ref):
        assert a.dtype == dtype, name
        assert_exact(a, r.to(dtype))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in EDGE_CASES[::3]])
def test_edges_random_normal_float64(case, cpu_isa):
    x = torch.randn(case.input_shape, dtype=torch.float64)
    w = torch.randn(case.weight_shape, dtype=torch.float64)
    b = torch.randn(case.K, dtype=torch.float64)
    g = torch.randn(case.output_shape, dtype=torch.float64)
    for a, r in zip(direct_passes(x, w, b, g, case), reference_passes(x, w, b, g, case)):
        assert_close(a, r)


def test_grad_weight_long_reduction_stays_exact_and_accurate(cpu_isa):
    # More than 64K output positions per (k, c) pair: the grad-weight lane sums are folded
    # into double part-way (the kernel's accuracy guard). Integer data: exact; random data:
    # no worse than PyTorch's own float32 error against float64.
    case = ConvCase("long", 3, 2, 130, 200, 3, 3, 3, 1, 1, 1, 1)
    x, w = int_tensor(*case.input_shape), int_tensor(*case.weight_shape)
    g = int_tensor(*case.output_shape)
    _, _, gw = direct_passes(x, w, None, g, case)
    assert_exact(gw, reference_passes(x, w, None, g, case)[2].float())
    x, g = torch.randn(case.input_shape), torch.randn(case.output_shape)
    _, _, gw = direct_passes(x, w, None, g, case)
    ref64 = reference_passes(x, w, None, g, case)[2]
    torch_gw = torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False,
                                                   [0, 0], 1, [False, True, False])[1]
    ours_err = (gw.double() - ref64).abs().max().item()
    torch_err = (torch_gw.double() - ref64).abs().max().item()
    assert ours_err <= 2 * torch_err + 1e-6 * ref64.abs().max().item(), (ours_err, torch_err)


@pytest.mark.parametrize("where", ["input", "grad_output"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_non_finite_values_reach_only_the_outputs_they_feed(where, value, cpu_isa):
    # Positions past the output width read real input through the flat layout; the forward
    # and grad-input drop them and grad-weight masks them, so an inf/NaN must show up exactly
    # where the float64 reference has one (an inf in column 0 is read by dropped positions
    # of the row above through taps that never read it for real outputs).
    case = ConvCase("nonfinite", 2, 3, 9, 13, 5, 3, 3, 1, 1, 1, 1)
    x = int_tensor(*case.input_shape)
    w = int_tensor(*case.weight_shape, lo=1, hi=4)  # no zero weights: 0 * inf is the math
    g = int_tensor(*case.output_shape, lo=1, hi=4)
    plant_non_finite(where, value, x, g)
    assert_non_finite_where_reference_has_it(direct_passes(x, w, None, g, case),
                                             reference_passes(x, w, None, g, case))


CASES_FOR_THREADS = [
    ConvCase("vgg_like", 2, 16, 20, 22, 24, 3, 3, 1, 1, 1, 1),
    ConvCase("stride2", 2, 8, 23, 19, 12, 3, 3, 2, 1, 1, 1),
    ConvCase("depthwise", 2, 12, 15, 17, 12, 3, 3, 1, 1, 1, 12),
    ConvCase("long_grad_weight", 2, 3, 140, 250, 5, 3, 3, 1, 1, 1, 1),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES_FOR_THREADS])
def test_bitwise_equal_for_1_and_2_threads(case, threads):
    # Random data (rounding matters): each output is owned by one job and summed in a fixed
    # order, so the thread count must not change a single bit.
    x = torch.randn(case.input_shape)
    w = torch.randn(case.weight_shape)
    b = torch.randn(case.K)
    g = torch.randn(case.output_shape)
    threads(1)
    one = direct_passes(x, w, b, g, case)
    threads(2)
    two = direct_passes(x, w, b, g, case)
    for name, a, c in zip(("output", "grad_input", "grad_weight"), one, two):
        assert torch.equal(a, c), name


def test_unknown_isa_override_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CNNKERN_CPU_ISA", "sse9")
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(RuntimeError, match="CNNKERN_CPU_ISA: kernel set 'sse9' is not available.*generic"):
        cnnkern.conv2d(x, w, algo="direct")
