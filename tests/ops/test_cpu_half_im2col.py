"""float16 / bfloat16 through the CPU im2col forward without float32 copies of the tensors
(cpu/im2col/forward_io.h): the image converted while the GEMM's panels are packed, the weights
while they are packed, each output block rounded as it is stored (cpu/half/half_convert.h).

half -> float32 is exact, the GEMM is the float32 one and the output is rounded once, so the
result must be bitwise the float32 im2col on float32 copies rounded by torch, for every
instruction set (generic, avx2 with F16C, avx512_emulated's 16-wide steps on AVX2, avx512),
the three packing methods and batched small planes; and within K_LOWP x torch's own error against
float64. The rounding itself is checked on hand-picked ties, overflow, subnormals and NaN."""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import assert_lowp_error_within

K_LOWP = 3.0
DTYPES = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]
# (input shape, weight shape, conv2d kwargs): odd plane sizes leave conversion tails (not a
# multiple of 8 or 16 values), strided rows go through the gathered-then-converted path.
SHAPES = [
    pytest.param((2, 16, 7, 9), (24, 16, 3, 3), dict(padding=1), id="3x3_7x9"),
    pytest.param((1, 8, 15, 13), (12, 8, 3, 3), dict(padding=1, stride=2), id="3x3_s2"),
    pytest.param((2, 24, 5, 7), (16, 24, 1, 1), {}, id="1x1_s1"),  # float32 reads it in place
    pytest.param((1, 3, 40, 37), (8, 3, 7, 7), dict(padding=3, stride=2), id="7x7_s2_stem"),
    pytest.param((2, 8, 11, 9), (12, 4, 3, 3), dict(padding=(2, 1), dilation=(2, 1), groups=2),
                 id="dilated_groups"),
    # 3 images of 7x7 in one GEMM (CNNKERN_IM2COL_IMAGES=3 below): the gather packing
    pytest.param((3, 16, 7, 7), (20, 16, 3, 3), dict(padding=1), id="batch3_7x7"),
    # more output positions than one float32 output block (2048 per GEMM thread)
    pytest.param((1, 4, 70, 70), (6, 4, 3, 3), dict(padding=1), id="70x70_two_blocks"),
]


def _inputs(xs, ws, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    fan_in = ws[1] * ws[2] * ws[3]
    x = torch.randn(xs, generator=gen).to(dtype)
    w = (torch.randn(ws, generator=gen) / fan_in ** 0.5).to(dtype)
    b = torch.randn(ws[0], generator=gen).to(dtype)
    return x, w, b


@pytest.mark.parametrize("images", ["1", "3"])
@pytest.mark.parametrize("method", ["runs", "phases", "gather"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, ws, kw", SHAPES)
def test_half_forward_is_float32_forward_rounded_once(xs, ws, kw, dtype, method, images,
                                                      cpu_isa, monkeypatch):
    monkeypatch.setenv("CNNKERN_IM2COL_PACK", method)
    monkeypatch.setenv("CNNKERN_IM2COL_IMAGES", images)
    x, w, b = _inputs(xs, ws, dtype)
    got = cnnkern.conv2d(x, w, b, algo="im2col", **kw)
    assert got.dtype == dtype
    want = cnnkern.conv2d(x.float(), w.float(), b.float(), algo="im2col", **kw).to(dtype)
    assert torch.equal(got.view(torch.int16), want.view(torch.int16)), \
        f"{cpu_isa}: {(got.float() != want.float()).sum().item()} values differ"
    ref64 = F.conv2d(x.double(), w.double(), b.double(), **kw)
    assert_lowp_error_within(got, ref64, F.conv2d(x, w, b, **kw), dtype, K_LOWP)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_half_forward_without_bias_and_channels_last(dtype, threads, cpu_isa):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, w, _ = _inputs((2, 32, 20, 20), (40, 32, 3, 3), dtype, seed=1)
        x = x.contiguous(memory_format=torch.channels_last)
        got = cnnkern.conv2d(x, w, None, padding=1, algo="im2col")
        want = cnnkern.conv2d(x.float(), w.float(), None, padding=1, algo="im2col").to(dtype)
    finally:
        torch.set_num_threads(before)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got.view(torch.int16), want.view(torch.int16))


# Per dtype: (input value, bias) pairs whose float32 sum x * 1 + b is exact, so torch's
# rounding of that sum is the expected output: ties to even either way, overflow to inf,
# subnormal results, NaN and inf passed through. (No -0 + -0: the generic float32 GEMM starts
# its sums from +0, a property of the GEMM, not of the rounding.)
def _rounding_cases(dtype):
    eps = torch.finfo(dtype).eps  # the spacing above 1
    big = torch.finfo(dtype).max
    tiny = torch.finfo(dtype).smallest_normal
    pairs = [(1.0, eps / 2), (1.0 + eps, eps / 2), (-1.0 - eps, -eps / 2), (2.0, eps / 2),
             (1.0, eps / 4), (big, big), (-big, -big), (big, -big), (tiny, -tiny / 2),
             (tiny / 4, tiny / 8), (float("nan"), 1.0), (float("inf"), 1.0),
             (float("-inf"), 3.0), (3.0, float("nan"))]
    return pairs


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_rounding_ties_overflow_subnormals_nan(dtype, cpu_isa):
    """A 1x1 convolution with weight 1 and one bias per filter: output = x + b, computed in
    float32 exactly and rounded once; 7 x 9 = 63 positions leave conversion tails."""
    pairs = _rounding_cases(dtype)
    xs = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    bs = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    n = len(pairs)
    # Filter k reads channel k: grouped 1x1, weight 1.
    x = xs.view(1, n, 1, 1).expand(1, n, 7, 9).to(dtype).contiguous()
    b16 = bs.to(dtype)
    w = torch.ones(n, 1, 1, 1, dtype=dtype)
    got = cnnkern.conv2d(x, w, b16, groups=n, algo="im2col")
    exact = x.double() + b16.double().view(1, n, 1, 1)  # exact in float64 and in float32
    want = exact.float().to(dtype)
    assert torch.equal(got.isnan(), want.isnan())
    ok = ~want.isnan()
    assert torch.equal(got[ok].view(torch.int16), want[ok].view(torch.int16)), \
        [(pairs[i], got[0, i, 0, 0].item(), want[0, i, 0, 0].item()) for i in range(n)
         if not torch.equal(got[0, i].view(torch.int16), want[0, i].view(torch.int16))]


def test_half_forward_workspace_names_no_float32_copy():
    x, w = torch.randn(1, 64, 112, 112), torch.randn(64, 64, 3, 3)
    fwd = next(p for p in cnnkern.explain(x.bfloat16(), w.bfloat16(), padding=1).passes
               if p.name == "fwd")
    a = next(a for a in fwd.algorithms if a.name == "im2col")
    assert "no float32 copy of a tensor" in a.workspace and "float32 copies" not in a.workspace
    # a float32 block of 2048 positions per GEMM thread, not the 112 x 112 plane
    assert a.workspace_per_thread < 64 * 112 * 112 * 4
