"""Before / after fusing a ResNet block's tail (`out += identity`, ReLU) into its last conv + BN
(cnnkern/_block_forward.py, ResidualBlockForward), in one process: a model's training step
(forward + cross-entropy + backward, batch 8, 224x224) for torch, cnnkern.convert with
fuse_residual=False (conv + BN fused, then torch's add_ and relu_ forward, threshold_backward
backward) and cnnkern.convert as it is (cnnkern::bn_add_relu_train), timed in interleaved
rounds, median.

    OMP_WAIT_POLICY=passive python -m bench.resnet_residual_fusion [--models resnet18]
        [--threads 2] [--rounds 15] [--metric busiest]
    (raw output: bench/results/cpu_2026-12-07_resnet_residual_fusion_resnet18_loaded.txt)

--metric busiest (bench/small_planes.py says why) needs OMP_WAIT_POLICY=passive.
"""

from __future__ import annotations

import cnnkern
from .block_relu_fusion import compare_main


def main(argv=None) -> int:
    return compare_main(argv, __doc__.splitlines()[0], "resnet18",
                        lambda base: {"torch": base,
                                      "kept": cnnkern.convert(base, fuse_residual=False),
                                      "fused": cnnkern.convert(base)})


if __name__ == "__main__":
    raise SystemExit(main())
