"""Before / after fusing the ReLU call that ends a conv + BN module (GoogLeNet's BasicConv2d:
`return F.relu(self.bn(self.conv(x)), inplace=True)`), in one process: a model's training step
(forward + cross-entropy + backward, batch 8, 224x224) for torch, cnnkern.convert as before
(conv + BN fused, then the F.relu call: torch's relu_ forward and threshold_backward) and
cnnkern.convert as it is (conv + BN + ReLU in one op, the module's forward replaced: see
cnnkern/_block_forward.py), timed in interleaved rounds, median.

    OMP_WAIT_POLICY=passive python -m bench.block_relu_fusion [--models googlenet]
        [--threads 2] [--rounds 15] [--metric busiest]
    (raw output: bench/results/cpu_2026-12-07_block_relu_fusion_googlenet_loaded.txt)

--metric busiest (bench/small_planes.py says why) needs OMP_WAIT_POLICY=passive.
"""

from __future__ import annotations

import argparse
import os
from unittest import mock

import torch

import cnnkern
from cnnkern.conversion import chains
from . import model_engines
from .models import inputs
from .small_planes import interleaved_ms


def relu_call_kept(model):
    """cnnkern.convert as before: a ReLU call after a BN stays, even where it ends a module."""
    with mock.patch.object(chains, "_chain_block", lambda *args: None):
        return cnnkern.convert(model)


def measure(name: str, batch: int, size: int, rounds: int, metric: str, engines) -> dict:
    """Median ms per training step of each engine(s) built from torchvision's `name`:
    engines(base) -> {"torch": base, "kept": before the change, "fused": after}."""
    x, labels = inputs(batch, size)
    base = model_engines.build_model(name)
    model_engines.calibrate_batch_norm(base, x)  # no denormals (model_engines says why)
    steps = {k: model_engines.train_step(m, x, labels) for k, m in engines(base).items()}
    return interleaved_ms(steps, rounds, metric)


def timing_parser(description: str) -> argparse.ArgumentParser:
    """--threads, --rounds, --metric: the timing options of these in-process comparisons."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--metric", choices=["wall", "busiest"], default="wall")
    return p


def start_timing(args):
    """Sets the thread count and prints the header line (versions, CPU, load); returns args."""
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} | {cnnkern.tuning.cpu_model()} | {args.threads} threads | "
          f"metric {args.metric} | load {os.getloadavg()[0]:.1f} before")
    return args


def compare_main(argv, description: str, default_models: str, engines) -> int:
    """The command line of a before / after fusion comparison (this file's and
    bench/resnet_residual_fusion.py's): one row per model, torch / kept / fused."""
    p = timing_parser(description)
    p.add_argument("--models", default=default_models)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    args = start_timing(p.parse_args(argv))
    print(f"{'model':14} {'torch ms':>10} {'kept ms':>10} {'fused ms':>10} "
          f"{'torch/kept':>11} {'torch/fused':>12}")
    for name in args.models.split(","):
        r = measure(name, args.batch, args.size, args.rounds, args.metric, engines)
        t, k, f = r["torch"], r["kept"], r["fused"]
        print(f"{name:14} {t:10.1f} {k:10.1f} {f:10.1f} {t / k:10.2f}x {t / f:11.2f}x")
    print(f"load {os.getloadavg()[0]:.1f} after")
    return 0


def main(argv=None) -> int:
    return compare_main(argv, __doc__.splitlines()[0], "googlenet",
                        lambda base: {"torch": base, "kept": relu_call_kept(base),
                                      "fused": cnnkern.convert(base)})


if __name__ == "__main__":
    raise SystemExit(main())
