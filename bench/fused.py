"""Fused conv + BatchNorm + ReLU against the unfused torch sequence, on the CPU or a GPU.

    python -m cnnkern.bench.fused                    # ResNet-18 + VGG16 blocks, batch 8, 1 and 2 threads
    python -m cnnkern.bench.fused --threads 1 --layers resnet18 --repeat 5
    python -m cnnkern.bench.fused --device cuda --batch 32 --dtypes float32,float16 --json r.json
    python -m cnnkern.bench.fused --quick            # tiny shapes (the test runs this)

For each block shape it measures, in one process (and on the CPU at each thread count):

- eval: cnnkern.nn.ConvBNReLU2d (BN folded into the conv, ReLU in the conv's epilogue, the
  folded weights cached) against torch nn.Sequential(Conv2d, BatchNorm2d, ReLU).eval(), both
  under torch.no_grad();
- train: one training step (forward + backward with a fixed grad_output) of both;
- saved: bytes saved for backward (torch.autograd.graph.saved_tensors_hooks; parameters and
  the block's input, which every variant saves, left out);
- peak: the extra memory of one training step. CUDA: torch.cuda.max_memory_allocated()
  after reset_peak_memory_stats(), minus memory_allocated() before. CPU: the kernel's peak-RSS
  mark is reset (/proc/self/clear_refs = 5) before the step and VmHWM - VmRSS(before) read
  after it; glibc keeps freed memory unless large blocks are mmapped, so the command
  re-executes itself with MALLOC_MMAP_THRESHOLD_=65536 (every tensor > 64 KiB is returned to
  the OS when freed). Linux only; "n/a" elsewhere.

Times are medians of --repeat samples after a warm-up, torch and cnnkern interleaved so that
load from other processes hits both alike; on a GPU a sample is CUDA-event time over enough
back-to-back calls to last ~20 ms (launch overhead amortised, as in a model). cuDNN runs with
TF32 off (our float32 is exact fp32). Ratios are torch time / cnnkern time (> 1: faster).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

import cnnkern
from . import runner

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


def _sample_ms(fn, device: torch.device, calls: int = 1) -> float:
    """Milliseconds per call of `calls` back-to-back calls (CUDA events on a GPU)."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t0) * 1e3 / calls
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / calls


def _calls_per_sample(fn, device: torch.device) -> int:
    """1 on the CPU; on a GPU enough calls for a ~20 ms sample (at most 200)."""
    if device.type != "cuda":
        return 1
    one = _sample_ms(fn, device, 3)
    return max(1, min(200, int(20.0 / max(one, 1e-3))))


def _interleaved(fns: Dict[str, callable], repeat: int, device: torch.device) -> Dict[str, float]:
    for f in fns.values():  # warm-up (allocations, thread pools, folded-weight cache)
        f()
    calls = {k: _calls_per_sample(f, device) for k, f in fns.items()}
    samples = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            samples[k].append(_sample_ms(f, device, calls[k]))
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


