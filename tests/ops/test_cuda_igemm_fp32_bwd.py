"""The float32 backward passes on the fp32 GEMM core behind CUDA algo "im2col" (TF32 off;
core/igemm_fp32_bwd.h): grad-input with stride 1 as the fp32 forward kernel on the flipped,
regrouped weight (any groups); grad-weight on its own kernel (conv2d_igemm_fp32_wgrad.cu:
dW[Kg x CRS] = dY[Kg x pixels] * windows[pixels x CRS], both operands gathered k-fastest by
4-byte cp.async, split-K over the pixels where the grid is under a wave). Every case is judged
against torch's float64 grad-input / grad-weight of the same float32 operands, within fp32
accumulation (n terms: n + 1 units of 2^-24 of the sum of |terms|) plus half an ulp of the
result; a lost, doubled, misplaced or unflipped term moves a result by about a term, far past
that bound.

Cases cover each kernel's edges: two tiles along either GEMM dimension, the last partial,
padding 0 / 1 / the kernel's reach, asymmetric stride, padding and dilation, groups and
depthwise, 1x1 and 5x5 / 7x7, one-pixel planes, fewer than 8 pixels per image (grad-weight's
pixel walk crosses images inside a k-tile), C/groups*R*S a multiple of 4 or not (float4 or
scalar stores), split-K in 2 and in 8 slices; and the shapes and settings that keep the general
kernel (stride 2 grad-input, padding past the reach, TF32 allowed, CNNKERN_IGEMM_SIMT=1). In the
emulator the engine's counters prove which kernel ran, with how many blocks and copies."""

import os
import subprocess
import sys
import zlib

import pytest
import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

import cnnkern
from conftest import EMU_DIR, emulator, load_testing_ops
from igemm_tc_cases import sm_count  # noqa: F401 (a fixture)

BM = BN = 128
NARROW_BM = 64  # the narrow tile's rows (grad-input: the forward's schedule; grad-weight's plan)
BK = 8
THREADS = 256
COPIES = 8  # cp.async per thread and k-tile: 4 of each operand (the 128-row tile)


def cdiv(a, b):
    return -(-a // b)


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class Case:
    def __init__(self, id, N, C, H, W, K, R, S, stride=1, padding=0, dilation=1, groups=1,
                 sms=132, path="core"):
        self.id, self.N, self.C, self.H, self.W, self.K, self.R, self.S = id, N, C, H, W, K, R, S
        self.stride, self.padding = pair(stride), pair(padding)
        self.dilation, self.groups = pair(dilation), groups
        self.sms = sms    # the SM count the emulated device reports
        self.path = path  # "core" (the fp32 core's kernel) or "general"

    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def out_hw(self):
        return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, p, d, s in zip(
            (self.H, self.W), (self.R, self.S), self.padding, self.dilation, self.stride))

    def args(self):
        return (list(self.stride), list(self.padding), list(self.dilation), self.groups,
                "im2col")


DGRAD = [
    # The forward on dY: M = C = 136 (2 row tiles), N = 2*9*9 = 162 (2 column tiles),
    # reduction K*R*S = 144 (18 k-tiles).
    Case("3x3_pad1_two_tiles", 2, 136, 9, 9, 16, 3, 3, padding=1),
    Case("3x3_pad0_rect", 2, 5, 7, 8, 12, 3, 3),
    Case("dil_asym", 1, 7, 10, 9, 6, 3, 2, padding=(2, 1), dilation=(2, 3)),
    Case("1x1", 3, 12, 4, 5, 20, 1, 1),
    Case("groups3", 2, 12, 6, 5, 9, 3, 3, padding=1, groups=3),
    Case("depthwise_5x5", 1, 6, 8, 8, 6, 5, 5, padding=2, groups=6),
    Case("one_pixel_pad1", 5, 8, 1, 1, 9, 3, 3, padding=1),
    Case("7x7_pad3", 1, 9, 9, 9, 16, 7, 7, padding=3),
    Case("stride2", 2, 6, 9, 9, 8, 3, 3, stride=2, padding=1, path="general"),
    Case("stride_1x2", 1, 4, 6, 8, 5, 3, 3, stride=(1, 2), padding=1, path="general"),
    Case("pad_past_reach", 1, 4, 6, 6, 5, 3, 3, padding=3, path="general"),
]

