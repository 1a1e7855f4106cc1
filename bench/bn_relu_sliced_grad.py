"""Before / after: bn_relu_backward reading a channel-slice grad_out as it is (the CPU kernels'
backward_reads_batch_strided) instead of copying it contiguous first, in one process.

torch.cat's backward hands each branch of an inception module a channel slice of the
concatenation's gradient; the branch's last layer is a fused conv + BN + ReLU, whose backward
op copied that slice before reading it. This records every bn_relu_backward call of one
training step of a converted model whose grad_out is such a slice (GoogLeNet: the last layer
of every inception branch), then times each call interleaved with the old behaviour, the same
call on grad_out.contiguous() (what the op did itself before), and prints the sums.

    OMP_WAIT_POLICY=passive python -m bench.bn_relu_sliced_grad [--model googlenet]
        [--batch 8] [--size 224] [--threads 2] [--rounds 9] [--metric busiest]
    (raw output: bench/results/cpu_2026-12-07_bn_relu_sliced_grad_googlenet_loaded.txt)
"""

from __future__ import annotations

import argparse
import os
from unittest import mock

import torch

import cnnkern
from cnnkern._registrations import bn_relu as bn_relu_registration
from . import model_engines
from .models import inputs
from .small_planes import interleaved_ms


class _Recorder:
    """torch.ops.cnnkern with bn_relu_backward wrapped to record its sliced grad_outs."""

    def __init__(self, ops):
        self._ops = ops
        self.calls = []

    def __getattr__(self, name):
        return getattr(self._ops, name)

    def bn_relu_backward(self, grad_out, z, *rest):
        if not grad_out.is_contiguous():
            self.calls.append((grad_out.detach().clone(), grad_out.stride(), z.detach(),
                               tuple(r.detach() if isinstance(r, torch.Tensor) else r
                                     for r in rest)))
        return self._ops.bn_relu_backward(grad_out, z, *rest)


def sliced_calls(name: str, batch: int, size: int):
    """(grad_out of the recorded strides, z, the other arguments) of each bn_relu_backward
    call with a non-contiguous grad_out in one training step of cnnkern.convert(name)."""
    x, labels = inputs(batch, size)
    base = model_engines.build_model(name)
    model_engines.calibrate_batch_norm(base, x)
    step = model_engines.train_step(cnnkern.convert(base), x, labels)
    recorder = _Recorder(bn_relu_registration.ops)
    with mock.patch.object(bn_relu_registration, "ops", recorder):
        step()
    calls = []
    for values, stride, z, rest in recorder.calls:
        n, k, h, w = values.shape
        # The same strides: a channel slice of a tensor with stride[0] / (h * w) channels.
        big = torch.zeros(n, stride[0] // (h * w), h, w)
        dy = big[:, :k]
        assert dy.stride() == stride, (dy.stride(), stride)
        dy.copy_(values)
        calls.append((dy, z, rest))
    return calls


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="googlenet")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--metric", choices=["wall", "busiest"], default="wall")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ops = torch.ops.cnnkern
    calls = sliced_calls(args.model, args.batch, args.size)
    print(f"torch {torch.__version__} | {cnnkern.tuning.cpu_model()} | {args.threads} threads | "
          f"metric {args.metric} | load {os.getloadavg()[0]:.1f} before")
    print(f"{args.model} batch {args.batch} {args.size}x{args.size}: {len(calls)} "
          f"bn_relu_backward calls with a channel-slice grad_out in one training step")
    fns = {}
    for i, (dy, z, rest) in enumerate(calls):
        fns[f"copy{i}"] = lambda dy=dy, z=z, rest=rest: ops.bn_relu_backward(dy.contiguous(), z,
                                                                             *rest)
        fns[f"as_is{i}"] = lambda dy=dy, z=z, rest=rest: ops.bn_relu_backward(dy, z, *rest)
    ms = interleaved_ms(fns, args.rounds, args.metric)
    before = sum(ms[f"copy{i}"] for i in range(len(calls)))
    after = sum(ms[f"as_is{i}"] for i in range(len(calls)))
    print(f"sum of medians: copied first (before) {before:.2f} ms, read as it is {after:.2f} ms, "
          f"saved {before - after:.2f} ms per training step ({before / max(after, 1e-9):.2f}x)")
    print(f"load {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
