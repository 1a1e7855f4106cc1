#pragma once
// The activation the fused BatchNorm training op (ops/bn_relu_ops.h) applies after its affine
// map v = z * scale + shift: none, ReLU max(v, 0), or ReLU clamped above, min(max(v, 0), max)
// (ReLU6, MobileNetV2's activation, is max = 6). Torch-free: the op glue, the CPU kernels and
// the CUDA launchers all take it.

namespace cnnkern {

struct BnActivation {
  bool relu = false;     // clamp below at 0
  bool has_max = false;  // and above at `max` (only with relu; max > 0)
  double max = 0.0;
};

}  // namespace cnnkern
