"""The fp32 implicit-GEMM forward on the fp32 GEMM core, behind CUDA algo "im2col" for float32
without TF32 (csrc/cuda/conv2d_igemm_fp32.cu: 128 x 128 x 8 tiles, 8 x 8 per thread, or 64 x 128
with 4 x 8 when K/groups <= 64; weights and patches staged by 4-byte cp.async, the patch gather
walked without division, or for pointwise filters by channel alone; split-K with a fixed-order
reduce when the grid leaves SMs idle). Every case is judged against torch's conv2d in float64
on the same inputs, within fp32 accumulation (R*S*C/groups + 1 units of 2^-24 of sum |x w| +
|b|); a lost, doubled or misplaced operand moves an output by about |x w| ~ 0.1-1, far past
that bound.

The cases cover the kernel's edges: partial tiles in K and in N*P*Q (and several of each),
C/groups not a multiple of the k-tile (the zero-filled channel tail), padding, stride,
dilation, asymmetric ones, groups and depthwise, 1x1 and 7x7, planes of one pixel, P*Q not a
multiple of 4 (scalar stores, runs crossing images), bias and ReLU in the epilogue. Each runs
on an emulated GPU of 132 SMs (the tiny grids split their reduction where it has 16+ k-tiles)
and of 1 SM (never split). In the emulator the engine's counters prove which kernels ran: per
k-tile of every block 4 patch copies and BM/32 weight copies per thread (so the total is the
unsplit one whatever the split), a reduce launch exactly when split, and no mma; float32 with
TF32 allowed, and float64, keep the general kernel (no cp.async)."""

import zlib

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import emulator, load_testing_ops
from igemm_tc_cases import sm_count  # noqa: F401 (a fixture)

THREADS = 256


class Case:
    def __init__(self, id, N, C, H, W, K, R, S, stride=1, padding=0, dilation=1, groups=1):
        self.id, self.N, self.C, self.H, self.W, self.K, self.R, self.S = id, N, C, H, W, K, R, S
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def out_hw(self):
        def one(i, size):
            pair = lambda v: v if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
            k = (self.R, self.S)[i]
            return (size + 2 * pair(self.padding)[i] - pair(self.dilation)[i] * (k - 1) - 1) \
                // pair(self.stride)[i] + 1
        return one(0, self.H), one(1, self.W)


CASES = [
    # N*P*Q = 2*9*9 = 162: two column tiles, the second partial; K = 136: two row tiles.
    Case("3x3_pad1_partial_tiles", 2, 16, 9, 9, 136, 3, 3, padding=1),
    Case("c3_stride2_odd_plane", 2, 3, 11, 13, 8, 3, 3, stride=2, padding=1),
    Case("c5_dilation_asym", 1, 5, 10, 9, 7, 3, 2, stride=(1, 2), padding=(2, 0),
         dilation=(2, 3)),
    Case("1x1_c12_pq_mult4", 3, 12, 4, 4, 20, 1, 1),
    Case("one_pixel_planes_pad1", 5, 8, 1, 1, 9, 3, 3, padding=1),
    Case("groups3", 2, 12, 6, 5, 6, 3, 3, padding=1, groups=3),
    Case("depthwise_5x5_s3", 1, 6, 8, 8, 6, 5, 5, stride=3, padding=2, groups=6),
    Case("7x7_s2_c9", 1, 9, 14, 14, 16, 7, 7, stride=2, padding=3),
    Case("c20_three_col_tiles", 3, 20, 9, 11, 5, 3, 3, padding=1),
    # K = 96 (65..128: the 128-row tile), P*Q = 64: float4 stores into the split workspace;
    # 24*9 = 216 = 27 k-tiles: 3 slices of 9 on 132 SMs.
    Case("k96_split_vec_out", 2, 24, 8, 8, 96, 3, 3, padding=1),
    # K/groups = 64 exactly (the narrow tile's edge), 2 groups, 18 k-tiles: 2 slices of 9.
    Case("groups2_kg64_split", 1, 32, 7, 6, 128, 3, 3, padding=1, groups=2),
    # Pointwise gathers (1x1, no padding: by channel alone), the narrow tile: stride 2, C = 133
    # = 17 k-tiles (2 slices of 9 and 8 on 132 SMs; a 5-channel tail in the last k-tile).
    Case("1x1_s2_c133_split", 2, 133, 9, 7, 24, 1, 1, stride=2),
    # ... the 128-row tile (K = 80, rows 80..127 past K), 2 k-tiles: never split.
    Case("1x1_k80", 1, 12, 4, 4, 80, 1, 1),
    # ... the 128-row tile split: C = 150 = 19 k-tiles (slices of 10 and 9, the channel tail in
    # the second), P*Q = 30: scalar stores.
    Case("1x1_c150_split", 2, 150, 5, 6, 70, 1, 1),
    # A 1x1 filter with padding takes the general walk (the padding ring reads zeros).
    Case("1x1_pad1_groups2", 1, 8, 3, 3, 6, 1, 1, padding=1, groups=2),
]

