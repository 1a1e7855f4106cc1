"""Winograd convolution on the CPU: algo="winograd" (F(4x4,3x3)) and algo="winograd_f2"
(F(2x2,3x3)), forward, grad-input and grad-weight, against torch.nn.functional.conv2d.

- float64: within the float64 tolerance of F.conv2d's float64 autograd (checks the transforms
  themselves: a wrong matrix entry is off by O(1), not 1e-12);
- float32: max |err| / max |ref| within the algorithm's stated bound (FP32_MAX_REL);
- F(2x2) with small integer inputs is exact in float32 (its transforms only add, subtract and
  halve), so it is compared bit for bit;
- accuracy on VGG16-like layers against a float64 reference, with the bounds measured there;
- refusal messages, gradcheck, opcheck, layouts, thread-count independence.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import cnnkern
from conftest import assert_close, assert_exact, int_tensor
from shapes import CONV_CASES, ConvCase, _pair, conv_params

ALGOS = ["winograd", "winograd_f2"]
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]

pytestmark = pytest.mark.skipif(
    not set(ALGOS) <= set(cnnkern.algorithms("cpu")), reason="winograd not built for the CPU")

# Largest max|err| / max|ref| of float32 against a float64 reference. Measured with
# bench/accuracy.py on the 13 VGG16 layers (batch 1, H and W cropped to 56, standard-normal
# input, weight and grad_output, two seeds, forward, grad-input and grad-weight):
# F(2x2) <= 1.0e-6, F(4x4) <= 2.1e-5 (direct <= 3.6e-6, PyTorch's float32 <= 2.7e-6). The
# bounds leave ~5x margin; F(4x4)'s larger error is the known price of its larger
# interpolation points (2, -2: entries up to 8 in A^T, 1/24 in G).
FP32_MAX_REL = {"winograd_f2": 5e-6, "winograd": 1e-4}


def _accepts(case):
    return (case.R, case.S) == (3, 3) and _pair(case.stride) == (1, 1) \
        and _pair(case.dilation) == (1, 1)


# fmt: off
EXTRA_CASES = [
    #        id                          N   C   H   W   K   R  S  stride padding  dil groups
    ConvCase("tiny_1x1_pad1",            2,  3,  1,  1,  2,  3, 3, 1,     1,       1,  1),
    ConvCase("tiny_2x3_pad1",            1,  2,  2,  3,  3,  3, 3, 1,     1,       1,  1),
    ConvCase("tiny_3x3_valid",           2,  2,  3,  3,  2,  3, 3, 1,     0,       1,  1),
    ConvCase("tiny_4x5_valid",           1,  3,  4,  5,  2,  3, 3, 1,     0,       1,  1),
    ConvCase("pad2",                     2,  3,  6,  7,  4,  3, 3, 1,     2,       1,  1),
    ConvCase("pad3_crop_in_grad_input",  1,  3,  5,  6,  4,  3, 3, 1,     3,       1,  1),
    ConvCase("pad3x0",                   2,  2,  7,  5,  3,  3, 3, 1,     (3, 0),  1,  1),
    ConvCase("pad0x3_odd",               1,  2,  9,  4,  3,  3, 3, 1,     (0, 3),  1,  1),
    ConvCase("pad5_tiny",                1,  2,  2,  2,  2,  3, 3, 1,     5,       1,  1),
    ConvCase("odd_13x11_pad1",           2,  5, 13, 11,  7,  3, 3, 1,     1,       1,  1),
    ConvCase("groups3_pad2",             2,  6,  9,  8,  9,  3, 3, 1,     2,       1,  3),
    ConvCase("depthwise_pad1",           2,  6, 10,  9,  6,  3, 3, 1,     1,       1,  6),
    ConvCase("batch1_c32",               1, 32, 12, 12, 16,  3, 3, 1,     1,       1,  1),
    # Many tiles: several blocks, the last one partial, and (F(2x2)) enough blocks for each
    # thread to run whole blocks.
    ConvCase("many_blocks",              4,  3, 45, 43,  5,  3, 3, 1,     1,       1,  1),
    # Rows long enough that whole groups of 8 tiles are read in place (not through the
    # zero-padded row buffer) in both tile sizes; pad 3 makes grad-input's padding -1.
    ConvCase("wide_rows",                2,  3,  9, 83,  4,  3, 3, 1,     1,       1,  1),
    ConvCase("wide_rows_pad3",           1,  2,  6, 90,  3,  3, 3, 1,     (0, 3),  1,  1),
]
# fmt: on

CASES = [c for c in CONV_CASES if _accepts(c)] + EXTRA_CASES


def _grads(x, w, b, g, algo, **kw):
    """(out, grad_input, grad_weight, grad_bias) of cnnkern.conv2d (algo) or F.conv2d (None)."""
    x, w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    b = b.detach().clone().requires_grad_() if b is not None else None
    out = cnnkern.conv2d(x, w, b, algo=algo, **kw) if algo else F.conv2d(x, w, b, **kw)
    out.backward(g)
    return out, x.grad, w.grad, (b.grad if b is not None else None)


def _reference(x, w, b, g, **kw):
    return _grads(x.double(), w.double(), None if b is None else b.double(), g.double(), None,
                  **kw)


def max_rel_err(out, ref):
    """max |out - ref| / max |ref| (0 for empty tensors)."""
    if ref.numel() == 0:
        return 0.0
    out, ref = out.detach().double(), ref.detach().double()
    scale = max(float(ref.abs().max()), 1e-30)
    return float((out - ref).abs().max()) / scale


def check_passes(got, ref, dtype, algo):
    for name, a, r in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, ref):
        if r is None:
            assert a is None, name
            continue
        assert a.dtype == dtype and a.shape == r.shape, (name, a.dtype, a.shape)
        if dtype == torch.float64:
            assert_close(a, r, msg=lambda m, name=name: f"{algo} {name}: {m}")
        else:
            err = max_rel_err(a, r)
            assert err <= FP32_MAX_REL[algo], f"{algo} {name}: max rel err {err:.2e}"


# ---------------------------------------------------------------------------------------------
# The shape matrix
# ---------------------------------------------------------------------------------------------


def test_matrix_covers_what_winograd_must_handle():
    pads = {p for c in CASES for p in _pair(c.padding)}
    assert {0, 1, 2, 3} <= pads
    assert any(c.groups > 1 and c.groups < c.C for c in CASES)
    assert any(c.groups == c.C == c.K for c in CASES)
    assert {0, 1} <= {c.N for c in CASES}
    assert any(c.H < 4 and c.W < 4 for c in CASES)  # smaller than one F(2x2) input tile
    assert any(c.H % 2 and c.W % 2 for c in CASES)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", conv_params(CASES))
def test_matrix_against_torch(case, dtype, algo):
    x = torch.randn(case.input_shape, dtype=dtype)
    w = torch.randn(case.weight_shape, dtype=dtype)
    b = torch.randn(case.K, dtype=dtype)
    g = torch.randn(case.output_shape, dtype=dtype)
    got = _grads(x, w, b, g, algo, **case.kwargs())
    assert tuple(got[0].shape) == case.output_shape
    check_passes(got, _reference(x, w, b, g, **case.kwargs()), dtype, algo)


# Every kernel set (AVX2 where the CPU has it, and the portable one) and both forward
# schedules (cpu/winograd_forward.cpp picks one from the problem) on a subset of the matrix.
VARIANT_CASES = [c for c in CASES if c.id in {
    "3x3_pad1", "3x3_valid_odd_hw", "c13_k6_odd", "asym_padding_2x1", "groups2", "depthwise",
    "tiny_1x1_pad1", "pad3_crop_in_grad_input", "pad0x3_odd", "batch1_c32", "many_blocks",
    "wide_rows", "wide_rows_pad3", "empty_batch"}]
VARIANTS = [pytest.param(isa, sched, id=f"{isa}-{sched}")
            for isa in ("native", "generic") for sched in ("blocked", "streaming")]


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa, schedule", VARIANTS)
@pytest.mark.parametrize("case", conv_params(VARIANT_CASES))
def test_every_kernel_set_and_schedule(case, isa, schedule, dtype, algo, monkeypatch):
    if isa == "generic":
        monkeypatch.setenv("CNNKERN_CPU_ISA", "generic")
    elif dtype == torch.float64:
        pytest.skip("float64 has only the portable kernels")
    monkeypatch.setenv("CNNKERN_WINOGRAD_SCHEDULE", schedule)
    test_matrix_against_torch(case, dtype, algo)


def test_variant_cases_exist():
    assert len(VARIANT_CASES) == 14


@pytest.mark.parametrize("case", conv_params([c for c in CASES if c.N > 0]))
def test_f2_exact_on_integer_inputs(case):
    """F(2x2)'s transforms are exact on small integers (the only fractions are halves), so all
    three passes equal the float64 reference bit for bit in float32."""
    x = int_tensor(*case.input_shape)
    w = int_tensor(*case.weight_shape)
    b = int_tensor(case.K)
    g = int_tensor(*case.output_shape)
    got = _grads(x, w, b, g, "winograd_f2", **case.kwargs())
    ref = _reference(x, w, b, g, **case.kwargs())
    for a, r in zip(got, ref):
        assert_exact(a, r.float())


@pytest.mark.parametrize("algo", ALGOS)
def test_raw_backward_ops(algo):
    """The registered backward ops themselves, against aten.convolution_backward."""
    x = torch.randn(2, 4, 11, 9, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    g = torch.randn(2, 6, 13, 9, dtype=torch.float64)
    st, pd, dl = [1, 1], [2, 1], [1, 1]
    gi_ref, gw_ref, _ = torch.ops.aten.convolution_backward(
        g, x, w, None, st, pd, dl, False, [0, 0], 2, [True, True, False])
    gi = torch.ops.cnnkern.conv2d_backward_input(g, w, list(x.shape), st, pd, dl, 2, algo)
    gw = torch.ops.cnnkern.conv2d_backward_weight(g, x, list(w.shape), st, pd, dl, 2, algo)
    assert_close(gi, gi_ref)
    assert_close(gw, gw_ref)


def test_empty_batch_grads_are_zero():
    for algo in ALGOS:
        x, w, b = torch.randn(0, 3, 6, 6), torch.randn(4, 3, 3, 3), torch.randn(4)
        out, gx, gw, gb = _grads(x, w, b, torch.randn(0, 4, 6, 6), algo, padding=1)
        assert out.shape == (0, 4, 6, 6) and gx.shape == (0, 3, 6, 6)
        assert_exact(gw, torch.zeros(4, 3, 3, 3))
        assert_exact(gb, torch.zeros(4))


# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------

LAYOUTS = {
    "transposed_hw": lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),
    "channel_stride_2": lambda t: torch.stack([t, torch.full_like(t, 99.0)], 2).flatten(1, 2)[:, ::2],
    "padded_storage_slice": lambda t: F.pad(t, (1, 2, 2, 1), value=99.0)[:, :, 2:-1, 1:-2],
    "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
}


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts(layout, algo):
    x0 = int_tensor(2, 3, 7, 9)
    w0 = int_tensor(4, 3, 3, 3)
    g0 = int_tensor(2, 4, 7, 9)
    x, w, g = LAYOUTS[layout](x0), LAYOUTS[layout](w0), LAYOUTS[layout](g0)
    assert torch.equal(x, x0) and torch.equal(w, w0) and torch.equal(g, g0)
    if layout != "channels_last":
        assert not x.is_contiguous() and not w.is_contiguous() and not g.is_contiguous()
    xl, wl = x.detach().requires_grad_(), w.detach().requires_grad_()  # the strided leaves
    out = cnnkern.conv2d(xl, wl, padding=1, algo=algo)
    out.backward(g)
    want = _grads(x0, w0, None, g0, algo, padding=1)  # the same algorithm on contiguous data
    assert_exact(out, want[0])
    assert_exact(xl.grad, want[1])
    assert_exact(wl.grad, want[2])
    ref = _reference(x0, w0, None, g0, padding=1)
    for a, r in zip((out, xl.grad, wl.grad), ref[:3]):
        assert max_rel_err(a, r) <= FP32_MAX_REL[algo]


# ---------------------------------------------------------------------------------------------
# What Winograd refuses, and why
# ---------------------------------------------------------------------------------------------

REFUSED = [
    pytest.param((1, 2, 9, 9), (3, 2, 5, 5), dict(padding=2), ["3x3", "5x5 kernel"], id="5x5"),
    pytest.param((1, 2, 9, 9), (3, 2, 3, 3), dict(stride=2), ["stride 1", "stride 2"],
                 id="stride2"),
    pytest.param((1, 2, 9, 9), (3, 2, 3, 3), dict(stride=(1, 2)), ["stride 1x2"],
                 id="stride1x2"),
    pytest.param((1, 2, 9, 9), (3, 2, 3, 3), dict(dilation=2), ["dilation 1", "dilation 2"],
                 id="dilation2"),
    pytest.param((1, 2, 9, 9), (3, 2, 1, 3), dict(), ["1x3 kernel"], id="1x3"),
]


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("xs, ws, kw, needles", REFUSED)
def test_refusal_names_the_requirement_and_the_value(xs, ws, kw, needles, algo):
    x, w = torch.randn(xs), torch.randn(ws)
    ok, reason = cnnkern.can_implement(x, w, **kw, algo=algo)
    assert not ok
    assert f"{algo} needs a 3x3 kernel with stride 1 and dilation 1; got " in reason, reason
    for n in needles:
        assert n in reason, (n, reason)
    with pytest.raises(RuntimeError, match=f"algo '{algo}' cannot run this problem"):
        cnnkern.conv2d(x, w, **kw, algo=algo)


def test_refusal_message_in_full():
    x, w = torch.randn(1, 2, 9, 9), torch.randn(3, 2, 5, 5)
    _, reason = cnnkern.can_implement(x, w, stride=2, algo="winograd")
    assert reason == ("algo 'winograd' cannot run this problem on CPU: winograd needs a 3x3 "
                      "kernel with stride 1 and dilation 1; got 5x5 kernel, stride 2, dilation 1")


@pytest.mark.parametrize("algo", ALGOS)
def test_refuses_other_dtypes(algo):
    # float16/bfloat16 run (through float32: tests/ops/test_conv2d.py's low-precision tests).
    x, w = torch.ones(1, 2, 5, 5, dtype=torch.int32), torch.ones(3, 2, 3, 3, dtype=torch.int32)
    ok, reason = cnnkern.can_implement(x, w, algo=algo)
    assert not ok and "float32, float64, float16 and bfloat16" in reason and "Int" in reason, \
        reason
    assert cnnkern.can_implement(x.bfloat16(), w.bfloat16(), algo=algo) == (True, "")


@pytest.mark.parametrize("algo", ALGOS)
def test_accepts_any_padding_and_groups(algo):
    x, w = torch.randn(2, 6, 5, 7), torch.randn(6, 2, 3, 3)
    for pad in [0, 1, 2, 3, 7, (0, 4)]:
        ok, reason = cnnkern.can_implement(x, w, padding=pad, groups=3, algo=algo)
        assert ok and reason == "", (pad, reason)


# ---------------------------------------------------------------------------------------------
# Non-finite values
# ---------------------------------------------------------------------------------------------


def _tiles_reading(bad, m, pad, out_hw):
    """Outputs whose m x m Winograd tile reads a non-finite input (bad: N x C x H x W bool)."""
    a = m + 2
    P, Q = out_hw
    th, tw = -(-P // m), -(-Q // m)
    flag = F.pad(bad.any(1, keepdim=True).float(), (pad, a + tw * m, pad, a + th * m))
    tiles = F.max_pool2d(flag, a, stride=m)[:, :, :th, :tw] > 0  # the a x a patch of each tile
    return tiles.repeat_interleave(m, 2).repeat_interleave(m, 3)[:, :, :P, :Q]


@pytest.mark.parametrize("algo, m", [("winograd", 4), ("winograd_f2", 2)])
def test_non_finite_inputs_stay_in_their_tiles(algo, m):
    """A NaN or Inf input makes every output of a tile that reads it non-finite (the
    transforms mix a tile's whole patch, and Inf - Inf is NaN), never more: outputs that are
    non-finite in F.conv2d are non-finite here, all others of untouched tiles finite."""
    x = torch.randn(2, 3, 13, 11)
    x[0, 1, 4, 4] = float("nan")
    x[1, 2, 0, 0] = float("inf")
    x[1, 0, 12, 10] = -float("inf")
    w = torch.randn(4, 3, 3, 3)
    got, want = cnnkern.conv2d(x, w, padding=1, algo=algo), F.conv2d(x, w, padding=1)
    may = _tiles_reading(~x.isfinite(), m, 1, want.shape[2:]).expand_as(want)
    assert (~want.isfinite() <= ~got.isfinite()).all()  # torch's non-finite outputs are ours
    assert (~got.isfinite() <= may).all()               # ours stay in the tiles that read one
    assert got[~may].isfinite().all() and (~may).sum() > want.numel() // 2
    torch.testing.assert_close(got[~may], want[~may], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# gradcheck, opcheck
# ---------------------------------------------------------------------------------------------

GRADCHECK = [
    pytest.param((2, 2, 5, 6), (3, 2, 3, 3), True, dict(padding=1), id="pad1"),
    pytest.param((1, 3, 6, 5), (2, 3, 3, 3), False, dict(), id="valid"),
    pytest.param((1, 2, 4, 5), (2, 2, 3, 3), True, dict(padding=(3, 2)), id="pad3x2"),
    pytest.param((2, 4, 5, 5), (4, 2, 3, 3), True, dict(padding=1, groups=2), id="groups2"),
    pytest.param((1, 3, 7, 6), (3, 1, 3, 3), True, dict(padding=1, groups=3), id="depthwise"),
    pytest.param((1, 2, 2, 1), (2, 2, 3, 3), True, dict(padding=1), id="tiny"),
]


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("xs, ws, has_bias, kw", GRADCHECK)
def test_gradcheck(xs, ws, has_bias, kw, algo):
    f64 = dict(dtype=torch.float64, requires_grad=True)
    x, w = torch.randn(xs, **f64), torch.randn(ws, **f64)
    b = torch.randn(ws[0], **f64) if has_bias else None
    assert gradcheck(lambda x, w, b: cnnkern.conv2d(x, w, b, algo=algo, **kw), (x, w, b))


def _opcheck(op, args):
    result = torch.library.opcheck(op, args)
    assert all(v == "SUCCESS" for v in result.values()), result


OPCHECK = [
    pytest.param((2, 3, 6, 7), (4, 3, 3, 3), True, [1, 1], 1, id="pad1"),
    pytest.param((1, 4, 5, 5), (4, 2, 3, 3), False, [3, 0], 2, id="groups2_pad3x0"),
    pytest.param((0, 2, 4, 4), (3, 2, 3, 3), True, [1, 1], 1, id="empty_batch"),
]


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, ws, bias, pad, groups", OPCHECK)
def test_opcheck(xs, ws, bias, pad, groups, dtype, algo):
    ops = torch.ops.cnnkern
    x = torch.randn(xs, dtype=dtype, requires_grad=True)
    w = torch.randn(ws, dtype=dtype, requires_grad=True)
    b = torch.randn(ws[0], dtype=dtype, requires_grad=True) if bias else None
    one = [1, 1]
    _opcheck(ops.conv2d.default, (x, w, b, one, pad, one, groups, algo))
    g = torch.randn(F.conv2d(x, w, None, 1, pad, 1, groups).shape, dtype=dtype)
    _opcheck(ops.conv2d_backward_input.default,
             (g, w.detach(), list(xs), one, pad, one, groups, algo))
    _opcheck(ops.conv2d_backward_weight.default,
             (g, x.detach(), list(ws), one, pad, one, groups, algo))


# ---------------------------------------------------------------------------------------------
# Thread-count independence
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("schedule", ["blocked", "streaming"])
@pytest.mark.parametrize("shape", [
    # few tiles (filter-streaming by default: threads take chunks of filters; blocked: one
    # block, its phases split over threads)
    pytest.param(((1, 24, 14, 14), (72, 24, 3, 3), 1), id="few_tiles"),
    # many tiles (blocked by default, whole blocks per thread: F(2x2) 8 x 576 tiles)
    pytest.param(((8, 3, 48, 47), (5, 3, 3, 3), 1), id="many_tiles"),
    pytest.param(((2, 8, 19, 17), (8, 2, 3, 3), 4), id="groups4"),
])
def test_results_do_not_depend_on_thread_count(shape, schedule, algo, monkeypatch):
    monkeypatch.setenv("CNNKERN_WINOGRAD_SCHEDULE", schedule)
    xs, ws, groups = shape
    x, w, b = torch.randn(xs), torch.randn(ws), torch.randn(ws[0])
    g = torch.randn(F.conv2d(x, w, None, 1, 1, 1, groups).shape)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(_grads(x, w, b, g, algo, padding=1, groups=groups))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for a, r in zip(other, results[0]):
            assert_exact(a, r)
    ref = _reference(x, w, b, g, padding=1, groups=groups)
    for a, r in zip(results[0], ref):
        assert max_rel_err(a, r) <= FP32_MAX_REL[algo]


# ---------------------------------------------------------------------------------------------
# Accuracy on VGG16-like layers
# ---------------------------------------------------------------------------------------------

# (C, K, H): VGG16's channel counts at a reduced spatial size (the bound is on a max over
# outputs, so it is checked on the channel depths that set the length of the sums).
VGG_LIKE = [(3, 64, 32), (64, 64, 32), (128, 128, 16), (256, 256, 14), (512, 512, 8)]


@pytest.mark.parametrize("C, K, H", VGG_LIKE)
def test_float32_accuracy_against_float64(C, K, H):
    x = torch.randn(1, C, H, H, dtype=torch.float64)
    w = torch.randn(K, C, 3, 3, dtype=torch.float64)
    ref = F.conv2d(x, w, padding=1)
    torch_err = max_rel_err(F.conv2d(x.float(), w.float(), padding=1), ref)
    errs = {}
    for algo in ALGOS:
        errs[algo] = max_rel_err(cnnkern.conv2d(x.float(), w.float(), padding=1, algo=algo), ref)
        assert errs[algo] <= FP32_MAX_REL[algo], (algo, errs[algo])
    # F(2x2) is as accurate as PyTorch's float32 conv; F(4x4) loses more: measured 5-10x
    # PyTorch's error, 25x at C=3 where PyTorch's 27-term sums are nearly exact.
    assert errs["winograd_f2"] <= 2 * torch_err + 1e-7, (errs, torch_err)
    assert errs["winograd"] <= 50 * torch_err, (errs, torch_err)
    # The literature's ordering: the larger tile is the less accurate one.
    assert errs["winograd"] > errs["winograd_f2"], errs
