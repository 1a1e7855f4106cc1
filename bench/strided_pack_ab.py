"""im2col's two ways of reading strided columns, one against the other, per pass: the strided
reads (CNNKERN_IM2COL_PACK=runs) and the image split into its column stride phases (=phases,
cpu/im2col/stride_phases.h), on ResNet-50's 7x7 stride-2 stem and two 3x3 stride-2 layers at
batch 1. One thread, the calling thread's CPU time, the two called alternately, min of 15: the
split's gain is 5-15%, below what a loaded machine's wall time resolves.

    PYTHONPATH=. python -m bench.strided_pack_ab
"""

import os
import time

import torch
import torch.nn.functional as F

import cnnkern  # registers torch.ops.cnnkern

LAYERS = [("stem 3x224->64 7x7s2 N1", (1, 3, 224, 64, 7, 2, 3)),
          ("128x56->128 3x3s2 N1", (1, 128, 56, 128, 3, 2, 1)),
          ("512x14->512 3x3s2 N1", (1, 512, 14, 512, 3, 2, 1))]


def calls(N, C, H, K, R, s, p):
    x, w = torch.randn(N, C, H, H), torch.randn(K, C, R, R)
    go = torch.randn(F.conv2d(x, w, None, s, p).shape)
    ops, args = torch.ops.cnnkern, ([s, s], [p, p], [1, 1], 1, "im2col", False)
    return {"fwd": lambda: ops.conv2d(x, w, None, *args),
            "bwd_input": lambda: ops.conv2d_backward_input(go, w, list(x.shape), *args),
            "bwd_weight": lambda: ops.conv2d_backward_weight(go, x, list(w.shape), *args)}


def main(rounds=15):
    torch.set_num_threads(1)
    for name, shape in LAYERS:
        fns = calls(*shape)
        for pass_, fn in fns.items():
            t = {"runs": [], "phases": []}
            for _ in range(rounds):
                for method in t:
                    os.environ["CNNKERN_IM2COL_PACK"] = method
                    start = time.thread_time()
                    fn()
                    t[method].append(time.thread_time() - start)
            runs, phases = min(t["runs"]), min(t["phases"])
            print(f"{name:26} {pass_:10} runs {runs * 1e3:7.2f} ms  phases {phases * 1e3:7.2f} ms  "
                  f"(min of {rounds}, thread CPU time, 1 thread) ratio {runs / phases:.2f}",
                  flush=True)
    os.environ.pop("CNNKERN_IM2COL_PACK")


if __name__ == "__main__":
    main()