WGRAD = [
    # Kg = 136 (2 row tiles), CRS = 144 (2 column tiles), 162 pixels (21 k-tiles, no split).
    Case("3x3_pad1_two_tiles", 2, 16, 9, 9, 136, 3, 3, padding=1),
    Case("stride2_odd", 2, 3, 11, 13, 8, 3, 3, stride=2, padding=1),
    Case("dil_asym", 1, 5, 10, 9, 7, 3, 2, stride=(1, 2), padding=(2, 0), dilation=(2, 3)),
    # 2x3 = 6 pixels per image, then 1: a k-tile's 8 pixels span 2 or 8 images.
    Case("six_pixel_images", 5, 8, 2, 3, 9, 3, 3, padding=1),
    Case("one_pixel_images", 11, 4, 1, 1, 6, 3, 3, padding=1),
    Case("groups3", 2, 12, 6, 5, 6, 3, 3, padding=1, groups=3),
    Case("depthwise_5x5_s3", 1, 6, 8, 8, 6, 5, 5, stride=3, padding=2, groups=6),
    Case("1x1_float4_stores", 3, 12, 4, 4, 20, 1, 1),  # CRS = 12
    # 288 pixels = 36 k-tiles on 1 tile: 2 slices (at least 16 k-tiles each); on 1 SM, none.
    Case("split2", 2, 4, 12, 12, 8, 3, 3, padding=1),
    Case("split2_one_sm", 2, 4, 12, 12, 8, 3, 3, padding=1, sms=1),
    # 1024 pixels = 128 k-tiles, CRS = 147 (2 tiles): 8 slices of 16.
    Case("split8_7x7_s2", 4, 3, 31, 31, 16, 7, 7, stride=2, padding=3),
    # Every case above but the first has K/groups <= 64: the narrow 64-row tile. Its edges:
    # Kg = 64 fills it; Kg = 65 takes the 128-row tile again (one partial row tile), here with
    # 2 slices (288 pixels = 36 k-tiles); 72 = 64 + 8 likewise, no split, on 1 SM.
    Case("narrow_full_64", 2, 5, 7, 6, 64, 3, 3, padding=1),
    Case("wide_65_split2", 2, 4, 12, 12, 65, 3, 3, padding=1),
    Case("wide_72_one_sm", 1, 4, 7, 7, 72, 1, 1, sms=1),
    # The narrow tile with split-K over 2 column tiles and 2 groups: Kg = 40, CRS = 9*16 = 144;
    # 2 x 16*16 = 512 pixels = 64 k-tiles, 2*2 = 4 tiles -> 4 slices of 16.
    Case("narrow_groups2_split4", 2, 32, 16, 16, 80, 3, 3, padding=1, groups=2),
]


def wgrad_bm(case):
    """make_wgrad_plan's tile rows: the narrow 64 for K/groups <= 64, else 128."""
    return NARROW_BM if case.K // case.groups <= NARROW_BM else BM


