"""The TF32 variant of the tensor-core implicit-GEMM forward (csrc/cuda/conv2d_igemm_tc.cu with
T = float): float32 "im2col" with cnnkern.backends.allow_tf32 on and C % 4 == 0 runs there
(cp.async of 4-channel chunks into the same XOR-swizzled 64-byte rows, ldmatrix, operands
rounded by cvt.rna.tf32.f32, mma.sync m16n8k8 .tf32, fp32 accumulators).

Judged two ways against torch's conv2d in float64:
- bitwise: x integer-valued with 13 significant bits (not exact in tf32's 11), w and the bias
  small integers (exact in tf32): every partial sum of the rounded operands is an integer below
  2^24, exact in fp32, so the kernel must give exactly the float64 conv of tf32_reference(x)
  (the rounding is cvt.rna's, ties away) and w, whatever its order of summation or split-K;
- on random data, within the TF32 bound: each operand rounded with relative error <= 2^-11, so a
  product is off by at most (2^-10 + 2^-22) |x w|, plus fp32 accumulation ((fan_in + 1) units
  of 2^-24 of sum |x w|).
In the emulator the engine's counters prove the kernel ran (mma.sync, ldmatrix and cp.async
counts of its plan); C % 4 != 0 and TF32 off stay off it.
"""

import zlib

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import emulator, int_tensor, load_testing_ops, tf32_reference
from igemm_tc_cases import Case, sm_count  # noqa: F401 (a fixture)

CASES = [
    # 128x128 tile (1 SM: every grid fills a wave): M = 162 (2 m tiles), K = 136 (2 n tiles);
    # C = 16 = one k-tile per filter position (the C % 16 == 0 variant).
    Case("large_3x3_pad1_partial_mn", 2, 16, 9, 9, 136, 3, 3, padding=1, sms=1, path="large"),
    # C = 4: four filter positions per k-tile (the carry loop), 7x7 stride 2.
    Case("large_7x7_s2_c4", 2, 4, 20, 20, 24, 7, 7, stride=2, padding=3, sms=1, path="large"),
    # 64x64 tile, no split (C = 12, 3x3: 7 k-tiles); stride 2; an odd K (scalar stores).
    Case("small_3x3_s2_pad1_c12", 2, 12, 11, 9, 13, 3, 3, stride=2, padding=1, path="small"),
    # C = 20, 3x3: 12 k-tiles -> 3 slices of 4; dilation 2.
    Case("split_dilation2", 1, 20, 10, 10, 72, 3, 3, padding=2, dilation=2, path="split"),
    # 64x64 + split-K: C = 64, 3x3 = 36 k-tiles of 16 floats, 1 tile -> slices.
    Case("split_3x3_pad1", 1, 64, 6, 7, 20, 3, 3, padding=1, path="split"),
    Case("split_1x1_s2", 2, 256, 5, 5, 16, 1, 1, stride=2, path="split"),
    # C % 4 != 0: the general kernel's TF32 path.
    Case("general_c6", 1, 6, 6, 6, 8, 3, 3, padding=1, path="general"),
]


def _layout(t, layout):
    return t.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else t


