"""Each CPU kernel family's AVX-512 variant against its AVX2 one, on the machine at hand
(issue 16): the same op run with CNNKERN_CPU_ISA=avx2 and =avx512, one call of each in turn
(interleaved, so a neighbour's load hits both alike), medians; beside them the choice the
calibration made for the family (cnnkern.tuning.isa_choices).

    python -m bench.isa_variants [--runs 21] [--threads 2] [--clock wall|cpu] [--only pool,direct]
                                 [--json out.json]

ratio = avx2 time / avx512 time: above 1 the AVX-512 variant wins. Medians, and the fastest
call of each (on a machine shared with other jobs a call is often held up by a thread that
waits for a core; the fastest is the undisturbed one). --clock cpu times the process's CPU
time instead of the wall clock: with --threads 1 it leaves out the time the process waited for
a core, which on a loaded shared machine is most of the wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch

import cnnkern
from cnnkern import tuning



def _interleaved(fns, runs, clock):
    """{name: (median, min) ms}: one call of each in turn, `runs` rounds, after a warm-up."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append((clock() - t0) * 1e3)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def _conv(algo, n, c, hw, k, r=3, stride=1, groups=1, backward=None):
    x = torch.randn(n, c, hw, hw)
    w = torch.randn(k, c // groups, r, r)
    pad = r // 2
    ops = torch.ops.cnnkern
    if backward == "weight":
        go = torch.randn(n, k, (hw + 2 * pad - r) // stride + 1, (hw + 2 * pad - r) // stride + 1)
        return lambda: ops.conv2d_backward_weight(go, x, list(w.shape), [stride] * 2, [pad] * 2,
                                                  [1, 1], groups, algo, False)
    return lambda: cnnkern.conv2d(x, w, None, stride, pad, 1, groups, algo=algo)


def _pool(kind, n, c, hw, k, stride, pad=0, channels_last=False):
    x = torch.randn(n, c, hw, hw)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if kind == "max":
        return lambda: cnnkern.max_pool2d(x, k, stride, pad)
    if kind == "max_idx":
        return lambda: cnnkern.max_pool2d(x, k, stride, pad, return_indices=True)
    if kind == "adaptive":
        return lambda: cnnkern.adaptive_avg_pool2d(x, 1)
    return lambda: cnnkern.avg_pool2d(x, k, stride, pad)


# (family, case, make): the shapes of VGG16, ResNet-50 and MobileNetV2 each family runs.
CASES = [
    ("gemm", "im2col 3x3 1x256x28x28->256", lambda: _conv("im2col", 1, 256, 28, 256)),
    ("gemm", "im2col 1x1 8x256x56x56->64", lambda: _conv("im2col", 8, 256, 56, 64, r=1)),
    ("gemm", "winograd F4 1x256x56x56->256", lambda: _conv("winograd", 1, 256, 56, 256)),
    ("gemm", "winograd F4 8x512x14x14->512", lambda: _conv("winograd", 8, 512, 14, 512)),
    ("direct", "direct 3x3 1x64x56x56->64", lambda: _conv("direct", 1, 64, 56, 64)),
    ("direct", "direct 3x3 1x256x28x28->256", lambda: _conv("direct", 1, 256, 28, 256)),
    ("direct", "direct 3x3 s2 8x64x56x56->128", lambda: _conv("direct", 8, 64, 56, 128, stride=2)),
    ("direct", "direct grad-weight 3x3 1x128x28x28->128",
     lambda: _conv("direct", 1, 128, 28, 128, backward="weight")),
    ("depthwise", "dw 3x3 8x32x112x112", lambda: _conv("direct", 8, 32, 112, 32, groups=32)),
    ("depthwise", "dw 3x3 s2 8x144x56x56", lambda: _conv("direct", 8, 144, 56, 144, stride=2,
                                                            groups=144)),
    ("depthwise", "dw 3x3 8x576x14x14", lambda: _conv("direct", 8, 576, 14, 576, groups=576)),
    ("depthwise", "dw grad-weight 3x3 8x96x56x56",
     lambda: _conv("direct", 8, 96, 56, 96, groups=96, backward="weight")),
    ("pool", "max 2x2 s2 8x64x112x112", lambda: _pool("max", 8, 64, 112, 2, 2)),
    ("pool", "max+idx 3x3 s2 p1 8x64x112x112", lambda: _pool("max_idx", 8, 64, 112, 3, 2, 1)),
    ("pool", "avg 2x2 s2 8x128x56x56", lambda: _pool("avg", 8, 128, 56, 2, 2)),
    ("pool", "max 2x2 s2 8x512x14x14", lambda: _pool("max", 8, 512, 14, 2, 2)),
    ("pool", "max 2x2 s2 NHWC 8x64x112x112", lambda: _pool("max", 8, 64, 112, 2, 2, 0, True)),
    ("pool", "global avg 8x2048x7x7", lambda: _pool("adaptive", 8, 2048, 7, 1, 1)),
]


def _geomean(xs):
    return math.exp(sum(map(math.log, xs)) / len(xs))


def _with_isa(isa, fn):
    def run():
        os.environ["CNNKERN_CPU_ISA"] = isa  # read by the ops on every call
        return fn()
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--only", default="", help="comma-separated families")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    if not {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= tuning.cpu_flags():
        print("this CPU has no AVX-512: nothing to compare")
        return 0
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    os.environ.pop("CNNKERN_CPU_ISA", None)
    choices = tuning.isa_choices()
    print(f"CPU: {tuning.cpu_model()} [{tuning.cpu_isa()}], {args.threads} threads, "
          f"{args.clock} clock, torch {torch.__version__}, "
          f"load average before {os.getloadavg()[0]:.1f} "
          f"(the machine is shared: other jobs run beside this one)")
    print(f"calibration: {choices.get('source', '-')}, {choices.get('calibration_ms', 0):.1f} ms")
    only = set(filter(None, args.only.split(",")))
    rows = []
    print(f"{'family':10} {'case':42} {'avx2 ms':>9} {'avx512 ms':>10} {'ratio':>6} "
          f"{'min avx2':>9} {'min avx512':>10} {'ratio':>6}  chosen")
    for family, case, make in CASES:
        if only and family not in only:
            continue
        fn = make()
        t = _interleaved({"avx2": _with_isa("avx2", fn), "avx512": _with_isa("avx512", fn)},
                         args.runs, clock)
        os.environ.pop("CNNKERN_CPU_ISA", None)
        c = choices["families"][family]
        (m2, b2), (m5, b5) = t["avx2"], t["avx512"]
        rows.append({"family": family, "case": case, "avx2_ms": m2, "avx512_ms": m5,
                     "ratio": m2 / m5, "avx2_min_ms": b2, "avx512_min_ms": b5,
                     "min_ratio": b2 / b5, "chosen": c["isa"], "how": c["how"]})
        print(f"{family:10} {case:42} {m2:9.3f} {m5:10.3f} {m2 / m5:6.2f} {b2:9.3f} {b5:10.3f} "
              f"{b2 / b5:6.2f}  {c['isa']} ({c['how']})", flush=True)
    for family in sorted({r["family"] for r in rows}):
        rs = [r["ratio"] for r in rows if r["family"] == family]
        ms = [r["min_ratio"] for r in rows if r["family"] == family]
        print(f"{family}: geomean ratio avx2/avx512 {_geomean(rs):.2f} (of the fastest calls "
              f"{_geomean(ms):.2f}) over {len(rs)} cases; calibration chose "
              f"{choices['families'][family]['isa']} "
              f"(probe medians {choices['families'][family]['seconds']})")
    print(f"load average after {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": tuning.cpu_model(), "flags": sorted(tuning.cpu_flags()),
                       "threads": args.threads, "runs": args.runs, "clock": args.clock,
                       "torch": torch.__version__,
                       "python": platform.python_version(), "calibration": choices,
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
