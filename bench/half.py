"""float16 / bfloat16 convolutions on the CPU: cnnkern against torch in the same dtype.

cnnkern's im2col forward reads half tensors into float32 registers while it packs and rounds
its output as it stores it (csrc/cpu/im2col/forward_io.h); its other kernels convert the
tensors to float32 copies, run the float32 kernels and round the result once
(csrc/cpu/common/half_via_float32.h); torch runs oneDNN's
own half kernels (bfloat16 dot products where the CPU has avx512_bf16; float16 natively only
with avx512_fp16 / AMX-FP16, else through conversions). Layers: VGG16's 3x3 convolutions (at
batch 1 and 8 where a call stays short) and ResNet-50's 1x1 256->64, forward and, with
--passes, both backward passes. Each figure is torch time / cnnkern time in this process,
interleaved rounds, the median of the per-round ratios, each side's fastest block of calls
(bench/depthwise.py's method: the machine is shared).

    PYTHONPATH=. python -m bench.half --out bench/results --label after

writes bench/results/cpu_<date>_half_<dtype>_<threads>threads[_<label>].txt per dtype (the
same lines it prints).
"""

from __future__ import annotations

import argparse
import datetime
import os

import torch

import cnnkern  # also registers torch.ops.cnnkern
from .depthwise import conv_pass_fns, ratio, write_lines

# (name, batch, C, K, H (= W), kernel, padding): VGG16's 3x3 layers at the sizes where a
# float16 call of torch's stays well under a second, and ResNet-50's first 1x1 reduction.
LAYERS = [
    ("vgg.conv3_2 256x56", 1, 256, 256, 56, 3, 1),
    ("vgg.conv4_2 512x28", 1, 512, 512, 28, 3, 1),
    ("vgg.conv5_2 512x14", 1, 512, 512, 14, 3, 1),
    ("vgg.conv4_2 512x28", 8, 512, 512, 28, 3, 1),
    ("vgg.conv5_2 512x14", 8, 512, 512, 14, 3, 1),
    ("r50.1x1 256->64 x56", 8, 256, 64, 56, 1, 0),
]
PASSES = ("fwd", "bwd_input", "bwd_weight")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtypes", default="float16,bfloat16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--algos", default="auto,im2col,winograd",
                    help="cnnkern algorithms (those that cannot run a layer are skipped)")
    ap.add_argument("--passes", default="fwd", help=f"comma-separated of {', '.join(PASSES)}")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.03, help="seconds per timing")
    ap.add_argument("--out", default=None, help="folder for the result files")
    ap.add_argument("--label", default="", help="suffix of the result file names")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    passes = a.passes.split(",")
    for name in a.dtypes.split(","):
        dtype = getattr(torch, name)
        lines = [f"# {name} conv, cnnkern (im2col fwd: half in registers; else via float32 copies) vs torch {torch.__version__}, "
                 f"{a.threads} thread(s), {cnnkern.tuning.cpu_model()} ({cnnkern.tuning.cpu_isa()}), "
                 f"load average {os.getloadavg()[0]:.1f} at start (shared machine), "
                 f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
                 f"median of {a.rounds} interleaved rounds of fastest blocks",
                 f"{'layer':<22}{'batch':>6} {'pass':<11}{'algo':<12}{'ours ms':>10}"
                 f"{'torch ms':>10}{'ours GF/s':>10}{'torch GF/s':>11}{'torch/ours':>12}"]
        print("\n".join(lines), flush=True)

        def say(line):
            print(line, flush=True)
            lines.append(line)

        for layer, n, c, k, hw, r, pad in LAYERS:
            x = torch.randn(n, c, hw, hw).to(dtype)
            w = (torch.randn(k, c, r, r) / (c * r * r) ** 0.5).to(dtype)
            g = torch.randn(n, k, hw, hw).to(dtype)
            gflop = 2 * n * k * c * r * r * hw * hw / 1e9
            for algo in a.algos.split(","):
                ok, _ = cnnkern.can_implement(x, w, padding=pad, algo=algo)
                if not ok:
                    continue
                fns = conv_pass_fns(x, w, g, 1, pad, 1, algo)
                for p in passes:
                    q, to, tt = ratio(*fns[p], a.rounds, a.min_time)
                    say(f"{layer:<22}{n:>6} {p:<11}{algo:<12}{to:>10.2f}{tt:>10.2f}"
                        f"{gflop / to * 1e3:>10.1f}{gflop / tt * 1e3:>11.1f}{q:>11.2f}x")
        if a.out:
            write_lines(lines, a.out, f"half_{name}_{a.threads}threads", a.label)


if __name__ == "__main__":
    main()
