"""The CUDA implicit-GEMM convolution's index math and tile loop, checked on the CPU.

csrc/core/implicit_gemm.h holds everything the CUDA kernel computes besides the FMAs' hardware:
the per-pass gathers (A, B, C offsets), the tile load/store mappings, the double-buffered
tile loop, the epilogue and the split-K plan. The tests-only ops below run that same code in
float64 on the CPU (cpu/implicit_gemm_test_ops.cpp): the dense operands against F.unfold and
friends, and each pass emulated block by block (thread after thread, NaN-filled shared tiles
and outputs, bounds-checked gathers) against torch's convolution and its gradients; for the
tensor-core paths, the mma fragment layouts against the PTX ISA's figures and, for float32 with
TF32 allowed, the operand rounding (the model of cvt.rna.tf32.f32) against an arithmetic
reference and the emulated passes against float64 references.
"""

import pytest
import torch
import torch.nn.functional as F

from conftest import load_testing_ops, assert_close, tf32_reference
from shapes import CONV_CASES, ConvCase, conv_params, layer_cases

import cnnkern  # noqa: F401  (loads the ops)

ops = load_testing_ops()  # torch.ops.cnnkern_testing
D = torch.float64
BK = 16

# Shapes that stress the tiles beyond the curated matrix: several m and n tiles with tails,
# many k-tiles (the double buffer turns over), groups with K/g > 64.
# fmt: off
TILE_CASES = [
    ConvCase("tiles_k70_c20_multi_m",   2, 20, 11, 10, 70, 3, 3, 1, 1, 1, 1),
    ConvCase("tiles_groups2_kg66",      1, 12,  9,  9, 132, 3, 3, 2, 1, 1, 2),
    ConvCase("tiles_long_reduction",    3, 40,  6,  7, 5, 3, 3, 1, 1, 1, 1),
    ConvCase("tiles_1x1_m_tail",        3, 17, 13,  5, 65, 1, 1, 1, 0, 1, 1),
    ConvCase("tiles_stride2_dgrad",     2,  9, 12, 11, 67, 3, 3, 2, 1, 1, 1),
]
# fmt: on

CASES = [c for c in CONV_CASES if c.N > 0] + TILE_CASES


def _args(case):
    (sh, sw) = case.stride if isinstance(case.stride, tuple) else (case.stride,) * 2
    (ph, pw) = case.padding if isinstance(case.padding, tuple) else (case.padding,) * 2
    (dh, dw) = case.dilation if isinstance(case.dilation, tuple) else (case.dilation,) * 2
    return [sh, sw], [ph, pw], [dh, dw], case.groups


def _tensors(case):
    x = torch.randn(case.input_shape, dtype=D)
    w = torch.randn(case.weight_shape, dtype=D)
    g = torch.randn(case.output_shape, dtype=D)
    return x, w, g


@pytest.mark.parametrize("case", conv_params(CASES))
def test_fprop_a_is_unfold(case):
    x, w, g = _tensors(case)
    a = ops.igemm_matrix("fprop", "a", x, w, g, *_args(case))
    cols = F.unfold(x, (case.R, case.S), dilation=case.dilation, padding=case.padding,
                    stride=case.stride)  # N x (C*R*S) x (P*Q), channel-major rows
    G, CgRS = case.groups, case.C // case.groups * case.R * case.S
    ref = torch.stack([cols[:, gi * CgRS:(gi + 1) * CgRS, :].permute(0, 2, 1).reshape(-1, CgRS)
                       for gi in range(G)])
    assert torch.equal(a, ref)


