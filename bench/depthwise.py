"""Depthwise 3x3 convolutions on the CPU: cnnkern's `direct` algorithm against torch (oneDNN).

MobileNetV2's depthwise layers (3x3, padding 1, stride 1 and 2), forward, grad-input and
grad-weight, at batch 1 and 8. Each figure is torch time / cnnkern time, both timed in this
process, interleaved (ours, torch, ours, torch, ...) `--rounds` times, the median of the
per-round ratios: the machine is shared, and interleaving lets both sides see the same load.
Each side's time in a round is its fastest block of calls (blocks of >= 1 ms over
`--min-time` seconds): on a machine busy with other work the median block is often one that
waited for a core, the fastest is the one that ran.

    PYTHONPATH=. python bench/depthwise.py --threads 1,2 --out bench/results --label after

writes bench/results/cpu_<date>_depthwise_<threads>threads_<label>.txt per thread count
(the same lines it prints).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch
import torch.nn.functional as F

# cnnkern and bench come from PYTHONPATH (the repository root), so that another build of
# cnnkern can be put before it to measure the "before" side.
import cnnkern  # noqa: E402  (also registers torch.ops.cnnkern)

# MobileNetV2 (width 1.0, 224x224 input): channels, input size, stride of each distinct
# depthwise layer shape.
MOBILENET_V2_DEPTHWISE = [
    (32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1), (192, 28, 2),
    (384, 14, 1), (576, 14, 1), (576, 14, 2), (960, 7, 1),
]
PASSES = ("fwd", "bwd_input", "bwd_weight")


def conv_pass_fns(x, w, g, stride, padding, groups, algo):
    """(cnnkern's `algo`, torch's) callables for each pass of a convolution (no bias,
    dilation 1), the registered ops called directly."""
    st, pd, dl, gr = [stride, stride], [padding, padding], [1, 1], groups
    ops, aten = torch.ops.cnnkern, torch.ops.aten

    def torch_bwd(mask):
        return lambda: aten.convolution_backward(g, x, w, None, st, pd, dl, False, [0, 0], gr, mask)

    return {
        "fwd": (lambda: ops.conv2d(x, w, None, st, pd, dl, gr, algo),
                lambda: F.conv2d(x, w, None, st, pd, dl, gr)),
        "bwd_input": (lambda: ops.conv2d_backward_input(g, w, list(x.shape), st, pd, dl, gr, algo),
                      torch_bwd([True, False, False])),
        "bwd_weight": (lambda: ops.conv2d_backward_weight(g, x, list(w.shape), st, pd, dl, gr, algo),
                       torch_bwd([False, True, False])),
    }


def pass_fns(x, w, g, stride):
    """The depthwise layer's: padding 1, one group per channel, "direct"."""
    return conv_pass_fns(x, w, g, stride, 1, x.shape[1], "direct")


def fastest_seconds(fn, min_time):
    """Seconds per call of the fastest block of calls, blocks of >= 1 ms for min_time."""
    fn()  # warm-up
    start = time.perf_counter()
    fn()
    calls = max(1, int(1e-3 / max(time.perf_counter() - start, 1e-9)))
    best, total = float("inf"), 0.0
    while total < min_time:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        t = time.perf_counter() - start
        total += t
        best = min(best, t / calls)
    return best


def ratio(ours, theirs, rounds, min_time):
    """Median over interleaved rounds of torch time / ours; also the median times (ms)."""
    r, to, tt = [], [], []
    for _ in range(rounds):
        a = fastest_seconds(ours, min_time)
        b = fastest_seconds(theirs, min_time)
        r.append(b / a)
        to.append(a)
        tt.append(b)
    return statistics.median(r), 1e3 * statistics.median(to), 1e3 * statistics.median(tt)


def write_lines(lines, folder, what, label=""):
    """Writes `lines` to folder/cpu_<date>_<what>[_<label>].txt, the name every CPU benchmark
    script's results take under bench/results."""
    os.makedirs(folder, exist_ok=True)
    day = datetime.date.today().isoformat()
    suffix = f"_{label}" if label else ""
    path = os.path.join(folder, f"cpu_{day}_{what}{suffix}.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.03, help="seconds per timing")
    ap.add_argument("--out", default=None, help="folder for the result files")
    ap.add_argument("--label", default="", help="suffix of the result file names")
    a = ap.parse_args(argv)
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(0)
    for nt in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(nt)
        lines = [f"# depthwise 3x3 pad 1, cnnkern direct vs torch {torch.__version__}, {a.dtype}, "
                 f"{nt} thread(s), {cnnkern.tuning.cpu_model()} ({cnnkern.tuning.cpu_isa()}), "
                 f"load average {os.getloadavg()[0]:.1f} at start, "
                 f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
                 f"median of {a.rounds} interleaved rounds of fastest blocks",
                 f"{'layer':<18}{'batch':>6} {'pass':<11}{'ours ms':>10}{'torch ms':>10}{'torch/ours':>12}"]
        print("\n".join(lines), flush=True)
        for batch in [int(b) for b in a.batches.split(",")]:
            for c, hw, s in MOBILENET_V2_DEPTHWISE:
                x = torch.randn(batch, c, hw, hw, dtype=dtype)
                w = torch.randn(c, 1, 3, 3, dtype=dtype)
                g = torch.randn(F.conv2d(x, w, None, s, 1, 1, c).shape, dtype=dtype)
                fns = pass_fns(x, w, g, s)
                for name in PASSES:
                    q, to, tt = ratio(*fns[name], a.rounds, a.min_time)
                    line = f"{f'{c}x{hw}x{hw} s{s}':<18}{batch:>6} {name:<11}{to:>10.3f}{tt:>10.3f}{q:>11.2f}x"
                    print(line, flush=True)
                    lines.append(line)
        if a.out:
            write_lines(lines, a.out, f"depthwise_{nt}threads", a.label)


if __name__ == "__main__":
    main()
