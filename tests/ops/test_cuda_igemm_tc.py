"""The tensor-core implicit-GEMM forward behind CUDA algo "im2col" for float16/bfloat16
(csrc/cuda/conv2d_igemm_tc.cu): cp.async into XOR-swizzled b16 tiles, ldmatrix, mma.sync
m16n8k16. Every case is judged against torch's conv2d in float64 on the same rounded inputs,
within what the kernel's arithmetic allows: fp32 accumulation (each partial sum off by at most
R*S*C units of 2^-24 of sum |x w|) and one rounding of the result to the dtype (half an ulp).
A lost, doubled or misplaced operand chunk moves an output by about |x w| ~ 0.1-1, hundreds of
times that bound.

The cases cover the kernel's paths: the 128x128 tile (the emulated device told it has 1 SM, so
every grid fills a wave), the 64x64 tile and the 64x64 tile with split-K (132 SMs, small grids),
padding, stride 2, dilation, 1x1, 3x3, 7x7 with C=8, partial tiles in M and N, an odd K (scalar
stores), bias and ReLU in the epilogue (and in the split-K reduce), NCHW and channels_last
calls; shapes the kernel cannot take (C % 8 != 0) stay on the general kernel. In the emulator
the engine's counters prove which kernel ran; on a GPU the same cases run on the device's own
plan (path counts are the emulator's alone).
"""

import zlib

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import emulator, load_testing_ops
from igemm_tc_cases import Case, sm_count  # noqa: F401 (a fixture)

DTYPES = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]


CASES = [
    # 128x128 tile: M = 2*9*9 = 162 (2 m tiles, the second partial), K = 136 (2 n tiles).
    Case("large_3x3_pad1_partial_mn", 2, 16, 9, 9, 136, 3, 3, padding=1, sms=1, path="large"),
    Case("large_1x1_c32", 2, 32, 9, 9, 40, 1, 1, sms=1, path="large"),  # C % 32 == 0 variant
    Case("large_7x7_s2_c8", 2, 8, 20, 20, 24, 7, 7, stride=2, padding=3, sms=1, path="large"),
    # 64x64 tile: 1 x 2 tiles in M and N; k-tiles too few to split (C=16, 3x3: 5 k-tiles).
    Case("small_3x3_s2_pad1", 2, 16, 11, 9, 72, 3, 3, stride=2, padding=1, path="small"),
    Case("small_1x1", 3, 32, 5, 7, 40, 1, 1, path="small"),
    Case("small_dilation2_oddK", 1, 24, 10, 10, 13, 3, 3, padding=2, dilation=2, path="small"),
    # 64x64 + split-K: C=64, 3x3 = 18 k-tiles, 1 tile -> 4 slices (5, 5, 5, 3 k-tiles).
    Case("split_3x3_pad1", 1, 64, 6, 7, 20, 3, 3, padding=1, path="split"),
    Case("split_1x1_s2", 2, 256, 5, 5, 16, 1, 1, stride=2, path="split"),
    # C % 8 != 0: the general kernel.
    Case("general_c12", 1, 12, 6, 6, 8, 3, 3, padding=1, path="general"),
]


def _operands(case, dtype, bias, layout, device):
    g = torch.Generator().manual_seed(zlib.crc32(case.id.encode()))
    fan_in = case.C * case.R * case.S
    x = torch.randn(case.N, case.C, case.H, case.W, generator=g).to(dtype)
    w = (torch.randn(case.K, case.C, case.R, case.S, generator=g) / fan_in ** 0.5).to(dtype)
    b = torch.randn(case.K, generator=g).to(dtype) if bias else None
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    return to(x), to(w), to(b)


def _check(y, x, w, b, case, relu):
    """|y - ref| within the fp32 accumulation bound plus half an ulp of the dtype."""
    x64, w64 = x.double().cpu(), w.double().cpu()
    ref = F.conv2d(x64, w64, None if b is None else b.double().cpu(), **case.kwargs())
    if relu:
        ref = ref.clamp_min(0)
    absprod = F.conv2d(x64.abs(), w64.abs(), None, **case.kwargs())
    if b is not None:
        absprod = absprod + b.double().cpu().abs().view(1, -1, 1, 1)
    fan_in = case.C * case.R * case.S
    half_ulp = torch.finfo(y.dtype).eps / 2 * ref.abs()
    tiny = torch.finfo(y.dtype).tiny  # results that round to a subnormal
    bound = half_ulp + (fan_in + 1) * 2.0 ** -24 * absprod + tiny
    err = (y.double().cpu() - ref).abs()
    worst = (err - bound).max().item()
    assert worst <= 0, (
        f"max error {err.max().item():.3g}, bound there {bound.flatten()[err.argmax()].item():.3g}")