def peak_extra_bytes(fn, device: torch.device = torch.device("cpu")) -> Optional[int]:
    """Extra bytes at the peak of fn(): allocated CUDA memory on a GPU, resident memory on
    the CPU (Linux; None where unsupported)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return max(torch.cuda.max_memory_allocated(device) - base, 0)
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


def make_pair(cin: int, cout: int, stride: int, algo: str,
              device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32):
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
    return ref.to(device, dtype), ours.to(device, dtype)


def measure_layer(layer, batch: int, repeat: int, algo: str,
                  device: torch.device = torch.device("cpu"),
                  dtype: torch.dtype = torch.float32) -> dict:
    name, cin, cout, hw, stride = layer
    ref, ours = make_pair(cin, cout, stride, algo, device, dtype)
    x = torch.randn(batch, cin, hw, hw, device=device, dtype=dtype)
    row = {"layer": name, "shape": f"{batch}x{cin}x{hw}x{hw} -> {cout}, s{stride}",
           "dtype": str(dtype).replace("torch.", "")}

    ref.eval(), ours.eval()
    with torch.no_grad():
        g = torch.randn(ref(x).shape, device=device, dtype=dtype)
        err = float((ours(x).double() - ref(x).double()).abs().max())

        def ev(m):
            return lambda: m(x)
        t = _interleaved({"torch": ev(ref), "ours": ev(ours)}, repeat, device)
    row.update(eval_torch_ms=t["torch"], eval_ours_ms=t["ours"], eval_ratio=t["torch"] / t["ours"],
               eval_max_abs_err=err)

    ref.train(), ours.train()

    def step(m):
        def run():
            xi = x.detach().requires_grad_()
            m(xi).backward(g)
            m.zero_grad(set_to_none=True)
        return run
    t = _interleaved({"torch": step(ref), "ours": step(ours)}, repeat, device)
    row.update(train_torch_ms=t["torch"], train_ours_ms=t["ours"],
               train_ratio=t["torch"] / t["ours"])
    row.update(saved_torch=saved_bytes(ref, x), saved_ours=saved_bytes(ours, x))
    row.update(peak_torch=peak_extra_bytes(step(ref), device),
               peak_ours=peak_extra_bytes(step(ours), device))
    return row


def _mb(b) -> str:
    return "n/a" if b is None else f"{b / 2**20:.1f}"


def format_rows(rows: List[dict]) -> str:
    head = ("| threads | dtype | layer | eval torch ms | eval ours ms | eval x | train torch ms | "
            "train ours ms | train x | saved MB torch/ours | peak MB torch/ours |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['threads']} | {r['dtype']} | {r['layer']} | {r['eval_torch_ms']:.2f} | {r['eval_ours_ms']:.2f} "
            f"| {r['eval_ratio']:.2f} | {r['train_torch_ms']:.2f} | {r['train_ours_ms']:.2f} "
            f"| {r['train_ratio']:.2f} | {_mb(r['saved_torch'])} / {_mb(r['saved_ours'])} "
            f"| {_mb(r['peak_torch'])} / {_mb(r['peak_ours'])} |")
    return "\n".join(lines)


def run(layers: List[str], threads: List[int], batch: int, repeat: int, algo: str,
        device: torch.device = torch.device("cpu"),
        dtypes: Sequence[torch.dtype] = (torch.float32,)) -> List[dict]:
    rows = []
    saved_threads = torch.get_num_threads()
    saved_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # cuDNN in exact fp32, like our float32
    try:
        for nt in threads:
            torch.set_num_threads(nt)
            for dtype in dtypes:
                for name in layers:
                    for layer in LAYER_SETS[name]:
                        row = measure_layer(layer, batch, repeat, algo, device, dtype)
                        row["threads"] = nt
                        rows.append(row)
    finally:
        torch.set_num_threads(saved_threads)
        torch.backends.cudnn.allow_tf32 = saved_tf32
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cnnkern.bench.fused",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", default="resnet18,vgg16",
                   help=f"comma-separated sets: {', '.join(LAYER_SETS)}")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtypes", default=None,
                   help="comma-separated: float32 (CPU default), float16, bfloat16, float64; "
                        "GPU default float32,float16")
    p.add_argument("--threads", default=None,
                   help="comma-separated CPU thread counts (CPU default 1,2; ignored on a GPU)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median)")
    p.add_argument("--algo", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny shapes, batch 2, 1 repeat")
    p.add_argument("--json", default=None, help="also write the environment and rows here")
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
    device = torch.device(args.device)
    if device.type == "cuda" and not cnnkern.cuda_available():
        raise SystemExit("--device cuda: cnnkern's CUDA kernels are not usable here "
                         f"(built with CUDA: {cnnkern.cuda_built()}, "
                         f"torch.cuda.is_available(): {torch.cuda.is_available()})")
    on_gpu = device.type == "cuda"
    threads = [torch.get_num_threads()] if on_gpu else \
        [int(t) for t in (args.threads or "1,2").split(",") if t]
    dtypes = [_dtype(d) for d in (args.dtypes or ("float32,float16" if on_gpu else "float32")).split(",") if d]
    batch, repeat = (2, 1) if args.quick else (args.batch, args.repeat)
    env = runner.environment(device)
    env["threads"] = threads
    rows = run(layers, threads, batch, repeat, args.algo, device, dtypes)
    where = env.get("gpu", env["cpu"]) if on_gpu else env["cpu"]
    print(f"# cnnkern fused conv+BN+ReLU vs torch Conv2d->BatchNorm2d->ReLU on {device.type} "
          f"({where}), batch {batch}, algo {args.algo}, median of {repeat}; "
          f"x = torch time / cnnkern time")
    print(f"# {env['date']}, torch {env['torch']}, CUDA runtime {env['cuda_runtime']}, "
          f"cnnkern {env['cnnkern']}" + (", cuDNN TF32 off" if on_gpu else ""))
    print(format_rows(rows))
    if args.json:
        runner.write(args.json, json.dumps({"environment": env, "algo": args.algo,
                                            "batch": batch, "rows": rows}, indent=1))
    return 0


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise SystemExit(f"--dtypes: unknown floating dtype {name!r}")
    return dtype


if __name__ == "__main__":
    sys.exit(main())
