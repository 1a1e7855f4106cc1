"""The CPU Winograd's filter-streaming schedules on small planes (ResNet's 14x14 and 7x7 at
batch 1): threads take chunks of filters, as wide as the GEMM's register tile unless that
leaves too few chunks (cpu/winograd/winograd_plan.h, Plan::filter_chunk). The chunk width and
the thread count only split the work: every pass must give the same bits for every width and
for 1, 2 and 3 threads, and match a float64 reference."""

import pytest
import torch
import torch.nn.functional as F

import cnnkern

ALGOS = ["winograd_f2", "winograd"]
# Error bound against float64, max |err| / max |ref| (test_winograd.py's float32 bounds).
FP32_MAX_REL = {"winograd_f2": 5e-6, "winograd": 1e-4}
# Forced widths (CNNKERN_WINOGRAD_CHUNK), "" for the plan's own: 8, the old 16, AVX-512's 32,
# and 48 (not a divisor of the filter counts below, so the last chunk is partial).
WIDTHS = ["", "8", "16", "32", "48"]

SHAPES = [
    # 264 filters: 9 chunks of 32 (the last of 8 filters), enough for the wide chunks
    pytest.param((1, 16, 7, 7), (264, 16, 3, 3), 1, id="7x7_264_filters"),
    pytest.param((1, 24, 14, 14), (256, 24, 3, 3), 1, id="14x14_256_filters"),
    # two groups of 136 filters: chunks never straddle a group
    pytest.param((1, 32, 6, 5), (272, 16, 3, 3), 2, id="groups2_odd_plane"),
    # few filters: fewer than 8 chunks at 32, so the plan keeps 16
    pytest.param((2, 8, 7, 7), (40, 8, 3, 3), 1, id="40_filters"),
]


def _passes(x, w, g, algo, groups):
    """(output, grad_input, grad_weight) through the registered ops."""
    one, pad = [1, 1], [1, 1]
    ops = torch.ops.cnnkern
    return (ops.conv2d(x, w, None, one, pad, one, groups, algo, False),
            ops.conv2d_backward_input(g, w, list(x.shape), one, pad, one, groups, algo, False),
            ops.conv2d_backward_weight(g, x, list(w.shape), one, pad, one, groups, algo, False))


def _reference(x, w, g, groups):
    x, w, g = x.double(), w.double(), g.double()
    gi, gw, _ = torch.ops.aten.convolution_backward(
        g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], groups, [True, True, False])
    return F.conv2d(x, w, None, 1, 1, 1, groups), gi, gw


def _max_rel_err(out, ref):
    return float((out.double() - ref).abs().max()) / float(ref.abs().max())


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("xs, ws, groups", SHAPES)
def test_same_bits_for_every_chunk_width_and_thread_count(xs, ws, groups, algo, monkeypatch):
    monkeypatch.setenv("CNNKERN_WINOGRAD_SCHEDULE", "streaming")
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(xs, generator=gen), torch.randn(ws, generator=gen)
    g = torch.randn(F.conv2d(x, w, None, 1, 1, 1, groups).shape, generator=gen)
    before = torch.get_num_threads()
    results = {}
    try:
        for width in WIDTHS:
            monkeypatch.setenv("CNNKERN_WINOGRAD_CHUNK", width)
            for threads in (1, 2, 3):
                torch.set_num_threads(threads)
                results[width, threads] = _passes(x, w, g, algo, groups)
    finally:
        torch.set_num_threads(before)
    first = results["", 1]
    for key, got in results.items():
        for name, a, r in zip(("output", "grad_input", "grad_weight"), got, first):
            assert torch.equal(a, r), f"{algo} {name}: (width, threads) {key} differs from ('', 1)"
    for name, a, r in zip(("output", "grad_input", "grad_weight"), first,
                          _reference(x, w, g, groups)):
        err = _max_rel_err(a, r)
        assert err <= FP32_MAX_REL[algo], f"{algo} {name}: max rel err {err:.2e}"


@pytest.mark.parametrize("bad", ["12", "0", "-8", "abc", "16x", "2048"])
def test_bad_chunk_width_is_refused_naming_the_variable_and_value(bad, monkeypatch):
    monkeypatch.setenv("CNNKERN_WINOGRAD_SCHEDULE", "streaming")
    monkeypatch.setenv("CNNKERN_WINOGRAD_CHUNK", bad)
    x, w = torch.randn(1, 8, 7, 7), torch.randn(16, 8, 3, 3)
    with pytest.raises(RuntimeError, match=f"CNNKERN_WINOGRAD_CHUNK must be a multiple of 8 "
                                           f"filters from 8 to 1024; got '{bad}'"):
        cnnkern.conv2d(x, w, padding=1, algo="winograd_f2")
