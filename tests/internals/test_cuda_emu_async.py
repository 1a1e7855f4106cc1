"""cp.async (+ commit / wait groups) and ldmatrix in the CUDA emulator, against the PTX ISA's
definitions computed here: a 3-stage cp.async pipeline of XOR-swizzled 16 x 16 b16 tiles read with
ldmatrix .x1/.x2/.x4 (.trans), as the Hopper kernels stage their operands
(csrc/testing/cuda_emu/planted/staged_tile.cu), and the bugs such a pipeline can hide, each of
which the emulator must catch: a read before cp.async.wait_group, two rows swizzled onto one
slot, misaligned or non-shared addresses.
"""

import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import EMU_DIR, emulator, load_testing_ops

pytestmark = pytest.mark.cuda_emu

KERNEL = os.path.join(EMU_DIR, "planted", "staged_tile.cu")
TILES = 5  # more than the 3 stages: the ring wraps around


@pytest.fixture(autouse=True)
def emu():
    emulator.load()
    emulator.set_order("forward", 0)


def tiles(n=TILES, seed=0):
    """Random 16-bit patterns, never 0xFFFF (the fill of a shared byte nobody wrote)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 0x7FFF, (n, 16, 16), dtype=torch.int16, generator=g)


def staged(x, bug="none", num=4, trans=False, copy_bytes=16, valid_cols=16):
    y, early = torch.ops.cnnkern_emu._emu_staged_tile(bug, x, num, trans, copy_bytes, valid_cols)
    return y.to(torch.int64) & 0xFFFFFFFF, early


def ptx_fragments(x, num, trans, valid_cols=16):
    """PTX ISA, ldmatrix: matrix i is the 8 x 8 block the kernel addresses (rows 8 (i % 2),
    columns 8 (i / 2)); lane t's register i holds its elements (t / 4, 2 (t % 4)) in the low
    half and (t / 4, 2 (t % 4) + 1) in the high half, of the transpose with .trans."""
    bits = x.to(torch.int64) & 0xFFFF
    bits[..., valid_cols:] = 0  # zero-filled by the copies' src-size
    lane = torch.arange(32)
    group, col = lane // 4, 2 * (lane % 4)
    out = torch.empty(x.shape[0], 32, num, dtype=torch.int64)
    for i in range(num):
        m = bits[:, (i % 2) * 8:(i % 2) * 8 + 8, (i // 2) * 8:(i // 2) * 8 + 8]
        if trans:
            m = m.transpose(1, 2)
        out[:, :, i] = m[:, group, col] | (m[:, group, col + 1] << 16)
    return out


def line_of(snippet):
    with open(KERNEL) as f:
        lines = [i + 1 for i, line in enumerate(f.read().splitlines()) if snippet in line]
    assert len(lines) == 1, (snippet, lines)
    return f"staged_tile.cu:{lines[0]}"


@pytest.mark.parametrize("copy_bytes", [16, 8, 4, 0], ids=["ca16", "ca8", "ca4", "cg16"])
@pytest.mark.parametrize("trans", [False, True], ids=["", "trans"])
@pytest.mark.parametrize("num", [1, 2, 4], ids=["x1", "x2", "x4"])
def test_staged_tiles_read_with_ldmatrix_give_the_ptx_fragments(num, trans, copy_bytes):
    x = tiles()
    expected = ptx_fragments(x, num, trans)
    before = emulator.stats()
    for order in emulator.ORDERS:
        emulator.set_order(order, 11)
        y, _ = staged(x, num=num, trans=trans, copy_bytes=copy_bytes)
        assert torch.equal(y, expected), order
    after = emulator.stats()
    copies_per_tile = 32 * (16 // (copy_bytes or 16))
    assert after["ldmatrices"] - before["ldmatrices"] == 3 * TILES
    assert after["cp_asyncs"] - before["cp_asyncs"] == 3 * TILES * copies_per_tile


@pytest.mark.parametrize("valid_cols", [0, 3, 11])
@pytest.mark.parametrize("copy_bytes", [16, 8, 4, 0], ids=["ca16", "ca8", "ca4", "cg16"])
def test_src_size_below_the_copy_size_zero_fills_the_rest(copy_bytes, valid_cols):
    x = tiles(seed=valid_cols)
    y, _ = staged(x, num=4, copy_bytes=copy_bytes, valid_cols=valid_cols)
    assert torch.equal(y, ptx_fragments(x, 4, False, valid_cols))
    assert not torch.equal(y, ptx_fragments(x, 4, False))


def test_ldmatrix_x4_of_a_16x16_tile_is_the_mma_m16n8k16_a_fragment():
    """What the kernels rely on, checked against the mma fragment tables the existing kernels
    use (cnnkern_testing.mma_fragments): register q of lane t holds A elements 2q and 2q + 1."""
    x = tiles(n=1)
    y, _ = staged(x, num=4)
    rc = torch.tensor(load_testing_ops().mma_fragments("m16n8k16", "a")).view(32, 8, 2)
    bits = x[0].to(torch.int64) & 0xFFFF
    elems = bits[rc[..., 0], rc[..., 1]]  # (lane, element)
    assert torch.equal(y[0], elems[:, 0::2] | (elems[:, 1::2] << 16))


# --- Planted bugs --------------------------------------------------------------------------------


def fails(bug, **kw):
    with pytest.raises(RuntimeError) as e:
        staged(tiles(), bug, **kw)
    return str(e.value)


@pytest.mark.parametrize("bug", ["missing_wait", "shallow_wait"])
def test_missing_wait_group_fails_at_the_ldmatrix_naming_the_copy(bug):
    """No wait, or wait_group<2> where the 3-stage ring needs wait_group<1>: with tiles 0 and 1
    committed, wait_group 2 lands neither, so tile 0 is read in flight (wait_group 1 lands
    tile 0 alone: the correct kernel passes above, in every thread order)."""
    msg = fails(bug, trans=True)
    ldmatrix_line = line_of("ldmatrix<N, Trans>(regs, addr)")
    assert "ldmatrix at testing/cuda_emu/planted/" + ldmatrix_line in msg, msg
    assert "cp.async at testing/cuda_emu/planted/" + line_of("cp_async_ca<16>(dst") in msg, msg
    assert "has not waited for its group" in msg, msg


@pytest.mark.skipif(emulator.default_flavour() == "asan",
                    reason="AddressSanitizer stops the premature load itself (the next test)")
def test_read_before_wait_reads_the_fill_not_the_data():
    """A plain load of a copy's destination before the wait reads 0xFF bytes (on a GPU: whatever
    was there); the rest of the kernel is correct."""
    x = tiles()
    y, early = staged(x, "read_before_wait")
    assert torch.equal(y, ptx_fragments(x, 4, False))
    assert early.item() == float(0xFFFF) != float(x[0, 0, 0].item() & 0xFFFF)


def test_two_rows_swizzled_onto_one_slot_fail_at_the_second_copy():
    msg = fails("colliding_swizzle")
    copy_line = line_of("cp_async_ca<16>(dst")
    assert "cp.async.ca into" in msg and "overlaps the pending destination" in msg, msg
    assert msg.count(copy_line) == 2, msg  # the faulting copy and the one it collides with


def test_a_read_that_skips_the_swizzle_gets_wrong_fragments():
    """Written through the swizzle, read row-major: the rows whose chunks the swizzle moved
    (rows 4-7 and 12-15 of a 32-byte row) come back from the other chunk."""
    x = tiles()
    y, _ = staged(x, "unswizzled_read", num=4)
    expected = ptx_fragments(x, 4, False)
    wrong = (y != expected).any(dim=(0, 2))  # per lane
    group = torch.arange(32) // 4  # the row within each 8 x 8 matrix
    assert torch.equal(wrong, group >= 4), wrong


@pytest.mark.parametrize("bug,thread,snippet,text", [
    ("misaligned_ldmatrix", 3, "ldmatrix<N, Trans>(regs, addr)", "is not 16-byte aligned"),
    ("ldmatrix_from_global", 0, "ldmatrix<N, Trans>(regs, addr)",
     "is not 16 bytes inside the block's shared memory"),
    ("misaligned_cp_async", 5, "cp_async_ca<16>(dst",
     "the source 0x[0-9a-f]+ is not aligned to the cp-size, 16 bytes"),
])
def test_bad_addresses_fail_naming_the_thread_and_line(bug, thread, snippet, text):
    msg = fails(bug)
    assert "an illegal instruction was encountered" in msg, msg
    assert re.search(text, msg), msg
    assert f"thread ({thread},0,0)" in msg and line_of(snippet) in msg, msg


def test_read_before_wait_stops_under_asan_at_the_kernel_line():
    """In a child process with the AddressSanitizer build: the pending destination is poisoned,
    so the premature load stops with a report naming the kernel's line."""
    code = (f"import sys; sys.path.insert(0, {EMU_DIR!r}); import emulator, torch\n"
            "emulator.load('asan')\n"
            "torch.ops.cnnkern_emu._emu_staged_tile('read_before_wait', "
            "torch.zeros(3, 16, 16, dtype=torch.int16), 4, False, 16, 16)\n"
            "print('no error')\n")
    env = dict(os.environ, **emulator.build.runtime_env("asan"))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=1800)
    assert res.returncode != 0 and "no error" not in res.stdout, res.stdout + res.stderr[-3000:]
    assert "AddressSanitizer: use-after-poison" in res.stderr, res.stderr[-3000:]
    assert "READ of size 2" in res.stderr, res.stderr[-3000:]
    assert line_of("*a.early = ") in res.stderr, res.stderr[-3000:]
