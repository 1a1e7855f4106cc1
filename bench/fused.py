"""Fused conv + BatchNorm + ReLU against the unfused torch sequence, on the CPU.

    python -m cnnkern.bench.fused                    # ResNet-18 + VGG16 blocks, batch 8, 1 and 2 threads
    python -m cnnkern.bench.fused --threads 1 --layers resnet18 --repeat 5
    python -m cnnkern.bench.fused --quick            # tiny shapes (the test runs this)

For each block shape it measures, in one process and at each thread count:

- eval: cnnkern.nn.ConvBNReLU2d (BN folded into the conv, ReLU in the conv's epilogue, the
  folded weights cached) against torch nn.Sequential(Conv2d, BatchNorm2d, ReLU).eval(), both
  under torch.no_grad();
- train: one training step (forward + backward with a fixed grad_output) of both;
- saved: bytes saved for backward (torch.autograd.graph.saved_tensors_hooks; parameters and
  the block's input, which every variant saves, left out);
- peak: the extra resident memory of one training step: the kernel's peak-RSS mark is reset
  (/proc/self/clear_refs = 5) before the step and VmHWM - VmRSS(before) read after it. glibc
  keeps freed memory unless large blocks are mmapped, so the command re-executes itself with
  MALLOC_MMAP_THRESHOLD_=65536 (every tensor > 64 KiB is returned to the OS when freed).
  Linux only; "n/a" elsewhere.

Times are medians of --repeat runs after a warm-up, torch and cnnkern interleaved so that
load from other processes hits both alike; ratios are torch time / cnnkern time (> 1: faster).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from typing import Dict, List, Optional

import torch
from torch import nn

import cnnkern

# (name, C in, K out, H = W, stride): 3x3 convolutions, padding 1, batch 8.
LAYER_SETS = {
    "resnet18": [
        ("resnet18.layer1 64x56", 64, 64, 56, 1),
        ("resnet18.layer2 128x28", 128, 128, 28, 1),
        ("resnet18.layer3 256x14", 256, 256, 14, 1),
        ("resnet18.layer4 512x7", 512, 512, 7, 1),
    ],
    "vgg16": [
        ("vgg16.conv1_2 64x112", 64, 64, 112, 1),
        ("vgg16.conv2_2 128x56", 128, 128, 56, 1),
        ("vgg16.conv3_2 256x28", 256, 256, 28, 1),
        ("vgg16.conv4_2 512x14", 512, 512, 14, 1),
    ],
    "quick": [("quick 4x9", 4, 6, 9, 1), ("quick 3x8 s2", 3, 4, 8, 2)],
}

_MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _interleaved(fns: Dict[str, callable], repeat: int) -> Dict[str, float]:
    for f in fns.values():  # warm-up (allocations, thread pools, folded-weight cache)
        f()
    samples = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            samples[k].append(_median_ms(f, 1))
    return {k: statistics.median(v) for k, v in samples.items()}


def _status(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_extra_bytes(fn) -> Optional[int]:
    """Extra resident bytes at the peak of fn() (Linux; None where unsupported)."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    base = _status("VmRSS:")
    fn()
    hwm = _status("VmHWM:")
    return None if base is None or hwm is None else max(hwm - base, 0)


def saved_bytes(module, x) -> int:
    """Bytes saved for backward by one forward, parameters and the input left out."""
    seen = {}

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.dtype, tuple(t.shape))] = t.numel() * t.element_size()
        return t

    x = x.detach().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    skip = {(p.untyped_storage().data_ptr(), p.dtype, tuple(p.shape)) for p in module.parameters()}
    skip.add((x.untyped_storage().data_ptr(), x.dtype, tuple(x.shape)))
    return sum(v for k, v in seen.items() if k not in skip)