def _launch_counts(case):
    """(kernel launches, blocks) the emulator must count for the case's plan."""
    why, plan, _ = load_testing_ops().igemm_tc_plan(
        [case.N, case.C, case.H, case.W], [case.K, case.C, case.R, case.S], [case.stride] * 2,
        [case.padding] * 2, [case.dilation] * 2, 1, case.sms)
    assert why == ""
    tiles = plan[3] * plan[4] * plan[6]
    return (2 if plan[6] > 1 else 1), tiles, plan


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_against_float64(case, dtype, layout, dev, sm_count):
    sm_count(case.sms)
    x, w, b = _operands(case, dtype, bias=True, layout=layout, device=dev.device)
    before = emulator.stats() if dev.emulated else None
    y = cnnkern.conv2d(x, w, b, algo="im2col", **case.kwargs())
    assert y.dtype == dtype and y.shape[1] == case.K
    # The output follows the call's memory format, whichever layout the kernel wrote.
    cl = layout == "channels_last"
    assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    _check(y, x, w, b, case, relu=False)
    if not dev.emulated:
        return
    d = {k: v - before[k] for k, v in emulator.stats().items()}
    if case.path == "general":
        assert d["cp_asyncs"] == 0 and d["ldmatrices"] == 0 and d["mmas"] > 0, d
        return
    launches, tiles, plan = _launch_counts(case)
    assert plan[0] == (case.path == "large")
    assert (plan[6] > 1) == (case.path == "split")
    assert d["launches"] == launches, d
    # One 16-byte cp.async per chunk of the A and B tiles, per k-tile of every block.
    # (Each k-tile is in exactly one split-K slice.)
    bm, blocks_k_tiles = plan[1], plan[3] * plan[4] * plan[5]
    assert d["cp_asyncs"] == blocks_k_tiles * 2 * bm * 4, d
    # Per k16 step (2 per k-tile) and warp (4): (bm/2/16) x (bm/2/8) mma.sync, and one
    # ldmatrix.x4 per m16 tile and per pair of n8 tiles.
    per_step_warps = 2 * 4
    assert d["mmas"] == blocks_k_tiles * per_step_warps * (bm // 32) * (bm // 16), d
    assert d["ldmatrices"] == blocks_k_tiles * per_step_warps * (bm // 32 + bm // 32), d
    assert d["blocks"] >= tiles, d


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [c for c in CASES if c.path in ("large", "split")][::2] +
                         [CASES[-3]], ids=lambda c: c.id)
def test_relu_epilogue_and_no_bias(case, dtype, dev, sm_count):
    """conv2d_relu (the fused conv + folded BN + ReLU's op) clamps in the epilogue, in the
    split-K reduce too; without a bias nothing is added."""
    sm_count(case.sms)
    x, w, b = _operands(case, dtype, bias=True, layout="nchw", device=dev.device)
    s, p, d = [case.stride] * 2, [case.padding] * 2, [case.dilation] * 2
    y = torch.ops.cnnkern.conv2d_relu(x, w, b, s, p, d, 1, "im2col")
    assert (y >= 0).all() and (y == 0).any()
    _check(y, x, w, b, case, relu=True)
    y = torch.ops.cnnkern.conv2d(x, w, None, s, p, d, 1, "im2col")
    _check(y, x, w, None, case, relu=False)


def test_explain_names_the_kernel_and_why(dev, sm_count):
    """explain() says which forward kernel im2col runs, its tile/split, or why not."""
    sm_count(132)

    def fwd_note(c, dtype):
        x = torch.zeros(1, c, 6, 6, dtype=dtype, device=dev.device)
        w = torch.zeros(16, c, 3, 3, dtype=dtype, device=dev.device)
        e = cnnkern.explain(x, w, padding=1, algo="im2col")
        fwd = next(p for p in e.passes if p.name == "fwd")
        return next(a for a in fwd.algorithms if a.name == "im2col").workspace

    note = fwd_note(64, torch.float16)
    assert note.startswith("tensor-core kernel") and "64x64 tile + split-K" in note, note
    assert "channels_last copies" in note, note
    note = fwd_note(12, torch.float16)
    assert note.startswith("general implicit-GEMM kernel") and "C % 8 == 0" in note, note
    note = fwd_note(16, torch.float64)  # (float32: test_cuda_igemm_tc_tf32.py)
    assert "takes float16 and bfloat16; got Double" in note, note
