"""The CPU direct algorithm's depthwise path (csrc/cpu/direct/depthwise*.{h,cpp}).

When groups == in_channels (> 1) every pass of `direct` runs per (image, channel) plane: the
plane zero-padded and split into stride phases in a thread's scratch, vectors along the
output row, 3x3 and 5x5 tap counts specialised at compile time, a runtime tap loop for
other kernels, grad-input as the stride-1 correlation of grad_output with zeros inserted,
grad-weight from per-image double partials added in image order. These tests put kernel
size, stride, padding, dilation, plane sizes (rows not a multiple of the vector width,
planes smaller than the kernel's reach) and batch across those paths, for every ISA variant
this CPU runs, against torch in float64.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F

from conftest import (assert_close, assert_exact, assert_non_finite_where_reference_has_it,
                      int_tensor, plant_non_finite)

OPS = torch.ops.cnnkern


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def ours(x, w, b, g, stride, padding, dilation):
    st, pd, dl, gr = _pair(stride), _pair(padding), _pair(dilation), x.shape[1]
    out = OPS.conv2d(x, w, b, st, pd, dl, gr, "direct")
    gi = OPS.conv2d_backward_input(g, w, list(x.shape), st, pd, dl, gr, "direct")
    gw = OPS.conv2d_backward_weight(g, x, list(w.shape), st, pd, dl, gr, "direct")
    return out, gi, gw


def reference(x, w, b, g, stride, padding, dilation, dtype=torch.float64):
    st, pd, dl, gr = _pair(stride), _pair(padding), _pair(dilation), x.shape[1]
    x, w, g = x.to(dtype), w.to(dtype), g.to(dtype)
    out = F.conv2d(x, w, None if b is None else b.to(dtype), st, pd, dl, gr)
    gi, gw, _ = torch.ops.aten.convolution_backward(g, x, w, None, st, pd, dl, False, [0, 0], gr,
                                                    [True, True, False])
    return out, gi, gw


def out_shape(x, w, stride, padding, dilation):
    st, pd, dl = _pair(stride), _pair(padding), _pair(dilation)
    return F.conv2d(torch.empty(x.shape, device="meta"), torch.empty(w.shape, device="meta"),
                    None, st, pd, dl, x.shape[1]).shape


# Kernel 3 and 5 (the specialised tap counts), strides 1 and 2, paddings 0..2, dilations 1
# and 2, on an 11 x 13 plane (13: not a multiple of any vector width).
GRID = [pytest.param(k, s, p, d, id=f"k{k}_s{s}_p{p}_d{d}")
        for k, s, p, d in itertools.product((3, 5), (1, 2), (0, 1, 2), (1, 2))]


@pytest.mark.parametrize("k,stride,padding,dilation", GRID)
def test_grid_float64_against_torch(k, stride, padding, dilation, cpu_isa):
    x = torch.randn(2, 3, 11, 13, dtype=torch.float64)
    w = torch.randn(3, 1, k, k, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)
    g = torch.randn(out_shape(x, w, stride, padding, dilation), dtype=torch.float64)
    got = ours(x, w, b, g, stride, padding, dilation)
    ref = reference(x, w, b, g, stride, padding, dilation)
    for name, a, r in zip(("output", "grad_input", "grad_weight"), got, ref):
        assert_close(a, r, msg=name)


# id, N, C, H, W, kernel, stride, padding, dilation, channel multiplier
SHAPES = [
    ("batch0", 0, 4, 9, 9, 3, 1, 1, 1, 1),
    ("batch1_w1", 1, 2, 7, 1, 3, 1, 1, 1, 1),
    ("batch3_h1", 3, 5, 1, 19, 3, 1, 1, 1, 1),
    ("plane_2x3_smaller_than_5x5_reach", 2, 3, 2, 3, 5, 1, 2, 1, 1),
    ("plane_2x2_3x3_pad2_stride2", 3, 2, 2, 2, 3, 2, 2, 1, 1),
    ("wide_w37_stride2", 1, 3, 5, 37, 3, 2, 1, 1, 1),
    ("long_w70", 2, 2, 3, 70, 3, 1, 1, 1, 1),
    ("kernel_1x1", 2, 4, 6, 9, 1, 1, 0, 1, 1),
    ("kernel_7x7_generic", 2, 3, 12, 15, 7, 1, 3, 1, 1),
    ("kernel_2x4_generic", 1, 3, 9, 10, (2, 4), 1, (1, 2), 1, 1),
    ("stride_2x3_dil_1x2", 2, 3, 14, 21, 3, (2, 3), (1, 2), (1, 2), 1),
    ("stride3_pad_over_reach", 1, 2, 10, 11, 3, 3, 2, 1, 1),
    ("multiplier2", 2, 3, 9, 11, 3, 1, 1, 1, 2),
    ("multiplier3_stride2", 1, 4, 10, 13, 5, 2, 2, 1, 3),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", SHAPES, ids=[s[0] for s in SHAPES])
def test_edge_shapes_exact_on_integers(case, dtype, cpu_isa):
    # Integer data: every partial sum is an integer well below 2**24, so each pass must match
    # the float64 reference exactly in float32 too.
    _, n, c, h, w_, k, stride, padding, dilation, mult = case
    kh, kw = _pair(k)
    x = int_tensor(n, c, h, w_, dtype=dtype)
    w = int_tensor(c * mult, 1, kh, kw, dtype=dtype)
    b = int_tensor(c * mult, dtype=dtype)
    g = int_tensor(*out_shape(x, w, stride, padding, dilation), dtype=dtype)
    got = ours(x, w, b, g, stride, padding, dilation)
    ref = reference(x, w, b, g, stride, padding, dilation)
    for a, r in zip(got, ref):
        assert a.dtype == dtype
        assert_exact(a, r.to(dtype))


@pytest.mark.parametrize("stride", [1, 2])
def test_float32_error_like_torch_on_a_mobilenet_plane(stride, cpu_isa):
    # 112 x 112 planes, batch 3: long sums for grad-weight. Error against float64 no worse than
    # about torch's own float32 error.
    x = torch.randn(3, 8, 112, 112)
    w = torch.randn(8, 1, 3, 3)
    g = torch.randn(out_shape(x, w, stride, 1, 1))
    got = ours(x, w, None, g, stride, 1, 1)
    ref64 = reference(x, w, None, g, stride, 1, 1)
    theirs = reference(x, w, None, g, stride, 1, 1, dtype=torch.float32)
    for name, a, r, t in zip(("output", "grad_input", "grad_weight"), got, ref64, theirs):
        assert a.dtype == torch.float32
        err = (a.double() - r).abs().max().item()
        torch_err = (t.double() - r).abs().max().item()
        assert err <= 2 * torch_err + 1e-6 * r.abs().max().item(), (name, err, torch_err)


def test_bias_and_relu_epilogue(cpu_isa):
    x = torch.randn(2, 6, 9, 14, dtype=torch.float64)
    w = torch.randn(6, 1, 3, 3, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    got = OPS.conv2d_relu(x, w, b, [1, 1], [1, 1], [1, 1], 6, "direct")
    assert_close(got, F.relu(F.conv2d(x, w, b, 1, 1, 1, 6)))
    assert (got == 0).any() and (got > 0).any()


@pytest.mark.parametrize("where", ["input", "grad_output"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_non_finite_values_reach_only_the_outputs_they_feed(where, value, cpu_isa):
    # Vector lanes past a row's end read the next row (or stale scratch); forward and
    # grad-input drop them and grad-weight masks them, so an inf/NaN shows up exactly where
    # the reference has one. Column 12 is the last of a 13-wide row.
    x = int_tensor(2, 3, 9, 13)
    w = int_tensor(3, 1, 3, 3, lo=1, hi=4)  # no zero weights: 0 * inf is the math
    g = int_tensor(2, 3, 9, 13, lo=1, hi=4)
    plant_non_finite(where, value, x, g)
    assert_non_finite_where_reference_has_it(ours(x, w, None, g, 1, 1, 1),
                                             reference(x, w, None, g, 1, 1, 1))


@pytest.mark.parametrize("mult,stride", [(1, 1), (1, 2), (2, 2)])
def test_bitwise_equal_for_1_and_2_threads(mult, stride, threads):
    x = torch.randn(3, 10, 23, 29)
    w = torch.randn(10 * mult, 1, 3, 3)
    b = torch.randn(10 * mult)
    g = torch.randn(out_shape(x, w, stride, 1, 1))
    threads(1)
    one = ours(x, w, b, g, stride, 1, 1)
    threads(2)
    two = ours(x, w, b, g, stride, 1, 1)
    for name, a, c in zip(("output", "grad_input", "grad_weight"), one, two):
        assert torch.equal(a, c), name


def test_explain_reports_the_depthwise_scratch():
    import cnnkern

    x, w = torch.randn(1, 4, 10, 10), torch.randn(4, 1, 3, 3)
    text = str(cnnkern.explain(x, w, padding=1, groups=4))
    assert "stride phases (per thread" in text