SMS = [132, 1]


def _operands(case, dtype, device):
    g = torch.Generator().manual_seed(zlib.crc32(case.id.encode()))
    fan_in = case.C // case.groups * case.R * case.S
    x = torch.randn(case.N, case.C, case.H, case.W, generator=g, dtype=torch.float64)
    w = torch.randn(case.K, case.C // case.groups, case.R, case.S, generator=g,
                    dtype=torch.float64) / fan_in ** 0.5
    b = torch.randn(case.K, generator=g, dtype=torch.float64)
    return [t.to(dtype).to(device) for t in (x, w, b)]


def _check(y, x, w, b, case, relu):
    x64, w64 = x.double().cpu(), w.double().cpu()
    b64 = None if b is None else b.double().cpu()
    ref = F.conv2d(x64, w64, b64, **case.kwargs())
    if relu:
        ref = ref.clamp_min(0)
    absprod = F.conv2d(x64.abs(), w64.abs(), None, **case.kwargs())
    if b is not None:
        absprod = absprod + b64.abs().view(1, -1, 1, 1)
    fan_in = case.C // case.groups * case.R * case.S
    bound = (fan_in + 1) * 2.0 ** -24 * absprod + torch.finfo(torch.float32).tiny
    assert y.shape == ref.shape
    err = (y.double().cpu() - ref).abs()
    assert (err <= bound).all(), (
        f"max error {err.max().item():.3g}, bound there {bound.flatten()[err.argmax()].item():.3g}")


