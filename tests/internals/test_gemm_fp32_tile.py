"""The CUDA fp32 GEMM core's thread mappings (csrc/core/gemm_fp32_tile.h) on the CPU, through
torch.ops.cnnkern_testing.gemm32_slots / gemm32_edges: every output of the 128 x 128 tile owned
by exactly one thread, every element of a k-tile staged exactly once, and the shared-memory
traffic free of bank conflicts (32 banks of 4 bytes; a warp's 128-bit access is served a
quarter warp at a time, 8 threads x 16 bytes)."""

import pytest
import torch

from conftest import load_testing_ops

THREADS, BM, BK, LD = 256, 128, 8, 132  # LD: shared row of BM + 4 floats


def slots(what, per):
    return torch.tensor(load_testing_ops().gemm32_slots(what), dtype=torch.int64).view(THREADS, -1, per)


def test_register_tiles_cover_the_block_tile_once():
    rc = slots("register", 2)  # (thread, 64 outputs, (row, col))
    flat = rc[..., 0] * BM + rc[..., 1]
    assert torch.equal(flat.flatten().sort().values, torch.arange(BM * BM))


def test_register_tile_reads_are_float4_and_conflict_free():
    rc = slots("register", 2).view(THREADS, 8, 8, 2)
    rows, cols = rc[:, :, 0, 0], rc[:, 0, :, 1]  # (thread, 8)
    # Each thread's 8 rows (and columns) are two runs of 4 that start on a float4 boundary.
    for v in (rows, cols):
        runs = v.view(THREADS, 2, 4)
        assert torch.equal(runs - runs[..., :1], torch.arange(4).expand_as(runs))
        assert (runs[..., 0] % 4 == 0).all()
    for w in range(THREADS // 32):
        warp = slice(32 * w, 32 * w + 32)
        # A: a warp reads 2 distinct float4 per run (a broadcast, no conflict).
        assert rows[warp, 0].unique().numel() == 2
        # B: each quarter warp reads 8 distinct float4 that fill the 32 banks.
        for q in range(4):
            quarter = cols[32 * w + 8 * q: 32 * w + 8 * q + 8, 0]
            assert sorted(((quarter // 4) % 8).tolist()) == list(range(8))


@pytest.mark.parametrize("what,per_thread", [("vector", 1), ("scalar_mn", 4), ("scalar_k", 4)])
def test_a_k_tile_is_staged_once(what, per_thread):
    s = slots(what, 3)  # (thread, copy, (k, mn, smem))
    width = 4 if what == "vector" else 1  # elements per copy
    k, mn, off = s[..., 0], s[..., 1], s[..., 2]
    assert torch.equal(off, k * LD + mn)
    elems = (k * BM + mn).unsqueeze(-1) + torch.arange(width)
    assert torch.equal(elems.flatten().sort().values, torch.arange(BK * BM))
    assert s.shape[1] == per_thread
    if what == "vector":
        assert (off * 4 % 16 == 0).all()  # 16-byte copies land aligned


@pytest.mark.parametrize("what", ["scalar_mn", "scalar_k"])
def test_scalar_copies_coalesce_and_store_to_32_banks(what):
    s = slots(what, 3)
    contiguous = 1 if what == "scalar_mn" else 0  # mn or k runs along the lanes
    for w in range(THREADS // 32):
        for e in range(4):
            lanes = s[32 * w: 32 * w + 32, e]
            assert sorted((lanes[:, 2] % 32).tolist()) == list(range(32))
            run = lanes[:8, contiguous]
            assert torch.equal(run - run[0], torch.arange(8))


@pytest.mark.parametrize("mn,k,extent,K,expect", [
    (0, 0, 128, 8, 16), (124, 7, 128, 8, 16), (124, 7, 126, 8, 8), (124, 7, 125, 8, 4),
    (124, 7, 124, 8, 0), (0, 8, 128, 8, 0), (0, 3, 1, 4, 4)])
def test_vector_copy_bytes_stop_at_the_edges(mn, k, extent, K, expect):
    assert load_testing_ops().gemm32_edges(mn, k, extent, K, [0, 1, 4], 0)[0] == expect


@pytest.mark.parametrize("strides,addr,ok", [
    ([16, 1, 4], 0, 1), ([16, 1, 4], 16, 1), ([16, 1, 4], 4, 0), ([16, 1, 6], 0, 0),
    ([18, 1, 4], 0, 0), ([16, 4, 1], 0, 0)])
def test_vector_path_needs_contiguous_aligned_groups_of_4(strides, addr, ok):
    assert load_testing_ops().gemm32_edges(0, 0, 8, 8, strides, addr)[1] == ok
