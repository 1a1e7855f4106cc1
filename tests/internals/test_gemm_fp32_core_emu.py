"""The CUDA fp32 GEMM core (csrc/cuda/gemm_fp32_core.cuh, launched by cuda/gemm_fp32.cu) run in
the CUDA emulator through torch.ops.cnnkern_emu._emu_gemm_fp32, against torch.matmul in float64:
sizes that are not multiples of the 128 x 128 x 8 tile, batches, K under one k-tile and K = 0,
every staging path (16-byte copies, 4-byte copies along mn or along k, a misaligned base that
forces 4-byte copies) and both C layouts, under every thread/block order. The cp.async count
says which staging path ran. Winograd's use of the core is tested end to end by the Winograd
cases of tests/ops/test_cuda_gemm.py."""

import math

import pytest
import torch

from conftest import emulator

pytestmark = pytest.mark.cuda_emu


@pytest.fixture(autouse=True)
def emu():
    emulator.load()


def operand(batch, rows, cols, layout, gen):
    """A (batch, rows, cols) float32 view: "rows" (cols contiguous), "cols" (rows contiguous),
    or "offset" (rows contiguous, one element into its storage: no 16-byte alignment)."""
    if layout == "rows":
        return torch.randn(batch, rows, cols, generator=gen)
    t = torch.randn(batch * cols * rows + 1, generator=gen)
    start = 1 if layout == "offset" else 0
    return t[start:start + batch * cols * rows].view(batch, cols, rows).transpose(1, 2)


def check(a, b, c_transposed=False):
    c = torch.ops.cnnkern_emu._emu_gemm_fp32(a, b, c_transposed)
    ref = torch.matmul(a.double(), b.double())
    # fp32 rounding of K products and sums: |err| <= K * 2^-23 * (|a| @ |b|), with margin 2.
    bound = 2 * max(a.shape[2], 1) * 2.0 ** -23 * torch.matmul(a.double().abs(), b.double().abs())
    assert c.shape == ref.shape and c.dtype == torch.float32
    assert c.stride(1 if c_transposed else 2) == 1
    err = (c.double() - ref).abs()
    assert (err <= bound).all(), f"max err {err.max():.3g}, bound {bound.max():.3g}"
    return c


# (batch, M, K, N, A layout, B layout): A is (M, K), "cols" = m contiguous (the 16-byte path
# when M % 4 == 0); B is (K, N), "rows" = n contiguous (16 bytes when N % 4 == 0).
CASES = [
    pytest.param(2, 132, 21, 136, "cols", "rows", (1, 1), id="vec_both_odd_tiles"),
    pytest.param(3, 130, 13, 131, "cols", "rows", (4, 4), id="mn_contiguous_unaligned_strides"),
    pytest.param(2, 129, 17, 140, "rows", "cols", (4, 4), id="k_contiguous"),
    pytest.param(2, 136, 9, 132, "offset", "rows", (4, 1), id="misaligned_a"),
    pytest.param(2, 12, 9, 20, "cols", "offset", (1, 4), id="misaligned_b"),
    pytest.param(3, 7, 5, 9, "cols", "rows", (4, 4), id="k_under_one_tile"),
    pytest.param(1, 260, 24, 8, "cols", "rows", (1, 1), id="three_row_tiles"),
]


@pytest.mark.parametrize("batch,M,K,N,la,lb,copies", CASES)
@pytest.mark.parametrize("c_transposed", [False, True], ids=["c_rows", "c_cols"])
def test_core_matches_float64_matmul(batch, M, K, N, la, lb, copies, c_transposed):
    gen = torch.Generator().manual_seed(M * N + K)
    a, b = operand(batch, M, K, la, gen), operand(batch, K, N, lb, gen)
    before = emulator.stats()["cp_asyncs"]
    check(a, b, c_transposed)
    # Per thread and k-tile, 1 (16-byte) or 4 (4-byte) copies per operand.
    blocks = math.ceil(M / 128) * math.ceil(N / 128) * batch
    expect = blocks * 256 * math.ceil(K / 8) * sum(copies)
    assert emulator.stats()["cp_asyncs"] - before == expect


def test_integer_inputs_are_exact_in_every_order():
    # Small integers: every product and partial sum is exact in float32.
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(-4, 5, (2, 70, 33), generator=gen).float().transpose(1, 2).contiguous()
    a = a.transpose(1, 2)
    b = torch.randint(-4, 5, (2, 33, 129), generator=gen).float()
    ref = torch.matmul(a.double(), b.double()).float()
    for order in emulator.ORDERS:
        emulator.set_order(order, 5)
        assert torch.equal(torch.ops.cnnkern_emu._emu_gemm_fp32(a, b, False), ref)
    emulator.set_order("forward", 0)


def test_k_zero_writes_zeros():
    a, b = torch.randn(2, 5, 0), torch.randn(2, 0, 6)
    assert torch.equal(torch.ops.cnnkern_emu._emu_gemm_fp32(a, b, False), torch.zeros(2, 5, 6))


def test_bad_operands_are_refused_by_name():
    with pytest.raises(RuntimeError, match=r"a must be \(batch, M, K\) and b \(batch, K, N\)"):
        torch.ops.cnnkern_emu._emu_gemm_fp32(torch.randn(1, 2, 3), torch.randn(1, 4, 5), False)
    with pytest.raises(RuntimeError, match="a and b must be float32; got Double"):
        torch.ops.cnnkern_emu._emu_gemm_fp32(torch.randn(1, 2, 3).double(), torch.randn(1, 3, 5),
                                             False)
