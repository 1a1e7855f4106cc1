"""Autotuning: time every algorithm that can run a convolution, once per shape, and remember
the fastest (like torch.backends.cudnn.benchmark).

    cnnkern.autotune(True)            # on for the process (False turns it off)
    with cnnkern.autotuning():        # on inside the block only, for this thread
        model(x)
    cnnkern.autotune_save("tune.json"); cnnkern.autotune_load("tune.json")
    cnnkern.tuning.cache(), cnnkern.tuning.clear()

Only calls with algo="auto" are tuned. The algorithm chosen is pinned for every pass the call
runs: the op hands its `algo` to the backward ops autograd runs for it. So the tuner times
those passes, not the forward alone: the forward, plus the grad-input pass if the input
requires grad and the grad-weight pass if the weight does (while autograd records); a call
without grad is timed (and keyed) as a forward only. Choosing per pass would need an `algo`
per pass in the op's schema; "auto" (untuned) does choose per pass, in C++.

The key holds everything the choice depends on: the device model, the CPU thread count,
torch and cnnkern versions, dtype, memory layout, shapes, convolution parameters, whether TF32
is allowed (cnnkern.backends) and the passes timed; so a cache loaded on another GPU or torch
version re-tunes instead of reusing a stale choice. The cache is shared by all threads behind
a lock; the on/off switch is process-wide, and `autotuning()` blocks override it per thread.
While torch.compile traces (fake tensors, nothing to time) a cached choice is used, else
"auto"; so on tensors with no kernels to time (device "meta").
"""

from __future__ import annotations

import json
import platform
import threading
import time
from typing import Callable, Dict, Optional, Tuple

import torch

from . import algo as _algo
from . import backends as _backends
from ._switch import ThreadOverride, ThreadSwitch

_ops = torch.ops.cnnkern


_lock = threading.RLock()
_cache: Dict[str, str] = {}
# The seconds each candidate took when this process tuned a key ({key: {algorithm: s}}), for
# cnnkern.explain; entries loaded from a file have none.
_times: Dict[str, Dict[str, float]] = {}
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


def cpu_flags() -> frozenset:
    """The CPU's feature flags (Linux /proc/cpuinfo), empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(next((ln for ln in f if ln.startswith("flags")), "").split()[2:])
    except OSError:
        return frozenset()


def cpu_isa() -> str:
    """The vector ISA a CPU figure depends on: "AVX-512 (avx512_bf16, avx512_fp16)", "AVX2",
    "no AVX2" -- the machines this project runs on differ (DESIGN.md), so every CPU figure is
    printed beside it."""
    flags = cpu_flags()
    if not flags:
        return "unknown ISA"
    if "avx512f" in flags:
        extras = [x for x in ("avx512_bf16", "avx512_fp16") if x in flags]
        return "AVX-512" + (f" ({', '.join(extras)})" if extras else "")
    return "AVX2" if "avx2" in flags else "no AVX2"


def isa_choices() -> dict:
    """Which instruction set each CPU kernel family runs now, and why (csrc/cpu/common/cpu_isa.h):

        {"cpu": ..., "build": ..., "rule": "avx512", "source": ..., "calibration_ms": 3.1,
         "cache": "~/.cache/cnnkern/cpu_isa-<hash>.json", "cache_note": "",
         "families": {"gemm": {"isa": "avx2", "how": "measured", "candidates": [...],
                               "seconds": {"avx512": 4.1e-05, "avx2": 3.2e-05}}, ...}}

    "how" is "forced" (CNNKERN_CPU_ISA), "only" (one candidate on this CPU), "rule"
    (CNNKERN_ISA_CALIBRATION=0: AVX-512 on Intel, AVX2 elsewhere) or "measured" (each
    candidate's micro-kernel timed at first use, median seconds in "seconds", or read from the
    per-CPU-model cache file). Calling it runs the calibration if nothing has yet.
    """
    return json.loads(_ops.cpu_isa_report())


def describe_isa_choice(family: str, choice: dict) -> str:
    """One family's entry of isa_choices() in words, for explain()."""
    how = choice["how"]
    if how == "measured":
        figures = ", ".join(f"{isa} {t * 1e6:.1f} us" for isa, t in choice["seconds"].items())
        return f"{family}: {choice['isa']} (measured, median of its probe: {figures})"
    why = {"forced": "forced by CNNKERN_CPU_ISA",
           "only": "the only candidate on this CPU",
           "rule": "rule, calibration off (CNNKERN_ISA_CALIBRATION=0)"}[how]
    return f"{family}: {choice['isa']} ({why})"


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


