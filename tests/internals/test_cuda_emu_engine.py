"""The CUDA emulator itself (csrc/testing/cuda_emu): that the project's kernels really run in it,
and that it catches each kind of GPU bug. Tiny kernels with one planted bug each
(csrc/testing/cuda_emu/planted/planted_bugs.cu) must fail with a message naming the place, or
give a result that no correct kernel gives; their correct twins must pass.
"""

import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import load_testing_ops, EMU_DIR, emulator

pytestmark = pytest.mark.cuda_emu

PLANTED = os.path.join(EMU_DIR, "planted", "planted_bugs.cu")


@pytest.fixture(autouse=True)
def emu():
    emulator.load()
    emulator.set_order("forward", 0)


def planted(bug, x, x2=None, out_numel=None):
    x2 = torch.zeros(1) if x2 is None else x2
    return torch.ops.cnnkern_emu._emu_planted(bug, x.contiguous(), x2.contiguous(),
                                              x.numel() if out_numel is None else out_numel)


def line_of(snippet):
    """The line of planted_bugs.cu holding `snippet` (the messages must name it): the one line
    that is exactly the snippet, else the one that contains it."""
    with open(PLANTED) as f:
        text = f.read().splitlines()
    lines = [i + 1 for i, line in enumerate(text) if line.strip() == snippet]
    lines = lines or [i + 1 for i, line in enumerate(text) if snippet in line]
    assert len(lines) == 1, (snippet, lines)
    return lines[0]


def in_every_order(fn):
    """fn() under each thread/block order the engine has: {order: result}."""
    out = {}
    for order in emulator.ORDERS:
        emulator.set_order(order, 7)
        out[order] = fn()
    return out


# --- The kernels under test run here --------------------------------------------------------


def test_the_project_kernels_run_in_the_emulator():
    """Under CudaEmulation the ops launch emulated kernels: block barriers, the grad-weight
    kernel's warp shuffles, and mma.sync for float16 (the tensor-core path) all execute."""
    x = torch.randn(2, 8, 9, 9, requires_grad=True)
    w = torch.randn(16, 8, 3, 3, requires_grad=True)
    before = emulator.stats()
    with emulator.CudaEmulation():
        cnnkern.conv2d(x, w, padding=1, algo="direct").sum().backward()  # fwd, dgrad, wgrad
        mid = emulator.stats()
        cnnkern.conv2d(x.half(), w.half(), padding=1, algo="im2col")
    after = emulator.stats()
    assert mid["launches"] - before["launches"] == 3
    assert mid["warp_collectives"] > before["warp_collectives"]  # wgrad's __shfl_down_sync
    assert after["mmas"] > mid["mmas"] and after["barriers"] > mid["barriers"]


def test_a_routed_op_matches_torch_and_a_cpu_only_op_is_left_alone():
    x, w = torch.randn(1, 3, 6, 6), torch.randn(4, 3, 3, 3)
    with emulator.CudaEmulation():
        before = emulator.stats()["launches"]
        y = cnnkern.conv2d(x, w, padding=1, algo="winograd_f2")
        assert emulator.stats()["launches"] > before
        # A tests-only CPU op has no CUDA twin: it runs as it always does.
        plan = load_testing_ops().igemm_plan("wgrad", [1, 3, 6, 6], [4, 3, 3, 3], [1, 1], [1, 1],
                                             [1, 1], 1)
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1), rtol=1e-5, atol=1e-5)
    assert len(plan) == 9


def test_the_emulated_rules_are_the_cuda_rules():
    # CUDA's Winograd refuses a 5x5 kernel with its own reason, as the CPU one does.
    reason = emulator.why_not([1, 3, 8, 8], [4, 3, 5, 5], [1, 1], [2, 2], [1, 1], 1,
                              torch.float32, "winograd")
    assert "3x3" in reason
    assert set(emulator.algorithms()) == {"direct", "im2col", "winograd", "winograd_f2"}


# --- Planted bugs ------------------------------------------------------------------------------


@pytest.mark.skipif(emulator.default_flavour() == "tsan",
                    reason="a deliberate race: ThreadSanitizer would stop the run (see below)")
def test_missing_barrier_gives_results_that_depend_on_the_thread_order():
    x = torch.arange(64, dtype=torch.float32)
    expected = torch.roll(x, -1)
    good = in_every_order(lambda: planted("with_barrier", x))
    bad = in_every_order(lambda: planted("missing_barrier", x))
    for order in emulator.ORDERS:
        assert torch.equal(good[order], expected), order
        # Reads of the neighbour's slot before it was written: the 0xFF fill (NaN).
        assert not torch.equal(bad[order], expected), order
    # ... and which reads come too early depends on the order: a race.
    assert not torch.equal(bad["forward"].isnan(), bad["reverse"].isnan())