def wgrad_splits(case):
    """core/igemm_fp32_bwd.h make_wgrad_plan, restated: the split-K slices."""
    P, Q = case.out_hw()
    cg, kg = case.C // case.groups, case.K // case.groups
    tiles = cdiv(cg * case.R * case.S, BN) * cdiv(kg, wgrad_bm(case)) * case.groups
    k_tiles = cdiv(case.N * P * Q, BK)
    if tiles >= case.sms:
        return 1
    want = min(2 * case.sms // tiles, k_tiles // 16, 128)
    return 1 if want <= 1 else cdiv(k_tiles, cdiv(k_tiles, want))


def dgrad_splits(case):
    """grad-input's slices: the forward's schedule (igemm32::make_schedule, checked by hand in
    tests/internals/test_igemm_fp32_schedule.py) of the problem on dY, with the weight's K and
    C swapped and padding dil*(R-1) - pad."""
    P, Q = case.out_hw()
    pad = [d * (k - 1) - p for d, k, p in zip(case.dilation, (case.R, case.S), case.padding)]
    got, _ = load_testing_ops().igemm32_schedule(
        [case.N, case.K, P, Q], [case.C, case.K // case.groups, case.R, case.S], [1, 1], pad,
        list(case.dilation), case.groups, case.sms)
    return got[5]


def _operands(case, device):
    g = torch.Generator().manual_seed(zlib.crc32(case.id.encode()))
    P, Q = case.out_hw()
    x = torch.randn(case.N, case.C, case.H, case.W, generator=g)
    w = torch.randn(case.K, case.C // case.groups, case.R, case.S, generator=g) / 3
    dy = torch.randn(case.N, case.K, P, Q, generator=g)
    return x.to(device), w.to(device), dy.to(device)


def _within_bound(y, ref, absprod, terms):
    bound = (torch.finfo(torch.float32).eps / 2 * ref.abs() +
             (terms + 1) * 2.0 ** -24 * absprod + torch.finfo(torch.float32).tiny)
    err = (y.double().cpu() - ref).abs()
    assert (err - bound).max().item() <= 0, (
        f"max error {err.max().item():.3g}, bound there {bound.flatten()[err.argmax()].item():.3g}")


def _grad_input(case, dy, w, x_shape):
    y = torch.ops.cnnkern.conv2d_backward_input(dy, w, list(x_shape), *case.args())
    dy64, w64 = dy.double().cpu(), w.double().cpu()
    ref = conv2d_input(x_shape, w64, dy64, **case.kwargs())
    absprod = conv2d_input(x_shape, w64.abs(), dy64.abs(), **case.kwargs())
    _within_bound(y, ref, absprod, case.K // case.groups * case.R * case.S)
    return y


def _grad_weight(case, dy, x, w_shape):
    y = torch.ops.cnnkern.conv2d_backward_weight(dy, x, list(w_shape), *case.args())
    dy64, x64 = dy.double().cpu(), x.double().cpu()
    ref = conv2d_weight(x64, w_shape, dy64, **case.kwargs())
    absprod = conv2d_weight(x64.abs(), w_shape, dy64.abs(), **case.kwargs())
    P, Q = case.out_hw()
    _within_bound(y, ref, absprod, case.N * P * Q)
    return y


def _run(pass_, case, x, w, dy):
    return (_grad_input(case, dy, w, x.shape) if pass_ == "input"
            else _grad_weight(case, dy, x, w.shape))


def _counted(dev, fn):
    before = emulator.stats() if dev.emulated else None
    out = fn()
    d = {k: v - before[k] for k, v in emulator.stats().items()} if dev.emulated else None
    return out, d


def _check_counts(d, case, pass_):
    """The engine's counters against the kernel's grid: which kernel ran, and all its work."""
    if case.path == "general":  # the general kernel's SIMT path: no cp.async, no mma
        assert d["cp_asyncs"] == 0 and d["mmas"] == 0 and d["launches"] >= 1, d
        return
    cg, kg = case.C // case.groups, case.K // case.groups
    if pass_ == "input":  # the forward on dY: M = C/groups, N = N*H*W, reduction Kg*R*S
        bm = NARROW_BM if cg <= NARROW_BM else BM  # the forward's schedule
        tiles = cdiv(cg, bm) * cdiv(case.N * case.H * case.W, BN) * case.groups
        k_tiles, splits = cdiv(kg * case.R * case.S, BK), dgrad_splits(case)
        launches, blocks = (2 if splits > 1 else 1), tiles * splits
        copies = COPIES if bm == BM else COPIES - 2  # bm/32 weight copies, 4 patch copies
    else:  # M = K/groups, N = C/groups*R*S, reduction over the pixels
        P, Q = case.out_hw()
        bm = wgrad_bm(case)
        tiles = cdiv(kg, bm) * cdiv(cg * case.R * case.S, BN) * case.groups
        k_tiles, splits = cdiv(case.N * P * Q, BK), wgrad_splits(case)
        launches, blocks = (2 if splits > 1 else 1), tiles * splits
        # The narrow tile stages 64 rows of dY: 2 copies per thread, and its 4 of X.
        copies = COPIES if bm == BM else COPIES - 2
    assert d["launches"] == launches and d["blocks"] >= blocks and d["mmas"] == 0, d
    # Every k-tile lies in one slice: each tile's blocks take k_tiles k-tiles in all.
    assert d["cp_asyncs"] == tiles * k_tiles * THREADS * copies, d


PASSES = ([pytest.param("input", c, id=f"input-{c.id}") for c in DGRAD] +
          [pytest.param("weight", c, id=f"weight-{c.id}") for c in WGRAD])


@pytest.mark.parametrize("pass_,case", PASSES)
def test_backward_against_float64(pass_, case, dev, sm_count):
    sm_count(case.sms)
    x, w, dy = _operands(case, dev.device)
    y, d = _counted(dev, lambda: _run(pass_, case, x, w, dy))
    assert y.dtype == torch.float32 and y.shape == (x.shape if pass_ == "input" else w.shape)
    if dev.emulated:
        _check_counts(d, case, pass_)


@pytest.mark.parametrize("pass_,case", [("input", DGRAD[0]), ("weight", WGRAD[0])],
                         ids=lambda v: getattr(v, "id", v))
def test_channels_last_operands(pass_, case, dev):
    """channels_last grad_output / input / weight are read as NCHW copies: the same values."""
    x, w, dy = _operands(case, dev.device)
    cl = [t.contiguous(memory_format=torch.channels_last) for t in (x, w, dy)]
    assert torch.equal(_run(pass_, case, *cl), _run(pass_, case, x, w, dy))


@pytest.mark.parametrize("case", [WGRAD[8], WGRAD[10], WGRAD[12], WGRAD[14]],
                         ids=lambda c: c.id)
def test_split_k_is_deterministic(case, dev, sm_count):
    """The split-K slices are summed in a fixed order: the same bits under every thread and
    block order (the emulator changes its schedule between the runs)."""
    sm_count(case.sms)
    assert wgrad_splits(case) > 1
    x, w, dy = _operands(case, dev.device)
    runs = []
    for _ in range(3):
        runs.append(_grad_weight(case, dy, x, w.shape))
        dev.reorder()
    assert all(torch.equal(runs[0], r) for r in runs[1:])


@pytest.mark.parametrize("pass_,case", [("input", DGRAD[0]), ("weight", WGRAD[8])],
                         ids=lambda v: getattr(v, "id", v))
def test_tf32_keeps_the_general_kernel(pass_, case, dev):
    """TF32 allowed: float32's backward stays on the general kernel's mma.sync path."""
    if not dev.emulated:
        pytest.skip("which kernel ran is the emulator's counters alone")
    x, w, dy = _operands(case, dev.device)
    ops = torch.ops.cnnkern
    _, d = _counted(dev, lambda: ops.conv2d_backward_input(
        dy, w, list(x.shape), *case.args(), allow_tf32=True) if pass_ == "input" else
        ops.conv2d_backward_weight(dy, x, list(w.shape), *case.args(), allow_tf32=True))
    assert d["cp_asyncs"] == 0 and d["mmas"] > 0, d


def test_explain_names_the_backward_kernels(dev, sm_count):
    """explain() says which kernel each float32 backward pass of im2col runs."""
    sm_count(132)

    def notes(stride, dtype=torch.float32):
        x = torch.zeros(1, 16, 6, 6, dtype=dtype, device=dev.device)
        w = torch.zeros(64, 16, 3, 3, dtype=dtype, device=dev.device)
        ex = cnnkern.explain(x, w, padding=1, stride=stride, algo="im2col")

        def note(name):
            pass_ = next(p for p in ex.passes if p.name == name)
            return next(a for a in pass_.algorithms if a.name == "im2col").workspace
        return note("bwd_input"), note("bwd_weight")

    di, dw = notes(1)
    assert di.startswith("fp32 GEMM core kernel (the forward on the flipped") and \
        "unless TF32 is allowed" in di, di
    # CRS = 144: 2 tiles; 36 pixels = 5 k-tiles: too few to split.
    assert dw.startswith("fp32 GEMM core grad-weight kernel") and "2 tiles x 1 split)" in dw, dw
    di, dw = notes(2)
    assert "general implicit-GEMM kernel" in di, di
    assert dw.startswith("fp32 GEMM core grad-weight kernel"), dw
    di, dw = notes(1, torch.float64)
    assert not di.startswith("fp32") and not dw.startswith("fp32"), (di, dw)


@pytest.mark.cuda_work_in_child
def test_simt_switch_keeps_the_general_kernel(dev):
    """CNNKERN_IGEMM_SIMT=1 (read once per process: a child process) puts float32's backward
    back on the general kernel, for comparison: no cp.async in the emulator, the same values
    within the fp32 bound."""
    if not dev.emulated:
        pytest.skip("which kernel ran is the emulator's counters alone")
    code = (
        f"import sys; sys.path.insert(0, {EMU_DIR!r}); import emulator\n"
        "emulator.load(); emulator.CudaEmulation().__enter__()\n"
        "import torch, cnnkern\n"
        "from torch.nn.grad import conv2d_input, conv2d_weight\n"
        "torch.manual_seed(0)\n"
        "x = torch.randn(2, 24, 7, 6); w = torch.randn(16, 24, 3, 3) / 15\n"
        "g = torch.randn(2, 16, 7, 6)\n"
        "a = ([1, 1], [1, 1], [1, 1], 1, 'im2col')\n"
        "gi = torch.ops.cnnkern.conv2d_backward_input(g, w, list(x.shape), *a).double()\n"
        "gw = torch.ops.cnnkern.conv2d_backward_weight(g, x, list(w.shape), *a).double()\n"
        "ri = conv2d_input(x.shape, w.double(), g.double(), padding=1)\n"
        "rw = conv2d_weight(x.double(), w.shape, g.double(), padding=1)\n"
        "for o, r in ((gi, ri), (gw, rw)):\n"
        "    assert (o - r).abs().max() <= 1e-5 * r.abs().max(), (o - r).abs().max()\n"
        "assert emulator.stats()['cp_asyncs'] == 0, emulator.stats()\n"
        "print('ok')\n")
    env = dict(os.environ, CNNKERN_IGEMM_SIMT="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]
