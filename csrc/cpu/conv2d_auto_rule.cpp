// What algo="auto" runs on the CPU: the fastest algorithm for the shape class in the
// benchmarks (bench/results/cpu_*; `python -m cnnkern --device cpu --passes all --threads 2`
// on the 2-core Zen 3 CI machine), among those whose float32 error stays at PyTorch's level.
//
//  * 3x3, stride 1, dilation 1, float32, >= 16 input and output channels per group:
//    winograd_f2, every pass. On VGG16 at batch 8 it ran 1.3-2.1x PyTorch's forward,
//    1.2-2.4x its grad-input and 1.5-2.6x its grad-weight, against 0.7-1.8x for im2col, with
//    F(2x2)'s error at PyTorch's (bench/results/cpu_vgg16_*_2026-11-22).
//    F(4x4) (`winograd`) is faster still on large images (2.3-2.7x) but its float32 error is
//    5-10x PyTorch's, so it is opt-in (algo="winograd", or the autotuner), never a silent
//    trade of accuracy for speed. float64 has only portable Winograd kernels: im2col there.
//  * few channels per group (depthwise, narrow grouped convs, fewer than 8 input channels
//    into fewer than 32 filters, a 3-channel image layer's grad-weight at batch 1): direct.
//    A GEMM with a K or N dimension below ~8 wastes most of its register tile: depthwise 3x3
//    ran 0.45x/0.55x/1.4x PyTorch (fwd/grad-input/grad-weight) on direct, 0.27x/0.58x/0.22x
//    on im2col.
//  * everything else (1x1, strided, large kernels, dilated): im2col. ResNet-50's 1x1 ran
//    1.2-1.3x PyTorch on im2col against 0.4-0.5x on direct; its 3x3 stride 2 0.8-1.3x
//    against 0.7-0.8x.
//
// Any algorithm this rule does not name comes after, by its registered auto_priority.

#include "core/winograd.h"
#include "ops/conv2d_algo.h"

namespace cnnkern {
namespace {

std::vector<std::string> cpu_auto_rule(const Conv2dProblem& p, at::ScalarType dtype,
                                       ConvPass pass) {
  const int64_t c = p.C_per_group(), k = p.K_per_group();
  if (dtype == at::kFloat && winograd::supports_shape(p) && c >= 16 && k >= 16)
    return {"winograd_f2", "im2col", "direct"};
  // A 3-channel first layer's grad-weight: direct at batch 1 (1.1x PyTorch against im2col's
  // 0.8x at 224x224), im2col from a few images on (batch 8: 1.8x against 0.9x).
  const bool small_first_layer_grad_weight =
      pass == ConvPass::BackwardWeight && p.N * p.P * p.Q < (int64_t(1) << 17);
  // Few input channels and few filters (LeNet-5's C3, 6 -> 16): direct 1.1x against 0.45x.
  const bool narrow =
      k < 8 || (c < 8 && (p.groups > 1 || k < 32 || small_first_layer_grad_weight));
  if (narrow) return {"direct", "im2col"};
  return {"im2col", "direct"};
}

}  // namespace

CONV2D_REGISTER_AUTO_RULE(Backend::CPU, cpu_auto_rule);

}  // namespace cnnkern
