"""The benchmarks' timing helper: seconds per call, with CUDA work waited for.

Written here rather than taken from torch.utils.benchmark: importing that imports
torch.utils.cpp_extension, which logs "No CUDA runtime is found" on every machine whose
CUDA_HOME has no CUDA runtime (the CPU machines), at the top of every run of `cnnkern`.
The method is torch's `blocked_autorange`: blocks of calls long enough that the clock's
resolution does not matter, run until `min_run_time` has passed; the median of the blocks.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, List

import torch


def _sync() -> None:
    """Waits for queued CUDA work; nothing to wait for when CUDA was never used."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _block(fn: Callable[[], object], calls: int) -> float:
    _sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync()
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], min_run_time: float) -> float:
    """Median seconds per call of fn() over blocks of calls, after one warm-up call. A block
    lasts at least max(1 ms, min_run_time / 20); blocks run until min_run_time has passed."""
    first = _block(fn, 1)  # warm-up: caches, allocator, lazy initialisation
    target = max(1e-3, min_run_time / 20)
    calls = max(1, int(target / max(first, 1e-9)))
    per_call: List[float] = []
    total = 0.0
    while total < min_run_time or not per_call:
        t = _block(fn, calls)
        total += t
        per_call.append(t / calls)
    return statistics.median(per_call)


def best_seconds(fn: Callable[[], object], repeats: int = 3, min_time: float = 0.0) -> float:
    """The fastest call after a warm-up call, of at least `repeats` calls and `min_time`
    seconds of them: a peak, as STREAM reports it. On a busy machine a short call is often
    held up by a thread waiting for a core; over a longer while some calls run undisturbed."""
    _block(fn, 1)
    times: List[float] = []
    while len(times) < repeats or sum(times) < min_time:
        times.append(_block(fn, 1))
    return min(times)