def make_pair(cin: int, cout: int, stride: int, algo: str):
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                        nn.ReLU())
    with torch.no_grad():
        ref[1].running_mean.uniform_(-0.1, 0.1)
        ref[1].running_var.uniform_(0.5, 1.5)
        ref[1].weight.uniform_(0.5, 1.5)
        ref[1].bias.uniform_(-0.5, 0.5)
    ours = cnnkern.nn.ConvBNReLU2d(cin, cout, 3, stride, 1, algo=algo)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def measure_layer(layer, batch: int, repeat: int, algo: str) -> dict:
    name, cin, cout, hw, stride = layer
    ref, ours = make_pair(cin, cout, stride, algo)
    x = torch.randn(batch, cin, hw, hw)
    row = {"layer": name, "shape": f"{batch}x{cin}x{hw}x{hw} -> {cout}, s{stride}"}

    ref.eval(), ours.eval()
    with torch.no_grad():
        g = torch.randn(ref(x).shape)
        err = float((ours(x) - ref(x)).abs().max())

        def ev(m):
            return lambda: m(x)
        t = _interleaved({"torch": ev(ref), "ours": ev(ours)}, repeat)
    row.update(eval_torch_ms=t["torch"], eval_ours_ms=t["ours"], eval_ratio=t["torch"] / t["ours"],
               eval_max_abs_err=err)

    ref.train(), ours.train()

    def step(m):
        def run():
            xi = x.detach().requires_grad_()
            m(xi).backward(g)
            m.zero_grad(set_to_none=True)
        return run
    t = _interleaved({"torch": step(ref), "ours": step(ours)}, repeat)
    row.update(train_torch_ms=t["torch"], train_ours_ms=t["ours"],
               train_ratio=t["torch"] / t["ours"])
    row.update(saved_torch=saved_bytes(ref, x), saved_ours=saved_bytes(ours, x))
    row.update(peak_torch=peak_extra_bytes(step(ref)), peak_ours=peak_extra_bytes(step(ours)))
    return row


def _mb(b) -> str:
    return "n/a" if b is None else f"{b / 2**20:.1f}"


def format_rows(rows: List[dict]) -> str:
    head = ("| threads | layer | eval torch ms | eval ours ms | eval x | train torch ms | "
            "train ours ms | train x | saved MB torch/ours | peak MB torch/ours |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['threads']} | {r['layer']} | {r['eval_torch_ms']:.2f} | {r['eval_ours_ms']:.2f} "
            f"| {r['eval_ratio']:.2f} | {r['train_torch_ms']:.2f} | {r['train_ours_ms']:.2f} "
            f"| {r['train_ratio']:.2f} | {_mb(r['saved_torch'])} / {_mb(r['saved_ours'])} "
            f"| {_mb(r['peak_torch'])} / {_mb(r['peak_ours'])} |")
    return "\n".join(lines)


def run(layers: List[str], threads: List[int], batch: int, repeat: int, algo: str) -> List[dict]:
    rows = []
    saved_threads = torch.get_num_threads()
    try:
        for nt in threads:
            torch.set_num_threads(nt)
            for name in layers:
                for layer in LAYER_SETS[name]:
                    row = measure_layer(layer, batch, repeat, algo)
                    row["threads"] = nt
                    rows.append(row)
    finally:
        torch.set_num_threads(saved_threads)
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cnnkern.bench.fused",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", default="resnet18,vgg16",
                   help=f"comma-separated sets: {', '.join(LAYER_SETS)}")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median)")
    p.add_argument("--algo", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny shapes, batch 2, 1 repeat")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if argv is None and sys.platform.startswith("linux") and _MMAP_ENV not in os.environ:
        # Re-run with freed tensors returned to the OS, so that the peak-RSS reading is the
        # step's own peak (see the module docstring).
        env = dict(os.environ, **{_MMAP_ENV: "65536"})
        os.execve(sys.executable, [sys.executable, "-m", __spec__.name] + sys.argv[1:], env)
    layers = ["quick"] if args.quick else [s for s in args.layers.split(",") if s]
    for s in layers:
        if s not in LAYER_SETS:
            raise SystemExit(f"unknown layer set {s!r}; choose from {', '.join(LAYER_SETS)}")
    threads = [int(t) for t in args.threads.split(",") if t]
    batch, repeat = (2, 1) if args.quick else (args.batch, args.repeat)
    rows = run(layers, threads, batch, repeat, args.algo)
    print(f"# cnnkern fused conv+BN+ReLU vs torch Conv2d->BatchNorm2d->ReLU, CPU, batch {batch}, "
          f"median of {repeat}; x = torch time / cnnkern time")
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
