"""The fused BN+ReLU backward against torch's batch_norm + relu backward (issue 16).

    PYTHONPATH=. python bench/bn_relu.py [--threads 1,2] [--runs 15] [--dtypes float32,float64]

For each shape, dtype and layout (NCHW, channels_last), in one process and interleaved (the
runs take turns, so load from other processes hits all of them alike), median of --runs:

- torch:    autograd.grad of relu(F.batch_norm(z, training=True)) w.r.t. (z, gamma, beta)
- ours:     the same through cnnkern's autograd (bn_relu_train -> bn_relu_backward)
- op:       torch.ops.cnnkern.bn_relu_backward alone (no autograd engine)

and the ratios torch / ours, torch / op (above 1: cnnkern is faster). The forward is built
once per case and its graph retained, so only the backward is timed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import cnnkern  # also loads torch.ops.cnnkern

SHAPES = [(8, 64, 56, 56), (8, 64, 112, 112), (8, 256, 14, 14), (32, 512, 7, 7),
          (1, 64, 112, 112)]
EPS = 1e-5


def cpu_model() -> str:
    return (f"{cnnkern.tuning.cpu_model()} ({cnnkern.tuning.cpu_isa()}), "
            f"{torch.get_num_threads()} threads set")


def make_case(shape, dtype, channels_last):
    torch.manual_seed(0)
    k = shape[1]
    z = torch.randn(shape, dtype=dtype) * 2 + 0.5
    g = torch.randn(shape, dtype=dtype)
    if channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
        g = g.contiguous(memory_format=torch.channels_last)
    gamma = torch.rand(k, dtype=dtype) + 0.5
    beta = torch.randn(k, dtype=dtype)
    zt, gt, bt = (t.clone().requires_grad_() for t in (z, gamma, beta))
    y_torch = F.relu(F.batch_norm(zt, None, None, gt, bt, training=True, eps=EPS))
    zo, go, bo = (t.clone().requires_grad_() for t in (z, gamma, beta))
    y_ours, mean, invstd, _var = torch.ops.cnnkern.bn_relu_train(zo, go, bo, EPS, True)

    def torch_bwd():
        return torch.autograd.grad(y_torch, (zt, gt, bt), g, retain_graph=True)

    def ours_bwd():
        return torch.autograd.grad(y_ours, (zo, go, bo), g, retain_graph=True)

    def op_bwd():
        return torch.ops.cnnkern.bn_relu_backward(g, z, mean, invstd, gamma, beta, True)

    return {"torch": torch_bwd, "ours": ours_bwd, "op": op_bwd}


def time_interleaved(fns, runs):
    for fn in fns.values():  # warm-up: allocator, thread pool, first-touch pages
        fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--layouts", default="nchw,channels_last")
    args = ap.parse_args()
    for nt in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(nt)
        print(f"# bn_relu backward, {cpu_model()}, torch {torch.__version__}, "
              f"median of {args.runs} interleaved runs, ms")
        print(f"{'shape':>18} {'dtype':>8} {'layout':>13} {'torch':>8} {'ours':>8} {'op':>8} "
              f"{'torch/ours':>10} {'torch/op':>9}")
        for layout in args.layouts.split(","):
            for dtype in (getattr(torch, d) for d in args.dtypes.split(",")):
                for shape in SHAPES:
                    t = time_interleaved(make_case(shape, dtype, layout == "channels_last"),
                                         args.runs)
                    print(f"{'x'.join(map(str, shape)):>18} {str(dtype)[6:]:>8} {layout:>13} "
                          f"{t['torch']:8.3f} {t['ours']:8.3f} {t['op']:8.3f} "
                          f"{t['torch'] / t['ours']:10.2f} {t['torch'] / t['op']:9.2f}",
                          flush=True)
        print()


if __name__ == "__main__":
    main()
