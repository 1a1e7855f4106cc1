"""The fused CUDA Winograd kernel (csrc/cuda/conv2d_winograd_fused.cu: input transform in the
tile loads, 36 or 16 GEMMs in registers, output transform in the epilogue), which "winograd" and
"winograd_f2" run for float32/float16/bfloat16 on CUDA (forward and grad-input), against
F.conv2d in float64, on the shapes that stress its block edges: tiles past the output's edge
(P, Q not multiples of m), padding 0, 1 and 2 (grad-input runs the turned problem, padding
2 - p), channels not multiples of the 4- or 8-channel chunk, output channels per group not
multiples of 32 (and not of 4: the 4-byte filter copies), more tiles than one block's 16,
batch > 1, groups, bias and ReLU. The same cases with CNNKERN_WINOGRAD_UNFUSED=1 keep the
unfused kernels tested. GPU and emulated (`dev`); the emulator also counts the launches and
blocks, worked out by hand below.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import assert_lowp_error_within, emulator

# F(4x4)'s float32 error is ~10x direct's (tests/ops/test_winograd.py); relative to the
# reference's largest value.
MAX_REL = {"winograd": 1e-4, "winograd_f2": 2e-5}
M_OF = {"winograd": 4, "winograd_f2": 2}

# (N, C, H, W, K, groups, padding): what each stresses
CASES = [
    (2, 5, 9, 9, 7, 1, 1),      # overhang (9 = 2*4 + 1), C % 4, K < 32 and K % 4 != 0
    (1, 8, 10, 7, 36, 1, 0),    # padding 0, two channel blocks (36 = 32 + 4), vector U copies
    (3, 3, 13, 11, 8, 1, 1),    # 3 images: more than 16 tiles, tiles spanning images
    (2, 6, 8, 9, 70, 2, 1),     # groups: Cg 3, Kg 35 (two blocks of 32, 4-byte U copies)
    (1, 12, 6, 6, 12, 12, 2),   # depthwise, padding 2 (grad-input: padding 0)
]


def _ids(c):
    return "N{}C{}H{}W{}K{}g{}p{}".format(*c)


def _tensors(case, dtype=torch.float32):
    N, C, H, W, K, g, pad = case
    x = torch.randn(N, C, H, W)
    w = torch.randn(K, C // g, 3, 3) / math.sqrt(9 * C // g)
    b = torch.randn(K)
    return x.to(dtype), w.to(dtype), b.to(dtype)


def _close(got, ref, algo):
    err = (got.double() - ref).abs().max().item()
    assert err <= MAX_REL[algo] * max(1.0, ref.abs().max().item()), err


@pytest.fixture(params=["fused", "unfused"])
def path(request, monkeypatch):
    if request.param == "unfused":
        monkeypatch.setenv("CNNKERN_WINOGRAD_UNFUSED", "1")
    else:
        monkeypatch.delenv("CNNKERN_WINOGRAD_UNFUSED", raising=False)
    monkeypatch.delenv("CNNKERN_WINOGRAD_FILTER_CACHE", raising=False)
    return request.param


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("algo", ["winograd", "winograd_f2"])
def test_forward_backward_f32(algo, case, path, on_dev):
    N, C, H, W, K, g, pad = case
    x, w, b = _tensors(case)
    x.requires_grad_()
    go = torch.randn(N, K, H + 2 * pad - 2, W + 2 * pad - 2)
    y = cnnkern.conv2d(x, w, b, padding=pad, groups=g, algo=algo)
    y.backward(go)
    x64 = x.detach().double().requires_grad_()
    ref = F.conv2d(x64, w.double(), b.double(), padding=pad, groups=g)
    ref.backward(go.double())
    _close(y, ref, algo)
    _close(x.grad, x64.grad, algo)


@pytest.mark.parametrize("algo", ["winograd", "winograd_f2"])
def test_relu_epilogue(algo, path, on_dev):
    x, w, b = _tensors(CASES[0])
    y = torch.ops.cnnkern.conv2d_relu(x, w, b, [1, 1], [1, 1], [1, 1], 1, algo)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=1).relu()
    assert (y == 0).any() and (y > 0).any()
    _close(y, ref, algo)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES[:4], ids=_ids)
@pytest.mark.parametrize("algo", ["winograd", "winograd_f2"])
def test_half_types_transform_in_fp32(algo, case, dtype, path, on_dev):
    N, C, H, W, K, g, pad = case
    x, w, b = _tensors(case, dtype)
    y = cnnkern.conv2d(x, w, b, padding=pad, groups=g, algo=algo)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=pad, groups=g)
    theirs = F.conv2d(x.float(), w.float(), b.float(), padding=pad, groups=g).to(dtype)
    assert y.dtype == dtype
    # Rounded once from fp32: within a few times torch's own error (its dtype's rounding).
    assert_lowp_error_within(y, ref, theirs, dtype, 3.0, algo)


@pytest.mark.cuda_emu
@pytest.mark.parametrize("dev", ["cuda_emu"], indirect=True)
@pytest.mark.parametrize("algo", ["winograd", "winograd_f2"])
def test_one_fused_launch_with_the_grid_worked_by_hand(algo, dev, monkeypatch):
    monkeypatch.delenv("CNNKERN_WINOGRAD_UNFUSED", raising=False)
    monkeypatch.delenv("CNNKERN_WINOGRAD_FILTER_CACHE", raising=False)
    x, w, b = _tensors(CASES[3])  # N2 C6 8x9 K70 groups 2, padding 1: P 8, Q 9
    m = M_OF[algo]
    before = emulator.stats()
    y = cnnkern.conv2d(x, w, b, padding=1, groups=2, algo=algo)
    d = {k: v - before[k] for k, v in emulator.stats().items()}
    # tiles: F(4x4) 2 x (2 x 3) = 12 -> 1 block of 16; F(2x2) 2 x (4 x 5) = 40 -> 3 blocks;
    # x 2 blocks of 32 of Kg 35 x 2 groups. The filter transform: 70 x 3 items, 1 block of 256.
    tiles = 2 * math.ceil(8 / m) * math.ceil(9 / m)
    fused_blocks = math.ceil(tiles / 16) * 2 * 2
    assert (fused_blocks, d["launches"]) == ({4: 4, 2: 12}[m], 2)
    assert d["blocks"] == fused_blocks + 1
    threads = {4: 288, 2: 128}[m]
    assert d["threads"] == fused_blocks * threads + 256
    _close(y, F.conv2d(x.double(), w.double(), b.double(), padding=1, groups=2), algo)


@pytest.mark.parametrize("algo", ["winograd", "winograd_f2"])
def test_explain_names_the_path(algo, path, on_dev):
    x, w, _ = _tensors(CASES[0])
    fwd = next(p for p in cnnkern.explain(x, w, padding=1).passes if p.name == "fwd")
    a = next(s for s in fwd.algorithms if s.name == algo)
    m = M_OF[algo]

    def r64(n):  # each buffer is rounded up to 64 floats
        return (n + 63) // 64 * 64
    u = r64((m + 2) ** 2 * 7 * 5)  # the transformed filters: points x K x C
    if path == "fused":
        assert a.workspace_per_call == 4 * u
        assert a.workspace.startswith("fused kernel"), a.workspace
    else:
        # + V and M for the batch: points x (C 5 | K 7) x tiles (2 x 3 x 3 | 2 x 5 x 5)
        t = 2 * math.ceil(9 / m) ** 2
        v, mo = ((m + 2) ** 2 * c * t for c in (5, 7))
        assert a.workspace_per_call == 4 * (u + r64(v) + r64(mo))
        assert a.workspace.startswith("unfused kernels"), a.workspace