@pytest.mark.parametrize("case", conv_params(CASES))
def test_fprop_b_and_wgrad_operands(case):
    x, w, g = _tensors(case)
    G, Kg = case.groups, case.K // case.groups
    b = ops.igemm_matrix("fprop", "b", x, w, g, *_args(case))
    assert torch.equal(b, w.reshape(G, Kg, -1).transpose(1, 2))
    # wgrad's B is fprop's A (the im2col matrix), its A the grad_output rows per channel.
    assert torch.equal(ops.igemm_matrix("wgrad", "b", x, w, g, *_args(case)),
                       ops.igemm_matrix("fprop", "a", x, w, g, *_args(case)))
    wa = ops.igemm_matrix("wgrad", "a", x, w, g, *_args(case))
    ref = g.reshape(case.N, G, Kg, -1).permute(1, 2, 0, 3).reshape(G, Kg, -1)
    assert torch.equal(wa, ref)


def _dgrad_a_reference(case, g):
    """A(m = (n, h, w), k = (kk, r, s)) = grad_out(n, kk, p, q) where h = p*sh - ph + r*dh."""
    (sh, sw), (ph, pw), (dh, dw), G = _args(case)
    N, K, P, Q = case.output_shape
    Kg = K // G
    H, W, R, S = case.H, case.W, case.R, case.S
    out = torch.zeros(G, N, H, W, Kg, R, S, dtype=D)
    for r in range(R):
        for s in range(S):
            for h in range(H):
                hh = h + ph - r * dh
                if hh < 0 or hh % sh or hh // sh >= P:
                    continue
                for w_ in range(W):
                    ww = w_ + pw - s * dw
                    if ww < 0 or ww % sw or ww // sw >= Q:
                        continue
                    for gi in range(G):
                        out[gi, :, h, w_, :, r, s] = g[:, gi * Kg:(gi + 1) * Kg, hh // sh, ww // sw]
    return out.reshape(G, N * H * W, Kg * R * S)


@pytest.mark.parametrize("case", conv_params(CASES[::2]))
def test_dgrad_operands(case):
    x, w, g = _tensors(case)
    G, Kg, Cg = case.groups, case.K // case.groups, case.C // case.groups
    assert torch.equal(ops.igemm_matrix("dgrad", "a", x, w, g, *_args(case)),
                       _dgrad_a_reference(case, g))
    b = ops.igemm_matrix("dgrad", "b", x, w, g, *_args(case))  # (kk, r, s) x c
    ref = w.reshape(G, Kg, Cg, case.R * case.S).permute(0, 1, 3, 2).reshape(G, -1, Cg)
    assert torch.equal(b, ref)


# "simt": the float32/float64 micro-tiles; "mma": the float16/bfloat16 tensor-core warp tiling
# and fragment layouts (the hardware's arithmetic is not emulated, its index math is).
COMPUTE = pytest.mark.parametrize("mma", [False, True], ids=["simt", "mma"])


@COMPUTE
@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize("case", conv_params(CASES))
def test_emulated_fprop_matches_conv2d(case, relu, mma):
    x, w, g = _tensors(case)
    bias = torch.randn(case.K, dtype=D)
    out = ops.igemm_emulate("fprop", x, w, g, bias, *_args(case), 0, relu, mma)
    ref = F.conv2d(x, w, bias, **case.kwargs())
    if relu:
        ref = F.relu(ref)
    assert_close(out, ref)


@COMPUTE
@pytest.mark.parametrize("case", conv_params(CASES))
def test_emulated_dgrad_matches_torch(case, mma):
    x, w, g = _tensors(case)
    out = ops.igemm_emulate("dgrad", x, w, g, None, *_args(case), mma=mma)
    ref = torch.nn.grad.conv2d_input(x.shape, w, g, **case.kwargs())
    assert_close(out, ref)


@COMPUTE
@pytest.mark.parametrize("splits", [0, 1, 2, 3, 1000], ids=lambda s: f"splits{s}")
@pytest.mark.parametrize("case", conv_params(CASES))
def test_emulated_wgrad_matches_torch(case, splits, mma):
    x, w, g = _tensors(case)
    out = ops.igemm_emulate("wgrad", x, w, g, None, *_args(case), splits, mma=mma)
    ref = torch.nn.grad.conv2d_weight(x, w.shape, g, **case.kwargs())
    assert_close(out, ref)


# ---------------------------------------------------------------------------------------------
# The float32 TF32 tensor-core path (cnnkern.backends.allow_tf32): operand rounding, the
# m16n8k8 fragment layouts, and the passes emulated with both.
# ---------------------------------------------------------------------------------------------

def _tf32_inputs():
    g = torch.Generator().manual_seed(1)
    exps = torch.randint(-149, 128, (4000,), generator=g).double()
    vals = (torch.rand(4000, generator=g, dtype=D) + 1) * torch.exp2(exps)
    vals = vals.clamp(max=3.4e38) * torch.where(torch.rand(4000, generator=g) < 0.5, -1.0, 1.0)
    one = 1.0
    ties = [one + 2.0 ** -11, one + 3 * 2.0 ** -11, -(one + 2.0 ** -11), 2.0 ** -11 + 2.0 ** -22,
            1.5 + 2.0 ** -11, (2 - 2.0 ** -11) * 2.0 ** 20]  # exact midpoints: away from zero
    near = [one + 2.0 ** -11 - 2.0 ** -23, one + 2.0 ** -11 + 2.0 ** -23, 2 - 2.0 ** -23]
    special = [0.0, -0.0, float("inf"), float("-inf"), 2.0 ** -149, 2.0 ** -136, 3 * 2.0 ** -137,
               2.0 ** -126, 2.0 ** -126 - 2.0 ** -149, 3.4028234663852886e38,
               (2 - 2.0 ** -10) * 2.0 ** 127, (2 - 2.0 ** -11) * 2.0 ** 127]
    return torch.cat([vals, torch.tensor(ties + near + special, dtype=D)]).float()


def test_tf32_round_is_round_to_nearest_ties_away():
    x = _tf32_inputs()
    got = ops.tf32_round(x)
    ref = tf32_reference(x)
    assert torch.equal(got, ref), (x[got != ref][:5], got[got != ref][:5], ref[got != ref][:5])
    # the low 13 bits are zero: a tf32 value in an fp32 register
    finite = torch.isfinite(got)
    assert (got[finite].view(torch.int32) & 0x1FFF).eq(0).all()
    # spot values stated by hand: ties go away from zero, not to even
    spot = torch.tensor([1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, -(1 + 2.0 ** -11),
                         1 + 2.0 ** -11 - 2.0 ** -23], dtype=torch.float32)
    assert ops.tf32_round(spot).tolist() == [1 + 2.0 ** -10, 1 + 2.0 ** -9, -(1 + 2.0 ** -10), 1.0]
    nan = ops.tf32_round(torch.tensor([float("nan"), -float("nan")]))
    assert nan.isnan().all()


def _ptx_fragment_table(shape, operand):
    """The PTX ISA's fragment figures, element by element (groupID g = lane/4, threadID_in_group
    t = lane%4): (row, col) of each of a lane's elements, in register order."""
    def table(lane):
        g, t = lane // 4, lane % 4
        if shape == "m16n8k8_tf32":
            if operand == "a":  # a0: (g, t), a1: (g+8, t), a2: (g, t+4), a3: (g+8, t+4)
                return [(g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4)]
            if operand == "b":  # b0: (k=t, n=g), b1: (k=t+4, n=g)
                return [(t, g), (t + 4, g)]
        if shape == "m16n8k16":
            if operand == "a":  # a0,a1: row g; a2,a3: row g+8; a4..a7: columns + 8
                return [(g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1),
                        (g, 2 * t + 8), (g, 2 * t + 9), (g + 8, 2 * t + 8), (g + 8, 2 * t + 9)]
            if operand == "b":
                return [(2 * t, g), (2 * t + 1, g), (2 * t + 8, g), (2 * t + 9, g)]
        # C (f32 accumulators, both shapes): c0,c1 row g, columns 2t, 2t+1; c2,c3 row g+8
        return [(g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1)]
    return [rc for lane in range(32) for rc in table(lane)]


MMA_TILES = {  # (rows, cols) of each operand: A m x k, B k x n, C m x n
    "m16n8k16": {"a": (16, 16), "b": (16, 8), "c": (16, 8)},
    "m16n8k8_tf32": {"a": (16, 8), "b": (8, 8), "c": (16, 8)},
}


@pytest.mark.parametrize("operand", ["a", "b", "c"])
@pytest.mark.parametrize("shape", ["m16n8k16", "m16n8k8_tf32"])
def test_mma_fragment_layouts(shape, operand):
    """Every element of each operand tile is held by exactly one (lane, element), where the PTX
    ISA's figure puts it."""
    flat = ops.mma_fragments(shape, operand)
    got = list(zip(flat[0::2], flat[1::2]))
    rows, cols = MMA_TILES[shape][operand]
    assert len(got) == rows * cols
    assert sorted(got) == [(r, c) for r in range(rows) for c in range(cols)]
    assert got == _ptx_fragment_table(shape, operand)


def _tf32_tensors(case):
    """float32-representable values (the GPU path reads float32)."""
    x, w, g = _tensors(case)
    return x.float().double(), w.float().double(), g.float().double()


def _rounded(t):
    return tf32_reference(t.float()).double()


def _tf32_pass(pass_, case, x, w, g, bias=None, splits=0):
    return ops.igemm_emulate(pass_, x, w, g, bias, *_args(case), splits, False, True, True)


def _pass_ref(pass_, case, x, w, g, bias=None):
    if pass_ == "fprop":
        return F.conv2d(x, w, bias, **case.kwargs())
    if pass_ == "dgrad":
        return torch.nn.grad.conv2d_input(x.shape, w, g, **case.kwargs())
    return torch.nn.grad.conv2d_weight(x, w.shape, g, **case.kwargs())


TF32_CASES = CASES[::2] + TILE_CASES[1::2]


@pytest.mark.parametrize("pass_", ["fprop", "dgrad", "wgrad"])
@pytest.mark.parametrize("case", conv_params(TF32_CASES))
def test_emulated_tf32_passes(case, pass_):
    """The TF32 path emulated (m16n8k8 fragments, operands rounded, float64 sums): equal to a
    float64 convolution of the tf32-rounded operands to float64 precision, and within the TF32
    bound of the unrounded one: |err| <= (2^-10 + 2^-22) * sum|a||b| (each operand off by at
    most 2^-11 relative)."""
    x, w, g = _tf32_tensors(case)
    bias = torch.randn(case.K, dtype=D).float().double() if pass_ == "fprop" else None
    out = _tf32_pass(pass_, case, x, w, g, bias)
    assert_close(out, _pass_ref(pass_, case, _rounded(x), _rounded(w), _rounded(g), bias))
    exact = _pass_ref(pass_, case, x, w, g, bias)
    magnitude = _pass_ref(pass_, case, x.abs(), w.abs(), g.abs())
    bound = (2.0 ** -10 + 2.0 ** -22) * magnitude + 1e-12 * (1 + exact.abs())
    err = (out - exact).abs()
    assert (err <= bound).all(), (err - bound).max()
    if out.numel() >= 16 and magnitude.max() > 0:
        # and the rounding did happen: an exact-fp32 path would be ~1000x closer
        assert err.max() > 2.0 ** -20 * magnitude.max(), err.max()


def test_emulated_tf32_wgrad_splits_and_integers():
    """Split-K partials add in a fixed order on the TF32 path too; small integers are exact in
    tf32, so integer-valued operands give the exact result."""
    case = TILE_CASES[2]  # a long N*P*Q reduction
    x, w, g = (t.round().clamp(-4, 4) for t in _tf32_tensors(case))
    ref = _pass_ref("wgrad", case, x, w, g)
    for splits in (1, 3):
        assert torch.equal(_tf32_pass("wgrad", case, x, w, g, splits=splits), ref)
    assert torch.equal(_tf32_pass("fprop", case, x, w, g), _pass_ref("fprop", case, x, w, g))


def test_emulate_tf32_needs_mma():
    case = TILE_CASES[0]
    x, w, g = _tensors(case)
    with pytest.raises(RuntimeError, match="tf32=True .* needs mma=True"):
        ops.igemm_emulate("fprop", x, w, g, None, *_args(case), 0, False, False, True)


def test_emulation_catches_a_wrong_schedule():
    """The emulation is not vacuous: NaN-filled outputs stay NaN where nothing was written."""
    case = TILE_CASES[0]
    x, w, g = _tensors(case)
    x[0, 0, 0, 0] = float("nan")
    out = ops.igemm_emulate("fprop", x, w, g, None, *_args(case))
    ref = F.conv2d(x, w, None, **case.kwargs())
    assert torch.equal(out.isnan(), ref.isnan()) and out.isnan().any()


def _plan(pass_, case, splits=0):
    keys = ["M", "N", "K", "tiles_m", "tiles_n", "splits", "k_chunk", "grid_z", "ws"]
    return dict(zip(keys, ops.igemm_plan(pass_, list(case.input_shape), list(case.weight_shape),
                                          *_args(case), splits)))


def _layer_cases():
    return layer_cases(batch=32)


@pytest.mark.parametrize("forced", [0, 1, 5, 10**6])
@pytest.mark.parametrize("case", conv_params(CASES + _layer_cases()))
def test_plan_invariants(case, forced):
    for pass_ in ("fprop", "dgrad", "wgrad"):
        pl = _plan(pass_, case, forced)
        assert pl["k_chunk"] % BK == 0 and pl["k_chunk"] > 0
        # the splits cover [0, K) exactly, none empty
        assert pl["splits"] * pl["k_chunk"] >= pl["K"] > (pl["splits"] - 1) * pl["k_chunk"]
        assert pl["tiles_m"] * 64 >= pl["M"] > (pl["tiles_m"] - 1) * 64
        assert pl["tiles_n"] * 64 >= pl["N"] > (pl["tiles_n"] - 1) * 64
        assert pl["grid_z"] == case.groups * pl["splits"] <= 65535
        if pass_ != "wgrad":
            assert pl["splits"] == 1 and pl["ws"] == 0
        else:
            assert pl["ws"] <= 1 << 24
            full = pl["splits"] * pl["M"] * pl["N"] * case.groups
            assert pl["ws"] == (0 if pl["splits"] == 1 else full)


def test_plan_of_an_empty_reduction():
    """An empty batch leaves wgrad nothing to reduce (K = N*P*Q = 0): one empty split. The plan
    used to divide by its zero-wide split (SIGFPE): every empty-batch conv on CUDA asks for it,
    through the algorithm's rules, before anything else. Found by the CUDA emulator."""
    case = ConvCase("empty_batch_plan", 0, 3, 6, 6, 4, 3, 3, 1, 1, 1, 1)
    pl = _plan("wgrad", case)
    assert (pl["K"], pl["splits"], pl["k_chunk"], pl["ws"]) == (0, 1, 0, 0), pl
    for pass_ in ("fprop", "dgrad"):
        assert _plan(pass_, case)["splits"] == 1


def test_plan_splits_big_reductions():
    """VGG16's first layer at batch 32: one 64 x 27 output tile and a 1.6M-long N*P*Q
    reduction -> split until the grid fills the GPU; its last layer (576 tiles) needs none."""
    vgg = [c for c in _layer_cases() if c.id.startswith("vgg16")]
    first, last = vgg[0], vgg[-1]
    assert (first.C, first.K, last.C, last.K, last.H) == (3, 64, 512, 512, 14)
    pl = _plan("wgrad", first)
    assert pl["splits"] == 264 and pl["tiles_m"] * pl["tiles_n"] == 1, pl
    assert _plan("wgrad", last)["splits"] == 1


# ---------------------------------------------------------------------------------------------
# The CUDA Winograd pipeline (csrc/core/winograd_gemm.h): transforms + the same tile loop.
# ---------------------------------------------------------------------------------------------


def _winograd_ok(case):
    (sh, sw), _, (dh, dw), _ = _args(case)
    return (case.R, case.S, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1)


# fmt: off
WINO_EXTRA = [
    ConvCase("wino_pad3_crop",        2, 3, 9, 10, 4, 3, 3, 1, 3, 1, 1),  # turned pad 2-3 < 0
    ConvCase("wino_pad0_tail",        3, 5, 11, 6, 7, 3, 3, 1, 0, 1, 1),
    ConvCase("wino_groups3_pad2x0",   2, 6, 8, 9, 9, 3, 3, 1, (2, 0), 1, 3),
    ConvCase("wino_many_channels",    1, 70, 6, 6, 66, 3, 3, 1, 1, 1, 1),  # several GEMM tiles
]
# fmt: on
WINO_CASES = [c for c in CASES if _winograd_ok(c)] + WINO_EXTRA


@pytest.mark.parametrize("m", [2, 4], ids=["f2", "f4"])
@pytest.mark.parametrize("case", conv_params(WINO_CASES))
def test_emulated_winograd_forward_and_grad_input(case, m):
    x, w, g = _tensors(case)
    bias = torch.randn(case.K, dtype=D)
    _, pad, _, groups = _args(case)
    out = ops.wino_emulate(m, "fprop", x, w, g, bias, pad, groups)
    assert_close(out, F.conv2d(x, w, bias, **case.kwargs()))
    gi = ops.wino_emulate(m, "dgrad", x, w, g, None, pad, groups)
    assert_close(gi, torch.nn.grad.conv2d_input(x.shape, w, g, **case.kwargs()))


@pytest.mark.parametrize("chunk", [1, 2])
def test_emulated_winograd_batch_chunks(chunk):
    case = WINO_EXTRA[1]  # N = 3: chunks of 1 and of 2 (+ a remainder of 1)
    x, w, g = _tensors(case)
    _, pad, _, groups = _args(case)
    for pass_ in ("fprop", "dgrad"):
        whole = ops.wino_emulate(4, pass_, x, w, g, None, pad, groups)
        assert torch.equal(ops.wino_emulate(4, pass_, x, w, g, None, pad, groups, chunk), whole)


@pytest.mark.skipif("winograd" not in cnnkern.algorithms("cuda"),
                    reason="CUDA kernels not built")
@pytest.mark.parametrize("algo", ["winograd", "winograd_f2", "im2col"])
def test_cuda_algorithm_rules(algo):
    """The CUDA registry answers without a GPU: Winograd's rules match the CPU's."""
    why = torch.ops.cnnkern.conv2d_why_not
    assert why([1, 4, 8, 8], [4, 4, 3, 3], [1, 1], [1, 1], [1, 1], 1, torch.float16, "cuda",
               algo) == ""
    r = why([1, 4, 8, 8], [4, 4, 5, 5], [1, 1], [2, 2], [1, 1], 1, torch.float32, "cuda", algo)
    if algo == "im2col":
        assert r == ""
    else:
        assert r.endswith(f"{algo} needs a 3x3 kernel with stride 1 and dilation 1; got 5x5 "
                          "kernel, stride 1, dilation 1"), r


@pytest.mark.skipif("im2col" not in cnnkern.algorithms("cuda"), reason="CUDA kernels not built")
def test_cuda_im2col_refuses_what_its_32_bit_index_math_cannot_hold():
    why = torch.ops.cnnkern.conv2d_why_not
    r = why([1, 1, 2 ** 30, 2], [1, 1, 1, 1], [1, 1], [0, 0], [1, 1], 1, torch.float32, "cuda",
            "im2col")
    assert "height and width must be < 2^30" in r, r
    r = why([1, 2 ** 26, 4, 4], [1, 2 ** 26, 4, 4], [1, 1], [0, 0], [1, 1], 1, torch.float32,
            "cuda", "im2col")
    assert "C/groups*R*S" in r, r
