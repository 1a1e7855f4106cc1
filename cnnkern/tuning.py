"""Autotuning: time every algorithm that can run a convolution, once per shape, and remember
the fastest (like torch.backends.cudnn.benchmark).

    cnnkern.autotune(True)            # on for the process (False turns it off)
    with cnnkern.autotuning():        # on inside the block only, for this thread
        model(x)
    cnnkern.autotune_save("tune.json"); cnnkern.autotune_load("tune.json")
    cnnkern.tuning.cache(), cnnkern.tuning.clear()

Only calls with algo="auto" are tuned. The key holds everything the choice depends on: the
device model, the CPU thread count, torch and cnnkern versions, dtype, memory layout, shapes,
convolution parameters and whether TF32 is allowed (cnnkern.backends); so a cache loaded on
another GPU or torch version re-tunes instead of reusing a stale choice. The cache is shared
by all threads behind a lock; the on/off switch is process-wide, and `autotuning()` blocks
override it per thread. While torch.compile traces (fake tensors, nothing to time) a cached
choice is used, else "auto".
"""

from __future__ import annotations

import json
import platform
import threading
import time
from typing import Callable, Dict, Optional

import torch

from . import backends as _backends
from ._switch import ThreadOverride, ThreadSwitch


_lock = threading.RLock()
_cache: Dict[str, str] = {}
# Process-wide, like torch.backends.cudnn.benchmark; `with autotuning():` blocks per thread.
_enabled = ThreadSwitch(False)

Timer = Callable[[Callable[[], object]], float]


def autotune(enabled: bool = True) -> None:
    """Turns autotuning on (or off) for the whole process."""
    _enabled.set(bool(enabled))


class autotuning(ThreadOverride):
    """`with cnnkern.autotuning():` turns autotuning on (or off) for this thread inside the
    block; other threads, and this one after the block, keep their setting."""

    switch = _enabled

    def __init__(self, enabled: bool = True):
        super().__init__(bool(enabled))


def enabled() -> bool:
    return _enabled.get()


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} x{torch.get_num_threads()} threads"


def _layout(t: torch.Tensor) -> str:
    if t.is_contiguous():
        return "nchw"
    if t.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    return "strided"


def cache_key(input, weight, bias, stride, padding, dilation, groups) -> str:
    from . import __version__

    return json.dumps([
        _device_name(input.device), torch.__version__, __version__, str(input.dtype),
        _layout(input), list(input.shape), list(weight.shape), bias is not None,
        list(stride), padding if isinstance(padding, str) else list(padding), list(dilation),
        groups, "tf32" if _backends.get_allow_tf32() else "exact",
    ])


def _default_timer(fn: Callable[[], object]) -> float:
    """Median of 5 runs after one warm-up, synchronising CUDA around each."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()
    times = []
    for _ in range(5):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def choose(input, weight, bias, stride, padding, dilation, groups,
           timer: Optional[Timer] = None) -> str:
    """The fastest algorithm for this call, timing the candidates on first sight.

    `timer(fn) -> seconds` can be replaced (tests stub it). Ties go to the algorithm listed
    first by cnnkern.algorithms(), so the choice is deterministic.
    """
    from .algo import algorithms, can_implement
    from .functional import conv2d

    key = cache_key(input, weight, bias, stride, padding, dilation, groups)
    with _lock:
        if key in _cache:
            return _cache[key]
        if torch.compiler.is_compiling():
            return "auto"
        candidates = [a for a in algorithms(input.device.type)
                      if can_implement(input, weight, bias, stride, padding, dilation, groups,
                                       algo=a)[0]]
        if not candidates:
            return "auto"  # the op then reports why nothing can run
        timer = timer or _default_timer
        with torch.no_grad():
            times = {a: timer(lambda a=a: conv2d(input, weight, bias, stride, padding, dilation,
                                                 groups, algo=a)) for a in candidates}
        best = min(candidates, key=lambda a: (times[a], candidates.index(a)))
        _cache[key] = best
        return best


def cache() -> Dict[str, str]:
    """A copy of the cache: {key: algorithm}."""
    with _lock:
        return dict(_cache)


def clear() -> None:
    with _lock:
        _cache.clear()


def save(path: str) -> None:
    with _lock:
        data = {"format": "cnnkern-autotune-1", "entries": dict(_cache)}
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def load(path: str) -> int:
    """Merges a saved cache; returns the number of entries read."""
    with open(path) as f:
        data = json.load(f)
    if data.get("format") != "cnnkern-autotune-1":
        raise ValueError(f"{path}: not a cnnkern autotune cache (format {data.get('format')!r})")
    with _lock:
        _cache.update(data["entries"])
    return len(data["entries"])
