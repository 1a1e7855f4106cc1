"""The tensor-core backward passes behind CUDA algo "im2col" for float16/bfloat16
(core/igemm_tc_bwd.h): grad-input with stride 1 as the forward kernel on the flipped,
transposed weight; grad-weight on its own kernel (conv2d_igemm_tc_wgrad.cu: k-major tiles
read with ldmatrix.trans, split-K over the pixels). Every case is judged against torch's
float64 grad-input / grad-weight of the same rounded operands, within what the arithmetic
allows: fp32 accumulation (each sum of n terms off by at most n units of 2^-24 of the sum of
|terms|) plus half an ulp of the dtype for the one rounding of the result. A lost, doubled,
misplaced or unflipped operand moves a result by about a term, hundreds of times the bound.

Cases cover each pass's paths: the 128x128 tile (the emulated device told it has 1 SM), the
64x64 tile and 64x64 + split-K (132 SMs), padding 0 / 1 / past the kernel's reach, dilation,
1x1, 7x7 stride 2 (grad-weight), an odd result width (scalar stores), a pixel count per image
under 32 (grad-weight's pixel walk crosses images inside a k-tile), and the shapes that keep
the general kernel (stride 2 grad-input, channels not a multiple of 8). In the emulator the
engine's counters prove which kernel ran and how many blocks, k-tiles and MMAs it took.
"""

import zlib

import pytest
import torch
from torch.nn.grad import conv2d_input, conv2d_weight

import cnnkern
from conftest import emulator
from igemm_tc_cases import Case, sm_count  # noqa: F401 (a fixture)

DTYPES = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]


class BwdCase(Case):
    def gemm(self, pass_):
        """(M, N, reduction) of the tensor-core GEMM that runs the pass."""
        P, Q = self.out_size(self.H), self.out_size(self.W)
        if pass_ == "input":  # the forward on dY: M = N*H*W, N = C, reduction K*R*S
            return self.N * self.H * self.W, self.C, self.K * self.R * self.S
        return self.K, self.R * self.S * self.C, self.N * P * Q


DGRAD = [
    # Forward view: M = 2*9*9 = 162 (2 m tiles), N = C = 136 (2 n tiles), reduction 16*9.
    BwdCase("large_3x3_pad1", 2, 136, 9, 9, 16, 3, 3, padding=1, sms=1, path="large"),
    BwdCase("large_3x3_pad0", 2, 24, 7, 8, 32, 3, 3, padding=0, sms=1, path="large"),
    BwdCase("small_1x1", 3, 40, 5, 7, 32, 1, 1, path="small"),
    BwdCase("small_dil2_pad1_oddC", 1, 13, 10, 10, 24, 3, 3, padding=1, dilation=2, path="small"),
    BwdCase("small_5x5_pad2_rect", 2, 16, 6, 11, 8, 5, 5, padding=2, path="small"),
    # K=64, 3x3: 18 k-tiles on 1 small tile -> 4 slices.
    BwdCase("split_3x3_pad1", 1, 20, 6, 7, 64, 3, 3, padding=1, path="split"),
    BwdCase("general_stride2", 2, 16, 9, 9, 16, 3, 3, stride=2, padding=1, path="general"),
    BwdCase("general_k12", 1, 16, 6, 6, 12, 3, 3, padding=1, path="general"),
    BwdCase("general_pad_past_reach", 1, 16, 6, 6, 16, 3, 3, padding=3, path="general"),
]

WGRAD = [
    # M = K = 136 (2 m tiles, the second partial), N = 9*16 = 144 (2 n tiles), 162 pixels.
    BwdCase("large_3x3_pad1", 2, 16, 9, 9, 136, 3, 3, padding=1, sms=1, path="large"),
    BwdCase("large_7x7_s2_c8", 2, 8, 20, 20, 24, 7, 7, stride=2, padding=3, sms=1, path="large"),
    BwdCase("small_1x1", 3, 32, 5, 7, 40, 1, 1, path="small"),
    BwdCase("small_dil2_pad2", 1, 24, 10, 10, 16, 3, 3, padding=2, dilation=2, path="small"),
    # 4x4 pixels per image (16 < 32): a k-tile spans 2 images; 5 images = 80 pixels.
    BwdCase("small_pq16_images", 5, 8, 4, 4, 8, 3, 3, padding=1, path="small"),
    # 2 x 2 big tiles on 8 SMs (room for 16 blocks): 288 pixels = 9 k-tiles -> 2 slices
    # (5 + 4, at least 4 k-tiles each) fill the wave.
    BwdCase("large_split", 2, 16, 12, 12, 136, 3, 3, padding=1, sms=8, path="large_split"),
    # 1 big tile, 2*24*24 = 1152 pixels = 36 k-tiles on 4 SMs: two blocks per SM would be 8
    # slices of 5 (2 rounds: 10 k-tiles per SM), one per SM 4 slices of 9 (9 k-tiles per SM,
    # half the partial sums): the plan takes 4.
    BwdCase("large_split_one_per_sm", 2, 8, 24, 24, 24, 3, 3, padding=1, sms=4,
            path="large_split"),
    # 2*16*16 = 512 pixels = 16 k-tiles: the 2 big tiles split 4 ways (the most for 16
    # k-tiles) make 8 blocks, under the wave of 132, so the small tile (1 x 3) is split
    # instead: 4 slices of 4.
    BwdCase("split_3x3_pad1", 2, 16, 16, 16, 24, 3, 3, padding=1, path="split"),
    BwdCase("split_1x1_s2", 4, 64, 17, 15, 32, 1, 1, stride=2, path="split"),
    BwdCase("general_c12", 1, 12, 6, 6, 8, 3, 3, padding=1, path="general"),
    BwdCase("general_k12", 1, 16, 6, 6, 12, 3, 3, padding=1, path="general"),
]


