"""The device's peaks behind %peak and the roofline, each with how it was found.

GPUs in GPU_PEAKS: the vendor's datasheet (dense), said as such. Anything else (the CPU, an
unknown GPU) is measured in this process, on the run's thread count:

- bandwidth: STREAM's triad `a = b + 3*c` (torch.add with out=) on three float32 tensors,
  bytes counted as STREAM counts them (two arrays read, one written, no write-allocate
  traffic), the best of several calls; STREAM's copy `a.copy_(b)` is measured beside it.
  Twice: "bandwidth" from memory (each array at least the size of the last-level cache, so
  the three stream from DRAM) and "bandwidth_cache" on 3 x 4 MiB (inside the last-level cache
  of the CPUs here, outside their L2), the best of a quarter second of calls. Both roofs are
  real: the default set's pooling layers move a few MB, which stay in the cache, and on the
  2-core Xeon VM (2 threads, 2026-12-07) the triad ran at 4-11 GB/s from memory (it moves
  with the other tenants' load) but about 50 GB/s in the cache: a memory roof alone sits
  below what pooling measures.
- compute, per dtype: the better of torch.mm and cnnkern's own GEMM (the im2col algorithm on a
  1x1 convolution, which is exactly one GEMM), both M = N = K = GEMM_SIZE, the best of 3
  calls each. A vendor figure would need the clock under load and the FMA units per core,
  which a VM does not show reliably.
"""

from __future__ import annotations

import glob
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch

import cnnkern
from .timing import best_seconds

# Datasheet peaks (dense) for GPUs we report on, FLOP/s by dtype and bytes/s.
GPU_PEAKS = {
    "H100": {"float32": 66.9e12, "tf32": 494.7e12, "float16": 989.4e12, "bfloat16": 989.4e12,
             "float64": 66.9e12, "bandwidth": 3.35e12},
    "H200": {"float32": 66.9e12, "tf32": 494.7e12, "float16": 989.4e12, "bfloat16": 989.4e12,
             "float64": 66.9e12, "bandwidth": 4.8e12},
}

MIB = 2**20
GEMM_SIZE = 1536
CACHE_ARRAY_BYTES = 4 * MIB


def last_level_cache_bytes() -> Optional[int]:
    """The largest CPU cache sysfs reports for cpu0 (Linux), or None."""
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * unit)
    return max(sizes) if sizes else None


def stream_bytes() -> int:
    """Bytes per STREAM array: the last-level cache (64 MiB when it is unknown or smaller),
    at most 256 MiB, so the run's memory stays below a GiB."""
    llc = last_level_cache_bytes() or 0
    return min(256 * MIB, max(64 * MIB, llc))


def stream(device: torch.device, nbytes: int, min_time: float = 0.0,
           timer: Callable = best_seconds) -> Tuple[float, float]:
    """(triad, copy) bytes/s over float32 tensors of `nbytes` each: the best of 3 calls and
    of `min_time` seconds of calls."""
    n = nbytes // 4
    a = torch.empty(n, device=device)
    b = torch.full((n,), 1.0, device=device)
    c = torch.full((n,), 2.0, device=device)
    triad = 3 * n * 4 / timer(lambda: torch.add(b, c, alpha=3.0, out=a), 3, min_time)
    copy = 2 * n * 4 / timer(lambda: a.copy_(b), 3, min_time)
    return triad, copy


def bandwidth_key(peaks: Dict[str, float], nbytes: int) -> str:
    """The bandwidth peak a kernel moving `nbytes` is held to: the cache's when they fit in
    the cache STREAM's three arrays (and the cache peak was measured), else memory's."""
    if "bandwidth_cache" in peaks and nbytes <= 3 * CACHE_ARRAY_BYTES:
        return "bandwidth_cache"
    return "bandwidth"


def gemm_flops(device: torch.device, dtype: torch.dtype, n: int = GEMM_SIZE,
               timer: Callable = best_seconds) -> Dict[str, float]:
    """FLOP/s of an n x n x n GEMM: {"torch.mm": ..., "cnnkern im2col": ...} (the latter only
    where cnnkern's im2col runs on this device and dtype)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
    b = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
    flops = 2 * n**3
    rates = {"torch.mm": flops / timer(lambda: a @ b)}
    # a (K=n, C=n) 1x1 filter over an image of n pixels (n = h * w): M = N = K = n
    h = next(d for d in range(int(n**0.5), 0, -1) if n % d == 0)
    x = b.reshape(1, n, h, n // h)
    w = a.reshape(n, n, 1, 1)
    ok, _ = cnnkern.can_implement(x, w, algo="im2col")
    if ok:
        ops = torch.ops.cnnkern
        tf32 = cnnkern.backends.get_allow_tf32()  # as torch.mm follows torch's TF32 flag
        rates["cnnkern im2col"] = flops / timer(
            lambda: ops.conv2d(x, w, None, [1, 1], [0, 0], [1, 1], 1, "im2col", tf32))
    return rates


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def measure(device: torch.device, dtypes: Iterable[torch.dtype]
            ) -> Tuple[Dict[str, float], Dict[str, str]]:
    """(peaks, sources): FLOP/s per dtype name and "bandwidth" in bytes/s, and for each the
    sentence saying where it comes from."""
    n = torch.get_num_threads()
    threads = f"{n} thread{'' if n == 1 else 's'}"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in GPU_PEAKS.items():
            if key in name:
                return dict(peaks), {k: f"{key} datasheet (dense), not measured" for k in peaks}
    peaks: Dict[str, float] = {}
    sources: Dict[str, str] = {}
    for dtype in dtypes:
        if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
            continue  # no CPU kernels: no %peak to give
        rates = gemm_flops(device, dtype)
        best = max(rates, key=rates.get)
        peaks[_name(dtype)] = rates[best]
        both = " and ".join(f"{k} ({v / 1e9:.1f})" for k, v in rates.items())
        sources[_name(dtype)] = f"measured: better of {both} on a {GEMM_SIZE}^3 GEMM, {threads}"
    # the cache's calls are short (~0.1 ms): a quarter second of them finds undisturbed ones
    for key, nbytes, min_time in (("bandwidth", stream_bytes(), 0.0),
                                  ("bandwidth_cache", CACHE_ARRAY_BYTES, 0.25)):
        triad, copy = stream(device, nbytes, min_time)
        peaks[key] = triad
        sources[key] = (f"measured: STREAM triad a = b + 3*c on 3 x {nbytes // MIB} MiB float32 "
                        f"(copy {copy / 1e9:.1f} GB/s), {threads}")
    return peaks, sources
