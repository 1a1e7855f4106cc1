"""Strided im2col through the image split into its column stride phases
(cpu/im2col/stride_phases.h): the forward packs its GEMM panels from the split and grad-weight
builds and scatters its column tiles through it, by default when stride_w > 1 and
S >= 3 * stride_w (the 7x7 stride-2 stems; CNNKERN_IM2COL_PACK=runs forces the strided reads,
=phases the split on any shape). The split changes where values are read, never which: the bits
must equal the strided reads', and both must match torch in float64 (forward and both grads;
the forward's methods are also compared in test_im2col_column_pack.py)."""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import assert_close, int_tensor

# (input shape, weight shape, conv2d kwargs): the ResNet stem, 3x3 stride 2 with odd planes,
# stride 3 (the general split), groups, padding wider than the stride, dilation.
SHAPES = [
    pytest.param((2, 3, 29, 31), (8, 3, 7, 7), dict(padding=3, stride=2), id="7x7_s2_stem"),
    pytest.param((2, 16, 15, 13), (24, 16, 3, 3), dict(padding=1, stride=2), id="3x3_s2_odd"),
    pytest.param((1, 5, 16, 17), (9, 5, 5, 4), dict(padding=(1, 2), stride=3), id="s3_odd"),
    pytest.param((2, 8, 11, 12), (12, 4, 3, 3), dict(padding=2, stride=2, groups=2),
                 id="s2_groups2_pad2"),
    pytest.param((1, 6, 13, 15), (8, 6, 3, 3), dict(padding=2, stride=(1, 2), dilation=(1, 2)),
                 id="s1x2_dilated"),
]


def _grads(x, w, go, method, monkeypatch, **kw):
    monkeypatch.setenv("CNNKERN_IM2COL_PACK", method)
    s, pd = kw.get("stride", 1), kw.get("padding", 0)
    s, pd = (s, s) if isinstance(s, int) else s, (pd, pd) if isinstance(pd, int) else pd
    d = kw.get("dilation", 1)
    d = (d, d) if isinstance(d, int) else d
    g = kw.get("groups", 1)
    ops = torch.ops.cnnkern
    out = ops.conv2d(x, w, None, list(s), list(pd), list(d), g, "im2col", False)
    gi = ops.conv2d_backward_input(go, w, list(x.shape), list(s), list(pd), list(d), g, "im2col",
                                   False)
    gw = ops.conv2d_backward_weight(go, x, list(w.shape), list(s), list(pd), list(d), g,
                                    "im2col", False)
    return out, gi, gw


def _reference(x, w, go, **kw):
    x64 = x.double().requires_grad_()
    w64 = w.double().requires_grad_()
    out = F.conv2d(x64, w64, None, **kw)
    out.backward(go.double())
    return out.detach(), x64.grad, w64.grad


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("xs, ws, kw", SHAPES)
def test_phases_give_the_strided_reads_bits_and_match_torch(xs, ws, kw, threads, monkeypatch):
    gen = torch.Generator().manual_seed(5)
    x, w = torch.randn(xs, generator=gen), torch.randn(ws, generator=gen)
    go = torch.randn(F.conv2d(x, w, None, **kw).shape, generator=gen)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        phased = _grads(x, w, go, "phases", monkeypatch, **kw)
        strided = _grads(x, w, go, "runs", monkeypatch, **kw)
        default = _grads(x, w, go, "", monkeypatch, **kw)
    finally:
        torch.set_num_threads(before)
    for name, a, b, c in zip(("forward", "grad-input", "grad-weight"), phased, strided, default):
        assert torch.equal(a, b), f"{name}: phases and strided reads differ"
        assert torch.equal(a, c), f"{name}: the default differs from phases"
    for name, got, want in zip(("forward", "grad-input", "grad-weight"), phased,
                               _reference(x, w, go, **kw)):
        assert_close(got, want.float(), msg=name)


@pytest.mark.parametrize("xs, ws, kw", SHAPES)
def test_integer_inputs_exact_through_the_phases(xs, ws, kw, monkeypatch):
    """Integer data make every sum exact: each value the split moves, and each padding zero
    around it, must be the right one."""
    x, w = int_tensor(*xs), int_tensor(*ws)
    go = int_tensor(*F.conv2d(x, w, None, **kw).shape)
    got = _grads(x, w, go, "phases", monkeypatch, **kw)
    for name, g, want in zip(("forward", "grad-input", "grad-weight"), got,
                             _reference(x, w, go, **kw)):
        assert torch.equal(g, want.float()), name


def test_nan_reaches_exactly_the_outputs_that_read_it(monkeypatch):
    """A NaN in the last column of an odd-width row (the even phase's extra value, next to the
    odd phase's zero fill) reaches only the outputs whose window covers it."""
    x = torch.randn(1, 4, 9, 9)
    x[0, :, 4, 8] = float("nan")
    w = torch.randn(8, 4, 3, 3)
    monkeypatch.setenv("CNNKERN_IM2COL_PACK", "phases")
    got = cnnkern.conv2d(x, w, None, stride=2, padding=1, algo="im2col")
    ref = F.conv2d(x, w, None, stride=2, padding=1)
    assert torch.equal(got.isnan(), ref.isnan())
    # only output (2, 4) of each of the 8 filters: rows p with 2p - 1 <= 4 <= 2p + 1 (p = 2),
    # columns q with 2q - 1 <= 8 <= 2q + 1 (q = 4)
    assert int(got.isnan().sum()) == 8
    finite = ~ref.isnan()
    assert_close(got[finite], ref[finite])


def _im2col(x, w, pass_, **kw):
    p = next(p for p in cnnkern.explain(x, w, **kw).passes if p.name == pass_)
    return next(a for a in p.algorithms if a.name == "im2col")


def test_workspace_counts_the_split_by_hand(monkeypatch):
    """One thread (a problem below the parallel threshold): the forward's split of the 3
    channels of a 3 x 20 x 21 image into 2 phases of 11 columns, 3 * 2 * 20 * 11 floats; the
    grad-input's and grad-weight's the same on top of their column tile (147 rows x all 10 x 11
    output positions).
    A 3x3 stride-2 layer (1.5 taps per value: the split does not pay), a 1x1 stride-2 layer
    and forced strided reads split nothing."""
    x, w = torch.randn(1, 3, 20, 21), torch.randn(4, 3, 7, 7)
    split = 3 * 2 * 20 * 11 * 4
    fwd = _im2col(x, w, "fwd", stride=2, padding=3)
    assert fwd.workspace_per_thread == split and "2 column stride phases" in fwd.workspace
    for pass_ in ("bwd_input", "bwd_weight"):
        a = _im2col(x, w, pass_, stride=2, padding=3)
        assert a.workspace_per_thread == 147 * 110 * 4 + split, pass_
    one = _im2col(torch.randn(1, 8, 20, 21), torch.randn(8, 8, 1, 1), "fwd", stride=2)
    assert one.workspace_per_thread == 0 and "phases" not in one.workspace
    three = _im2col(torch.randn(1, 8, 20, 21), torch.randn(8, 8, 3, 3), "fwd", stride=2,
                    padding=1)
    assert three.workspace_per_thread == 0 and "phases" not in three.workspace
    monkeypatch.setenv("CNNKERN_IM2COL_PACK", "runs")
    assert _im2col(x, w, "fwd", stride=2, padding=3).workspace_per_thread == 0
