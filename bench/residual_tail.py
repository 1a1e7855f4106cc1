"""The ResNet block tail alone, forward + backward, before / after fusing the residual add
and ReLU: `kept` = bn_relu_train(relu=False), torch add_ and relu_ (what convert ran with
fuse_residual=False), `fused` = bn_add_relu_train; each on the conv output z of ResNet-18's
four block shapes at batch 8, 224x224, interleaved in one process, median ms per call.

    OMP_WAIT_POLICY=passive python -m bench.residual_tail [--threads 2] [--rounds 15]
        [--metric busiest]
"""

from __future__ import annotations

import os

import torch

from .block_relu_fusion import start_timing, timing_parser
from .small_planes import interleaved_ms

ops = torch.ops.cnnkern
SHAPES = [(8, 64, 56, 56), (8, 128, 28, 28), (8, 256, 14, 14), (8, 512, 7, 7)]


def tail_inputs(shape):
    """z, residual, gamma, beta (leaves that take gradients) and the output's gradient."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(shape, generator=g).requires_grad_()
    r = torch.randn(shape, generator=g).requires_grad_()
    w = torch.rand(shape[1], generator=g).add_(0.5).requires_grad_()
    b = torch.randn(shape[1], generator=g).requires_grad_()
    return z, r, w, b, torch.randn(shape, generator=g)


def tails(z, r, w, b, dy):

    def kept():
        out = ops.bn_relu_train(z, w, b, 1e-5, False)[0]
        out += r
        torch.relu_(out).backward(dy)

    def fused():
        ops.bn_add_relu_train(z, r, w, b, 1e-5)[0].backward(dy)
    return {"kept": kept, "fused": fused}


def main(argv=None) -> int:
    args = start_timing(timing_parser(__doc__.splitlines()[0]).parse_args(argv))
    print(f"{'shape':22} {'kept ms':>9} {'fused ms':>9} {'kept/fused':>11}")
    for shape in SHAPES:
        r = interleaved_ms(tails(*tail_inputs(shape)), args.rounds, args.metric)
        print(f"{str(shape):22} {r['kept']:9.2f} {r['fused']:9.2f} "
              f"{r['kept'] / r['fused']:10.2f}x")
    print(f"load {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