def test_3d_indexing_warp_collectives_and_atomics():
    """Against the CUDA Programming Guide's definitions, computed here: 3-D grid and block
    indices, __shfl_xor_sync / __shfl_up_sync / __shfl_sync, __ballot_sync, __any_sync,
    __all_sync, __syncwarp and atomicAdd, in every thread order."""
    n = 384
    x = torch.randint(-12, 13, (n,)).float()  # integers: every sum exact in any order
    warps = x.view(-1, 32)
    expected = torch.cat([
        torch.arange(n, dtype=torch.float32),
        warps.sum(1, keepdim=True).expand(-1, 32).reshape(-1),
        warps.cumsum(1).reshape(-1),
        warps[:, 5:6].expand(-1, 32).reshape(-1),
        (warps > 0).sum(1, keepdim=True).expand(-1, 32).reshape(-1).float(),
        ((warps > 10).any(1, keepdim=True).float() + 2 * (warps > -10).all(1, keepdim=True).float())
        .expand(-1, 32).reshape(-1),
        x.sum().view(1),
    ])
    for order, y in in_every_order(lambda: planted("engine_features", x, out_numel=6 * n + 1)).items():
        y[6 * n] += 7  # the output starts at -7: the atomics add to it
        assert torch.equal(y, expected), order


def test_dynamic_shared_memory_is_the_launch_size_per_block():
    x = torch.arange(96, dtype=torch.float32)
    for order in emulator.ORDERS:
        emulator.set_order(order, 3)
        assert torch.equal(planted("dynamic_shared_reverse", x), x.flip(0)), order


def test_divergent_syncthreads_fails_the_launch_naming_both_barriers():
    with open(PLANTED) as f:
        src = f.read()
    body = src[src.index("divergent_barrier_kernel"):]
    start = src.count("\n", 0, src.index("divergent_barrier_kernel")) + 1
    lines = [start + i for i, line in enumerate(body.splitlines()[:12]) if "__syncthreads()" in line]
    assert len(lines) == 2
    with pytest.raises(RuntimeError) as e:
        planted("divergent_barrier", torch.zeros(64))
    msg = str(e.value)
    assert "divergent __syncthreads" in msg
    for line in lines:
        assert f"planted_bugs.cu:{line}" in msg, msg


def test_shuffle_with_lanes_missing_fails_naming_the_absent_lane():
    with pytest.raises(RuntimeError) as e:
        planted("shuffle_missing_lanes", torch.arange(32, dtype=torch.float32))
    msg = str(e.value)
    assert "__shfl_down_sync" in msg and "lane 16" in msg and "has exited" in msg, msg
    assert f"planted_bugs.cu:{line_of('v = __shfl_down_sync')}" in msg, msg


def test_launch_above_launch_bounds_fails_naming_the_bound():
    ok = planted("within_launch_bounds", torch.zeros(1), out_numel=256)
    assert torch.equal(ok[:128], torch.ones(128)) and torch.equal(ok[128:], torch.full((128,), -7.0))
    with pytest.raises(RuntimeError) as e:
        planted("above_launch_bounds", torch.zeros(1), out_numel=256)
    msg = str(e.value)
    assert "too many resources requested for launch" in msg
    assert "256 threads per block, above the kernel's __launch_bounds__(128)" in msg, msg
    assert re.search(r"bounded_kernel launched at testing/cuda_emu/planted/planted_bugs.cu:\d+", msg)