def _plan(M, N, red, sms, split_large_first):
    """core/igemm_tc_plan.h make_gemm_plan, restated: (bm, tiles, k-tiles, splits) for a GPU
    of `sms` SMs."""
    cdiv = lambda a, b: -(-a // b)  # noqa: E731
    k_tiles = cdiv(red, 32)

    def splits(want, most=16):  # at least 4 k-tiles a slice, at most `most` slices, none empty
        want = min(want, k_tiles // 4, most)
        return 1 if want <= 1 else cdiv(k_tiles, cdiv(k_tiles, want))

    big = cdiv(M, 128) * cdiv(N, 128)
    if big >= sms:
        return 128, big, k_tiles, 1
    if split_large_first and big * splits(2 * sms // big, 32) >= sms:  # 2 big blocks/SM
        two, one = splits(2 * sms // big, 32), splits(sms // big, 32)
        # 1 block/SM when no SM gets more k-tiles: (rounds of sms blocks) x (k-tiles a slice)
        if 1 < one < two and (cdiv(big * one, sms) * cdiv(k_tiles, one)
                              <= cdiv(big * two, sms) * cdiv(k_tiles, two)):
            return 128, big, k_tiles, one
        return 128, big, k_tiles, two
    small = cdiv(M, 64) * cdiv(N, 64)
    return 64, small, k_tiles, 1 if small >= sms else splits(cdiv(sms, small))


def _operands(case, dtype, layout, device):
    g = torch.Generator().manual_seed(zlib.crc32(case.id.encode()))
    P, Q = case.out_size(case.H), case.out_size(case.W)
    x = torch.randn(case.N, case.C, case.H, case.W, generator=g).to(dtype)
    w = (torch.randn(case.K, case.C, case.R, case.S, generator=g) / 3).to(dtype)
    dy = torch.randn(case.N, case.K, P, Q, generator=g).to(dtype)
    if layout == "channels_last":
        x, w, dy = (t.contiguous(memory_format=torch.channels_last) for t in (x, w, dy))
    return x.to(device), w.to(device), dy.to(device)


def _args(case):
    return [case.stride] * 2, [case.padding] * 2, [case.dilation] * 2, 1, "im2col"


def _within_bound(y, ref, absprod, terms):
    """|y - ref| <= half an ulp of the dtype + terms * 2^-24 * sum |terms| (+ the subnormal
    spacing, for results that round to one)."""
    half_ulp = torch.finfo(y.dtype).eps / 2 * ref.abs()
    bound = half_ulp + (terms + 1) * 2.0 ** -24 * absprod + torch.finfo(y.dtype).tiny
    err = (y.double().cpu() - ref).abs()
    assert (err - bound).max().item() <= 0, (
        f"max error {err.max().item():.3g}, bound there {bound.flatten()[err.argmax()].item():.3g}")


def _grad_input(case, dy, w, x_shape):
    y = torch.ops.cnnkern.conv2d_backward_input(dy, w, list(x_shape), *_args(case))
    dy64, w64 = dy.double().cpu(), w.double().cpu()
    ref = conv2d_input(x_shape, w64, dy64, **case.kwargs())
    absprod = conv2d_input(x_shape, w64.abs(), dy64.abs(), **case.kwargs())
    _within_bound(y, ref, absprod, case.K * case.R * case.S)
    return y


def _grad_weight(case, dy, x, w_shape):
    y = torch.ops.cnnkern.conv2d_backward_weight(dy, x, list(w_shape), *_args(case))
    dy64, x64 = dy.double().cpu(), x.double().cpu()
    ref = conv2d_weight(x64, w_shape, dy64, **case.kwargs())
    absprod = conv2d_weight(x64.abs(), w_shape, dy64.abs(), **case.kwargs())
    _within_bound(y, ref, absprod, case.N * case.out_size(case.H) * case.out_size(case.W))
    return y


def _check_counts(d, case, pass_):
    """The engine's counters against the plan: which kernel ran, and all of its work."""
    if case.path == "general":
        assert d["cp_asyncs"] == 0 and d["ldmatrices"] == 0 and d["mmas"] > 0, d
        return
    bm, tiles, k_tiles, splits = _plan(*case.gemm(pass_), case.sms, pass_ == "weight")
    assert bm == (128 if case.path.startswith("large") else 64)
    assert (splits > 1) == case.path.endswith("split")
    assert d["launches"] == (2 if splits > 1 else 1), d
    # The GEMM's tiles x slices blocks, then the reduce's one thread per output.
    M, N, _ = case.gemm(pass_)
    assert d["blocks"] == tiles * splits + (-(-M * N // 256) if splits > 1 else 0), d
    # Every k-tile lies in one slice: each block's k-tiles sum to k_tiles per tile.
    blocks_k_tiles = tiles * k_tiles
    # Per k-tile and block: one 16-byte cp.async per chunk of A (bm x 32) and B (bm x 32);
    # per k16 step (2) and warp (4): (bm/32) x (bm/16) mma.sync, (bm/32) + (bm/32) ldmatrix.x4.
    assert d["cp_asyncs"] == blocks_k_tiles * 2 * bm * 4, d
    assert d["mmas"] == blocks_k_tiles * 8 * (bm // 32) * (bm // 16), d
    assert d["ldmatrices"] == blocks_k_tiles * 8 * (bm // 32 + bm // 32), d


def _counted(dev, fn):
    before = emulator.stats() if dev.emulated else None
    out = fn()
    d = {k: v - before[k] for k, v in emulator.stats().items()} if dev.emulated else None
    return out, d


PASSES = ([pytest.param("input", c, id=f"input-{c.id}") for c in DGRAD] +
          [pytest.param("weight", c, id=f"weight-{c.id}") for c in WGRAD])


def _run(pass_, case, x, w, dy):
    return (_grad_input(case, dy, w, x.shape) if pass_ == "input"
            else _grad_weight(case, dy, x, w.shape))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pass_,case", PASSES)
def test_backward_against_float64(pass_, case, dtype, layout, dev, sm_count):
    sm_count(case.sms)
    x, w, dy = _operands(case, dtype, layout, dev.device)
    y, d = _counted(dev, lambda: _run(pass_, case, x, w, dy))
    assert y.dtype == dtype and y.shape == (x.shape if pass_ == "input" else w.shape)
    cl = layout == "channels_last"
    assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    if dev.emulated:
        _check_counts(d, case, pass_)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pass_,case", [("input", DGRAD[5]), ("weight", WGRAD[5]),
                                        ("weight", WGRAD[6]), ("weight", WGRAD[7]),
                                        ("weight", WGRAD[8])],
                         ids=lambda v: getattr(v, "id", v))
def test_split_k_is_deterministic(pass_, case, dtype, dev, sm_count):
    """The split-K slices are summed in a fixed order: the same bits under every thread and
    block order (the emulator changes its schedule between the runs)."""
    sm_count(case.sms)
    x, w, dy = _operands(case, dtype, "nchw", dev.device)
    runs = []
    for _ in range(3):
        runs.append(_run(pass_, case, x, w, dy))
        dev.reorder()
    assert all(torch.equal(runs[0], r) for r in runs[1:])


def test_explain_names_the_backward_kernels(dev, sm_count):
    """explain() says which kernel each backward pass of im2col runs, or why the general one."""
    sm_count(132)

    def notes(c, k, stride, dtype=torch.float16):
        x = torch.zeros(1, c, 6, 6, dtype=dtype, device=dev.device)
        w = torch.zeros(k, c, 3, 3, dtype=dtype, device=dev.device)
        ex = cnnkern.explain(x, w, padding=1, stride=stride, algo="im2col")

        def note(name):
            pass_ = next(p for p in ex.passes if p.name == name)
            return next(a for a in pass_.algorithms if a.name == "im2col").workspace
        return note("bwd_input"), note("bwd_weight")

    di, dw = notes(16, 64, 1)
    assert di.startswith("tensor-core kernel (the forward on the flipped") and "split" in di, di
    assert dw.startswith("tensor-core grad-weight kernel"), dw
    di, dw = notes(16, 64, 2)
    assert di.startswith("none: general implicit-GEMM kernel") and "needs stride 1" in di, di
    assert dw.startswith("tensor-core grad-weight kernel"), dw
    di, dw = notes(12, 64, 1)
    assert dw.startswith("general implicit-GEMM kernel (") and "C % 8 == 0 and K % 8" in dw, dw
    # float32 runs on the fp32 core's kernels (test_cuda_igemm_fp32_bwd.py), float64 keeps the
    # general kernel, the tensor cores' dtype rule named.
    di, dw = notes(16, 64, 1, torch.float64)
    assert "takes float16 and bfloat16; got Double" in di and "got Double" in dw, (di, dw)