def _schedule(case, sms):
    """The schedule's fields (tests/internals/test_igemm_fp32_schedule.py checks it by hand)."""
    pair = lambda v: list(v) if isinstance(v, (tuple, list)) else [v, v]  # noqa: E731
    got, _ = load_testing_ops().igemm32_schedule(
        [case.N, case.C, case.H, case.W], [case.K, case.C // case.groups, case.R, case.S],
        pair(case.stride), pair(case.padding), pair(case.dilation), case.groups, sms)
    return dict(zip(("bm", "tiles_m", "tiles_n", "groups", "k_tiles", "splits", "per", "ws"),
                    got))


def _counts(case, sms):
    """(launches, blocks of the GEMM kernel, cp.async): per block and k-tile each thread issues
    4 patch copies and bm/32 weight copies; slices partition the k-tiles, so the copies are the
    unsplit grid's. bm, tiles: worked here from the shape alone; splits: the schedule's."""
    P, Q = case.out_hw()
    cg, kg = case.C // case.groups, case.K // case.groups
    bm = 64 if kg <= 64 else 128
    tiles = -(-case.N * P * Q // 128) * -(-kg // bm) * case.groups
    ktiles = -(-cg * case.R * case.S // 8)
    s = _schedule(case, sms)
    assert s["bm"] == bm and s["k_tiles"] == ktiles
    split = s["splits"] > 1
    # the reduce kernel: blocks of 256 threads over the output, no copies
    reduce_blocks = -(-case.N * case.K * P * Q // THREADS) if split else 0
    return (1 + split, tiles * s["splits"] + reduce_blocks,
            tiles * ktiles * THREADS * (4 + bm // 32), s["splits"])


def _stats_delta(dev, fn):
    before = emulator.stats() if dev.emulated else None
    out = fn()
    if not dev.emulated:
        return out, None
    return out, {k: v - before[k] for k, v in emulator.stats().items()}


@pytest.mark.parametrize("sms", SMS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_against_float64(case, sms, dev, sm_count):
    sm_count(sms)
    x, w, b = _operands(case, torch.float32, dev.device)
    y, d = _stats_delta(dev, lambda: cnnkern.conv2d(x, w, b, algo="im2col", **case.kwargs()))
    assert y.dtype == torch.float32 and y.device == x.device
    _check(y, x, w, b, case, relu=False)
    if d is not None:
        launches, blocks, copies, _ = _counts(case, sms)
        assert d["launches"] == launches and d["blocks"] == blocks, d
        assert d["cp_asyncs"] == copies and d["mmas"] == 0, d


def test_split_sums_are_the_same_bits_on_every_run(dev, sm_count):
    """The reduce adds the slices in slice order whatever order the blocks ran in (in the
    emulator: forward, reverse and a random block order, one per run): the runs agree bit for
    bit (an atomic or first-come reduction would not), and within the fp32 bound of float64."""
    sm_count(132)
    case = next(c for c in CASES if c.id == "k96_split_vec_out")
    assert _schedule(case, 132)["splits"] == 3
    x, w, b = _operands(case, torch.float32, dev.device)
    runs = []
    before = emulator.current_order() if dev.emulated else None
    try:
        for order in ("forward", "reverse", "random"):
            if dev.emulated:
                emulator.set_order(order, seed=7)
            runs.append(cnnkern.conv2d(x, w, b, algo="im2col", **case.kwargs()))
    finally:
        if before is not None:
            emulator.set_order(*before)
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    _check(runs[0], x, w, b, case, relu=False)


def test_cases_reach_every_path():
    """Both tiles, both gathers, split and unsplit: the cases above are not all one path."""
    seen = set()
    for case in CASES:
        for sms in SMS:
            s = _schedule(case, sms)
            pointwise = case.R == case.S == 1 and case.padding == 0
            seen.add((s["bm"], pointwise, s["splits"] > 1))
    assert seen == {(bm, pw, sp) for bm in (64, 128) for pw in (False, True)
                    for sp in (False, True)}, seen


@pytest.mark.parametrize("case", CASES[::3], ids=lambda c: c.id)
def test_relu_epilogue_and_no_bias(case, dev, sm_count):
    """conv2d_relu (the fused conv + folded BN + ReLU's op) clamps after the bias; without a
    bias nothing is added (the reduce kernel's epilogue where split: 132 SMs)."""
    sm_count(132)
    x, w, b = _operands(case, torch.float32, dev.device)
    s, p, dl = (list(v) if isinstance(v, tuple) else [v, v]
                for v in (case.stride, case.padding, case.dilation))
    y = torch.ops.cnnkern.conv2d_relu(x, w, b, s, p, dl, case.groups, "im2col")
    assert (y >= 0).all() and (y == 0).any()
    _check(y, x, w, b, case, relu=True)
    y = torch.ops.cnnkern.conv2d(x, w, None, s, p, dl, case.groups, "im2col")
    _check(y, x, w, None, case, relu=False)


def test_channels_last_call_gets_channels_last_output(dev):
    case = CASES[0]
    x, w, b = _operands(case, torch.float32, dev.device)
    xc = x.contiguous(memory_format=torch.channels_last)
    y = cnnkern.conv2d(xc, w, b, algo="im2col", **case.kwargs())
    assert y.is_contiguous(memory_format=torch.channels_last)
    _check(y, x, w, b, case, relu=False)


@pytest.mark.parametrize("what", ["tf32", "float64"])
def test_tf32_and_float64_keep_the_general_kernel(what, dev):
    """TF32 allowed: float32 runs on the general kernel's mma.sync path; float64 on its SIMT
    path. Neither issues a cp.async (only the fp32 core's kernel does)."""
    if not dev.emulated:
        pytest.skip("which kernel ran is the emulator's counters alone")
    case = CASES[1]
    dtype = torch.float64 if what == "float64" else torch.float32
    x, w, b = _operands(case, dtype, dev.device)
    old = cnnkern.backends.get_allow_tf32()
    cnnkern.backends.set_allow_tf32(what == "tf32")
    try:
        y, d = _stats_delta(dev, lambda: cnnkern.conv2d(x, w, b, algo="im2col", **case.kwargs()))
    finally:
        cnnkern.backends.set_allow_tf32(old)
    assert d["cp_asyncs"] == 0 and (d["mmas"] > 0) == (what == "tf32"), d
    if what == "float64":
        ref = F.conv2d(x, w, b, **case.kwargs())
        assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_explain_names_the_fp32_core_kernel(dev):
    x = torch.zeros(1, 12, 6, 6, device=dev.device)
    w = torch.zeros(16, 12, 3, 3, device=dev.device)
    e = cnnkern.explain(x, w, padding=1, algo="im2col")
    fwd = next(p for p in e.passes if p.name == "fwd")
    note = next(a for a in fwd.algorithms if a.name == "im2col").workspace
    assert note.startswith("fp32 GEMM core kernel") and "unless TF32 is allowed" in note, note
    assert "(then the tensor-core kernel" in note, note  # what TF32 runs instead (C % 4 == 0)
    x64, w64 = x.double(), w.double()
    e = cnnkern.explain(x64, w64, padding=1, algo="im2col")
    fwd = next(p for p in e.passes if p.name == "fwd")
    note = next(a for a in fwd.algorithms if a.name == "im2col").workspace
    assert note.startswith("general implicit-GEMM kernel"), note
