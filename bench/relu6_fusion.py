"""Before / after the fused ReLU6, in one process: a model's training step (forward +
cross-entropy + backward, batch 8, 224x224) for torch, cnnkern.convert with the ReLU6 modules
left unfused (conv + BN fused, then torch's hardtanh forward and backward: how convert
worked before relu_max) and cnnkern.convert as it is (conv + BN + ReLU6 in one op), timed in
interleaved rounds, median.

    python -m bench.relu6_fusion [--models mobilenet_v2] [--threads 2] [--min-time 20]
    (raw output: bench/results/cpu_2026-12-07_relu6_fusion_mobilenet_v2_loaded.txt)
"""

from __future__ import annotations

import argparse
import os
import statistics
from unittest import mock

import torch

import cnnkern
from cnnkern.conversion import chains
from . import model_engines
from .models import inputs, time_interleaved


def unfused_relu6(model):
    """cnnkern.convert as before relu_max: only nn.ReLU is fused after a BN."""
    with mock.patch.dict(chains._ACTIVATIONS, clear=True, values={torch.nn.ReLU: None}):
        return cnnkern.convert(model)


def measure(name: str, batch: int, size: int, min_time: float, min_reps: int) -> dict:
    x, labels = inputs(batch, size)
    base = model_engines.build_model(name)
    engines = {"torch": base,
               "cnnkern_relu6_unfused": unfused_relu6(base),
               "cnnkern": cnnkern.convert(base)}
    steps = {k: model_engines.train_step(m, x, labels) for k, m in engines.items()}
    for fn in steps.values():  # warm up (and allocate) once each
        fn()
    times = time_interleaved(steps, min_time, min_reps)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mobilenet_v2")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-time", type=float, default=20.0)
    p.add_argument("--min-reps", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} | {args.threads} threads | load {os.getloadavg()[0]:.1f}"
          f" before")
    print(f"{'model':14} {'torch ms':>10} {'unfused ms':>11} {'fused ms':>10} "
          f"{'torch/unfused':>14} {'torch/fused':>12}")
    for name in args.models.split(","):
        r = measure(name, args.batch, args.size, args.min_time, args.min_reps)
        t, u, f = r["torch"], r["cnnkern_relu6_unfused"], r["cnnkern"]
        print(f"{name:14} {t:10.1f} {u:11.1f} {f:10.1f} {t / u:13.2f}x {t / f:11.2f}x")
    print(f"load {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
