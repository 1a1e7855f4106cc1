"""The XOR swizzle of the shared-memory tiles read with ldmatrix (csrc/core/smem_swizzle.h), run on
the CPU through torch.ops.cnnkern_testing.smem_swizzle: a bijection that keeps every element in its
row and every 16-byte chunk whole, and puts the 8 rows one ldmatrix phase reads into 8 distinct
16-byte bank groups (32 banks of 4 bytes: bank group = byte offset / 16 mod 8)."""

import pytest
import torch

from conftest import load_testing_ops

ROWS = 64


def offsets(row_chunks, rows=ROWS):
    """Element offsets of a b16 tile, (rows, row_chunks * 8)."""
    flat = load_testing_ops().smem_swizzle(row_chunks, rows)
    return torch.tensor(flat, dtype=torch.int64).view(rows, row_chunks * 8)


@pytest.mark.parametrize("row_chunks", [1, 2, 4, 8, 16])
def test_a_bijection_that_keeps_rows_and_chunks_whole(row_chunks):
    off = offsets(row_chunks)
    cols = row_chunks * 8
    assert torch.equal(off.flatten().sort().values, torch.arange(ROWS * cols))
    # Each row's elements stay in that row: a permutation of its own slots.
    rows = torch.arange(ROWS).view(-1, 1)
    assert torch.equal(off // cols, rows.expand(-1, cols))
    # A 16-byte chunk (8 elements) stays contiguous and in order: a 16-byte cp.async or an
    # ldmatrix row moves it whole.
    chunks = off.view(ROWS, row_chunks, 8)
    assert torch.equal(chunks - chunks[..., :1], torch.arange(8).expand_as(chunks))
    assert (chunks[..., 0] % 8 == 0).all()


@pytest.mark.parametrize("row_chunks", [1, 2, 4, 8, 16])
def test_the_8_rows_of_an_ldmatrix_phase_hit_8_bank_groups(row_chunks):
    off = offsets(row_chunks)
    bank_group = (off[:, ::8] * 2 // 16) % 8  # (rows, chunk): of each chunk's first byte
    for r0 in range(0, ROWS, 8):
        for c in range(row_chunks):
            groups = bank_group[r0:r0 + 8, c]
            assert len(set(groups.tolist())) == 8, (r0, c, groups)


@pytest.mark.parametrize("row_chunks", [2, 4, 8])
def test_without_the_swizzle_the_same_reads_conflict(row_chunks):
    """The property is not vacuous: a row-major tile of rows of 32 bytes or more puts the same
    8 rows into fewer than 8 bank groups."""
    plain = torch.arange(ROWS * row_chunks * 8).view(ROWS, -1)
    bank_group = (plain[:, ::8] * 2 // 16) % 8
    assert len(set(bank_group[0:8, 0].tolist())) < 8


def test_bad_arguments_name_the_value():
    with pytest.raises(RuntimeError, match="row_chunks must be 1, 2, 4, 8 or 16; got 3"):
        load_testing_ops().smem_swizzle(3, 8)
    with pytest.raises(RuntimeError, match="rows must be in"):
        load_testing_ops().smem_swizzle(2, -1)
