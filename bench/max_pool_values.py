"""Eval max pooling on the CPU without indices (issue 17, "pooling at bandwidth"): the
values-only op cnnkern.max_pool2d now runs against what cnnkern.max_pool2d ran before it
(max_pool2d_with_indices, the indices thrown away), and torch's F.max_pool2d.

    PYTHONPATH=. python bench/max_pool_values.py [--threads 2] [--runs 31] [--layouts nchw]

In one process and interleaved (the runs take turns, so load from other processes hits all of
them alike), median of --runs, under torch.no_grad():

- before:  torch.ops.cnnkern.max_pool2d_with_indices (values and int64 indices)
- after:   torch.ops.cnnkern.max_pool2d (values alone)
- torch:   F.max_pool2d

plus the bytes each moves (input read + outputs written) and the ratio before / after.
"""

from __future__ import annotations

import argparse
import itertools

import torch
import torch.nn.functional as F

import cnnkern  # noqa: F401  (loads torch.ops.cnnkern)
from bench.bn_relu import cpu_model, time_interleaved

# (shape, kernel, stride, padding): the case first (ResNet's stem pool), then VGG's.
CASES = [((8, 64, 112, 112), 3, 2, 1), ((8, 64, 224, 224), 2, 2, 0)]


def make_case(shape, k, s, p, dtype, channels_last):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    args = ([k, k], [s, s], [p, p], [1, 1], False)
    ops = torch.ops.cnnkern
    return x, {"before": lambda: ops.max_pool2d_with_indices(x, *args),
               "after": lambda: ops.max_pool2d(x, *args),
               "torch": lambda: F.max_pool2d(x, k, s, p)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=31)
    ap.add_argument("--layouts", default="nchw,channels_last")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# eval max_pool2d, {cpu_model()}, torch {torch.__version__}, "
          f"median of {args.runs} interleaved runs, ms (GB/s: input read + outputs written)")
    print(f"{'case':>24} {'layout':>13} {'before':>8} {'after':>8} {'torch':>8} "
          f"{'before/after':>12} {'GB/s before':>11} {'GB/s after':>10}")
    for (shape, k, s, p), layout in itertools.product(CASES, args.layouts.split(",")):
        x, fns = make_case(shape, k, s, p, torch.float32, layout == "channels_last")
        with torch.no_grad():
            t = time_interleaved(fns, args.runs)
            out = fns["after"]()
        moved = x.nbytes + out.nbytes
        moved_idx = moved + out.numel() * 8
        name = f"{'x'.join(map(str, shape))} {k}x{k}s{s}p{p}"
        print(f"{name:>24} {layout:>13} {t['before']:8.3f} {t['after']:8.3f} {t['torch']:8.3f} "
              f"{t['before'] / t['after']:12.2f} {moved_idx / t['before'] / 1e6:11.1f} "
              f"{moved / t['after'] / 1e6:10.1f}", flush=True)


if __name__ == "__main__":
    main()