def _plan(case):
    """The kernel's plan for the case. The testing op plans for b16 (k-tiles of 32 elements);
    the TF32 kernel's k-tiles are 16 floats, so its plan is the b16 plan of the same problem
    with C doubled: same M and N, R*S*2C / 32 = R*S*C / 16 k-tiles (core/igemm_tc_plan.h)."""
    why, plan, _ = load_testing_ops().igemm_tc_plan(
        [case.N, 2 * case.C, case.H, case.W], [case.K, 2 * case.C, case.R, case.S],
        [case.stride] * 2, [case.padding] * 2, [case.dilation] * 2, 1, case.sms)
    assert why == ""
    k_tiles = -(-case.R * case.S * case.C // 16)
    assert plan[5] == k_tiles  # [large?, bm, bn, tiles_m, tiles_n, k_tiles, splits, ...]
    return plan


def _check_counts(case, d):
    """The emulator's counters against the plan: which kernel ran, and all of its work."""
    if case.path == "general":
        assert d["cp_asyncs"] == 0 and d["ldmatrices"] == 0 and d["mmas"] > 0, d
        return
    plan = _plan(case)
    assert plan[0] == (case.path == "large")
    assert (plan[6] > 1) == (case.path == "split")
    assert d["launches"] == (2 if plan[6] > 1 else 1), d
    bm = plan[1]
    k_tiles = -(-case.R * case.S * case.C // 16)
    blocks_k_tiles = plan[3] * plan[4] * k_tiles  # every k-tile in exactly one slice
    # One 16-byte cp.async per 4-float chunk of the A and B tiles (bm rows x 4 chunks each).
    assert d["cp_asyncs"] == blocks_k_tiles * 2 * bm * 4, d
    # Per k8 step (2 per k-tile) and warp (4): (bm/2/16) x (bm/2/8) mma.sync m16n8k8, one
    # ldmatrix.x4 per m16 tile and per pair of n8 tiles.
    per_step_warps = 2 * 4
    assert d["mmas"] == blocks_k_tiles * per_step_warps * (bm // 32) * (bm // 16), d
    assert d["ldmatrices"] == blocks_k_tiles * per_step_warps * (bm // 32 + bm // 32), d


def _conv(x, w, b, case, relu=False):
    with cnnkern.backends.tf32():
        if relu:
            s, p, d = [case.stride] * 2, [case.padding] * 2, [case.dilation] * 2
            return torch.ops.cnnkern.conv2d_relu(x, w, b, s, p, d, 1, "im2col", True)
        return cnnkern.conv2d(x, w, b, algo="im2col", **case.kwargs())


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_tf32_bitwise_on_integers(case, layout, dev, sm_count):
    sm_count(case.sms)
    g = torch.Generator().manual_seed(zlib.crc32(case.id.encode()))
    x = torch.randint(-4095, 4096, (case.N, case.C, case.H, case.W), generator=g).float()
    w = torch.randint(-2, 3, (case.K, case.C, case.R, case.S), generator=g).float()
    b = int_tensor(case.K, lo=-50, hi=50)
    ref = F.conv2d(tf32_reference(x).double(), w.double(), b.double(), **case.kwargs())
    # The rounding matters here: the exact conv differs (else this could not catch a kernel
    # that skipped cvt.rna).
    assert not torch.equal(ref, F.conv2d(x.double(), w.double(), b.double(), **case.kwargs()))
    x, w, b = _layout(x, layout).to(dev.device), _layout(w, layout).to(dev.device), b.to(dev.device)
    before = emulator.stats() if dev.emulated else None
    y = _conv(x, w, b, case)
    assert y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last if layout == "channels_last"
                           else torch.contiguous_format)
    assert torch.equal(y.double().cpu(), ref)
    if dev.emulated:
        _check_counts(case, {k: v - before[k] for k, v in emulator.stats().items()})


@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_tf32_random_within_bound(case, relu, dev, sm_count):
    sm_count(case.sms)
    g = torch.Generator().manual_seed(zlib.crc32(case.id.encode()) + 1)
    fan_in = case.C * case.R * case.S
    x = torch.randn(case.N, case.C, case.H, case.W, generator=g)
    w = torch.randn(case.K, case.C, case.R, case.S, generator=g) / fan_in ** 0.5
    b = torch.randn(case.K, generator=g)
    y = _conv(x.to(dev.device), w.to(dev.device), b.to(dev.device), case, relu=relu)
    x64, w64 = x.double(), w.double()
    ref = F.conv2d(x64, w64, b.double(), **case.kwargs())
    if relu:
        ref = ref.clamp_min(0)
    absprod = F.conv2d(x64.abs(), w64.abs(), None, **case.kwargs())
    bound = ((2.0 ** -10 + 2.0 ** -22) * absprod +
             (fan_in + 1) * 2.0 ** -24 * (absprod + b.double().abs().view(1, -1, 1, 1)) +
             torch.finfo(torch.float32).tiny)
    err = (y.double().cpu() - ref).abs()
    assert (err - bound).max().item() <= 0, (err.max().item(), bound.flatten()[err.argmax()])
    # ... and TF32 is really what ran (the tensor-core kernel and the general one both round):
    # float32 exact products would be ~2^-13 of |x w| closer than this on 100s of outputs.
    if case.path != "general":
        exact = F.conv2d(x, w, b, **case.kwargs()).double()
        if relu:
            exact = exact.clamp_min(0)
        assert (y.double().cpu() - exact).abs().max().item() > 2.0 ** -16 * absprod.max().item()


def test_tf32_off_stays_off_the_tensor_cores(dev, sm_count):
    """allow_tf32 off (the default): float32 runs the exact fp32 core, no mma.sync, no ldmatrix,
    whichever C."""
    case = CASES[0]
    sm_count(case.sms)
    x = torch.randn(case.N, case.C, case.H, case.W, device=dev.device)
    w = torch.randn(case.K, case.C, case.R, case.S, device=dev.device)
    before = emulator.stats() if dev.emulated else None
    y = cnnkern.conv2d(x, w, None, algo="im2col", **case.kwargs())
    ref = F.conv2d(x.double().cpu(), w.double().cpu(), None, **case.kwargs())
    assert torch.allclose(y.double().cpu(), ref, rtol=1e-5, atol=1e-4)
    if dev.emulated:
        d = {k: v - before[k] for k, v in emulator.stats().items()}
        assert d["mmas"] == 0 and d["ldmatrices"] == 0, d


def test_explain_names_the_tf32_kernel(dev, sm_count):
    """explain(): float32 says what TF32 runs, the tensor-core kernel's TF32 variant with its
    plan (or the general kernel, and why, for C % 4 != 0)."""
    sm_count(132)

    def fwd_note(c):
        x = torch.zeros(1, c, 6, 6, device=dev.device)
        w = torch.zeros(16, c, 3, 3, device=dev.device)
        e = cnnkern.explain(x, w, padding=1, algo="im2col")
        fwd = next(p for p in e.passes if p.name == "fwd")
        return next(a for a in fwd.algorithms if a.name == "im2col").workspace

    note = fwd_note(12)
    assert "unless TF32 is allowed (then the tensor-core kernel" in note, note
    assert "m16n8k8 TF32" in note and "64x64 tile" in note, note
    note = fwd_note(6)
    assert "unless TF32 is allowed (then the general implicit-GEMM kernel" in note, note
    assert "C % 4 == 0" in note, note