def test_shared_memory_over_the_block_budget_fails_the_launch_unless_opted_in():
    """A block gets 48 KiB of static + dynamic shared memory unless its kernel opted in with
    cudaFuncSetAttribute(MaxDynamicSharedMemorySize); then its dynamic part may reach the
    opt-in. The planted kernel declares 2 KiB statically and takes 4 x.numel() bytes."""
    def x_of(kib):
        return torch.arange(kib * 1024 // 4, dtype=torch.float32)

    x = x_of(46)  # 2 + 46 = 48 KiB: exactly the default budget
    assert torch.equal(planted("shared_within_default", x, out_numel=64), 3 * x[:64])
    with pytest.raises(RuntimeError) as e:
        planted("shared_above_default", x_of(47), out_numel=64)
    msg = str(e.value)
    assert "invalid argument" in msg, msg
    assert "2048 bytes of static __shared__ memory + 48128 bytes of dynamic" in msg, msg
    assert "without cudaFuncSetAttribute" in msg, msg
    assert f"planted_bugs.cu:{line_of('__shared__ float stat[512];')}" in msg, msg

    x = x_of(100)
    assert torch.equal(planted("shared_opted_in", x, out_numel=64), 3 * x[:64])
    with pytest.raises(RuntimeError) as e:
        planted("shared_above_opt_in", x_of(65), out_numel=64)
    msg = str(e.value)
    assert "66560 bytes of dynamic shared memory exceed the kernel's" in msg, msg
    assert "MaxDynamicSharedMemorySize of 65536 bytes" in msg, msg


def test_read_of_never_written_shared_memory_reads_the_fill_pattern():
    x = torch.arange(64, dtype=torch.float32)
    y = planted("unwritten_shared", x)
    assert torch.equal(y[:32], x[:32])
    assert y[32:].isnan().all(), y  # 0xFF bytes: a NaN, never a plausible zero


@pytest.mark.parametrize("bug", ["mma_correct", "mma_swapped_fragment"])
def test_mma_fragment_layout_is_checked_against_the_ptx_tables(bug):
    """The emulated mma.sync places fragment elements by the PTX ISA's tables (mma.cpp), so a
    kernel whose A fragment has two registers swapped computes a wrong product."""
    a = torch.randn(16, 16).half().float()
    bt = torch.randn(8, 16).half().float()
    d = planted(bug, a, bt, out_numel=128).view(16, 8)
    ref = a.double() @ bt.double().T
    rel = ((d.double() - ref).abs().max() / ref.abs().max()).item()
    if bug == "mma_correct":
        assert rel < 1e-6, rel
    else:
        assert rel > 0.1, rel


@pytest.mark.parametrize("bug,snippet,access,kind", [
    ("read_past_end", "y[t] = x[t + 1];", "READ", "heap-buffer-overflow"),
    ("write_past_end", "y[t + 1] = x[t];", "WRITE", "heap-buffer-overflow"),
    # __shared__ variables are followed by poisoned redzones in the emulator's arena
    ("shared_past_end", "s[t] = 2.0f * x[t];", "WRITE", "(heap-buffer-overflow|use-after-poison)"),
])
def test_out_of_bounds_access_stops_under_asan_at_the_kernel_line(bug, snippet, access, kind):
    """In a child process with the AddressSanitizer build: the access one element past a
    torch tensor (global memory) or past a __shared__ array stops with a report naming the
    kernel's line."""
    code = (f"import sys; sys.path.insert(0, {EMU_DIR!r}); import emulator, torch\n"
            "emulator.load('asan')\n"
            f"n = {64 if bug == 'shared_past_end' else 32}\n"
            f"torch.ops.cnnkern_emu._emu_planted({bug!r}, torch.ones(n), torch.zeros(1), n)\n"
            "print('no error')\n")
    env = dict(os.environ, **emulator.build.runtime_env("asan"))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode != 0 and "no error" not in res.stdout, res.stdout + res.stderr[-3000:]
    assert re.search(f"AddressSanitizer: {kind}", res.stderr), res.stderr[-3000:]
    assert f"{access} of size 4" in res.stderr, res.stderr[-3000:]
    assert f"planted_bugs.cu:{line_of(snippet)}" in res.stderr, res.stderr[-3000:]


@pytest.mark.skipif(emulator.default_flavour() != "tsan",
                    reason="ThreadSanitizer runs only: bash scripts/cuda_emu.sh tsan")
def test_missing_barrier_is_a_race_for_thread_sanitizer():
    """Under ThreadSanitizer the missing barrier is a data race by happens-before, whatever the
    order the threads happened to run in: the report names the store and the early load."""
    code = (f"import sys; sys.path.insert(0, {EMU_DIR!r}); import emulator, torch\n"
            "emulator.load('tsan')\n"
            "torch.ops.cnnkern_emu._emu_planted('missing_barrier', torch.arange(64.), "
            "torch.zeros(1), 64)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, env=dict(os.environ, **emulator.build.runtime_env("tsan")))
    assert "ThreadSanitizer: data race" in res.stderr, res.stderr[-3000:]
    for snippet in ("s[t] = x[t];", "y[t] = s[(t + 1) % kThreads];"):
        assert f"planted_bugs.cu:{line_of(snippet)}" in res.stderr, res.stderr[-3000:]
    # ... and the same kernel with its barrier is clean.
    clean = subprocess.run([sys.executable, "-c", code.replace("missing_barrier", "with_barrier")],
                           capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, **emulator.build.runtime_env("tsan")))
    assert clean.returncode == 0 and "ThreadSanitizer" not in clean.stderr, clean.stderr[-3000:]


def test_trap_fails_the_launch_and_the_engine_carries_on():
    """A kernel that traps (the mma path does on a pre-sm_80 build) fails its launch naming
    the thread and line; the threads it left suspended do not disturb the next launch."""
    with pytest.raises(RuntimeError) as e:
        planted("trap", torch.zeros(64))
    msg = str(e.value)
    assert "an illegal instruction was encountered" in msg and "__trap() called" in msg, msg
    assert "thread (5,0,0)" in msg and f"planted_bugs.cu:{line_of('__trap();')}" in msg, msg
    y = planted("with_barrier", torch.arange(64, dtype=torch.float32))
    assert torch.equal(y, torch.roll(torch.arange(64, dtype=torch.float32), -1))