def pinned_passes(input: torch.Tensor, weight: torch.Tensor) -> Tuple[str, ...]:
    """The passes a conv call runs with the algorithm it is given ("fwd", "bwd_input",
    "bwd_weight"): the backward ones only where autograd records the call."""
    grad = torch.is_grad_enabled()
    return (("fwd",) + (("bwd_input",) if grad and input.requires_grad else ())
            + (("bwd_weight",) if grad and weight.requires_grad else ()))


def cache_key(input, weight, bias, stride, padding, dilation, groups) -> str:
    from . import __version__

    return json.dumps([
        _device_name(input.device), torch.__version__, __version__, str(input.dtype),
        _layout(input), list(input.shape), list(weight.shape), bias is not None,
        list(stride), padding if isinstance(padding, str) else list(padding), list(dilation),
        groups, "tf32" if _backends.get_allow_tf32() else "exact",
        "+".join(pinned_passes(input, weight)),
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


def _passes_fn(input, weight, bias, stride, padding, dilation, groups, passes):
    """run(algo): the call's passes by `algo`, through the ops themselves (no autograd); the
    backward passes take the forward's output as their grad_output."""
    x, w = input.detach(), weight.detach()
    b = None if bias is None else bias.detach()
    args = (stride, padding, dilation, groups)
    tf32 = _backends.get_allow_tf32()

    def run(algo):
        out = _ops.conv2d(x, w, b, *args, algo, tf32)
        if "bwd_input" in passes:
            _ops.conv2d_backward_input(out, w, list(x.shape), *args, algo, tf32)
        if "bwd_weight" in passes:
            _ops.conv2d_backward_weight(out, x, list(w.shape), *args, algo, tf32)
        return out

    return run


def choose(input, weight, bias, stride, padding, dilation, groups,
           timer: Optional[Timer] = None) -> str:
    """The fastest algorithm for this call's pinned passes, timing the candidates on first
    sight (see the module docstring).

    `timer(fn) -> seconds` can be replaced (tests stub it). Ties go to the algorithm listed
    first by cnnkern.algorithms(), so the choice is deterministic. A candidate whose backward
    cannot run (no kernel for that pass) is left out.
    """
    if input.device.type not in ("cpu", "cuda"):
        return "auto"  # no kernels to time (device "meta"): the op's own rule decides
    key = cache_key(input, weight, bias, stride, padding, dilation, groups)
    with _lock:
        if key in _cache:
            return _cache[key]
        if torch.compiler.is_compiling():
            return "auto"
        candidates = [a for a in _algo.algorithms(input.device.type)
                      if _algo.can_implement(input, weight, bias, stride, padding, dilation,
                                             groups, algo=a)[0]]
        timer = timer or _default_timer
        run = _passes_fn(input, weight, bias, stride, padding, dilation, groups,
                         pinned_passes(input, weight))
        times = {}
        with torch.no_grad():
            for a in candidates:
                try:
                    times[a] = timer(lambda a=a: run(a))
                except RuntimeError:
                    pass
        if not times:
            return "auto"  # the op then reports why nothing can run
        best = min(times, key=lambda a: (times[a], candidates.index(a)))
        _cache[key] = best
        _times[key] = times
        return best


def cache() -> Dict[str, str]:
    """A copy of the cache: {key: algorithm}."""
    with _lock:
        return dict(_cache)


def recorded_times(key: str) -> Optional[Dict[str, float]]:
    """{algorithm: seconds} as this process timed `key` (cache_key's), or None when it has not
    (not tuned yet, or the choice was loaded from a file)."""
    with _lock:
        times = _times.get(key)
        return None if times is None else dict(times)


def clear() -> None:
    with _lock:
        _cache.clear()
        _times.clear()


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
        for key in data["entries"]:  # a loaded choice was not timed here
            _times.pop(key, None)
    return len(data["entries"])
