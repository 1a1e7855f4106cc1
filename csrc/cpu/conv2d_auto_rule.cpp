// What algo="auto" runs on the CPU: the fastest algorithm for the shape class in the
// benchmarks (bench/results/cpu_*; `python -m cnnkern --device cpu --passes all --threads 2`
// on the 2-core Zen 3 CI machine), among those whose float32 error stays at PyTorch's level.
//
//  * 3x3, stride 1, dilation 1, float32, >= 16 input and output channels per group:
//    winograd_f2 forward and grad-input. On VGG16 it ran 1.6-1.9x PyTorch's forward and
//    grad-input, against 0.7-1.0x for im2col, with F(2x2)'s error at PyTorch's.
//    Grad-weight stays on im2col (1.0-1.4x at batch 1, 1.3-2.8x at batch 8): Winograd's
//    grad-weight ran 1.7-2.3x on an idle machine, but it opens three parallel regions per
//    block of tiles, and on a machine with other work each region waits for a descheduled
//    thread: 64-channel layers at batch 8 then took 10-40x longer than on one thread.
//    F(4x4) (`winograd`) is faster still on large images (2.3-2.7x) but its float32 error is
//    5-10x PyTorch's, so it is opt-in (algo="winograd", or the autotuner), never a silent
//    trade of accuracy for speed. float64 has only portable Winograd kernels: im2col there.
//  * few channels per group (depthwise, narrow grouped convs, a 3-channel image layer's
//    grad-weight): direct. A GEMM with a K or N dimension below ~8 wastes most of its
//    register tile, so im2col ran 2-4x slower than the direct kernels there.
//  * everything else (1x1, strided, large kernels, dilated): im2col, which ran 0.7-1.0x
//    PyTorch's time on those layers against direct's 0.4-0.8x.
//
// Any algorithm this rule does not name comes after, by its registered auto_priority.

#include "common/conv2d_algo.h"

namespace cnnkern {
namespace {

bool winograd_shape(const Conv2dProblem& p) {
  return p.R == 3 && p.S == 3 && p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 &&
         p.dil_w == 1;
}

std::vector<std::string> cpu_auto_rule(const Conv2dProblem& p, at::ScalarType dtype,
                                       ConvPass pass) {
  const int64_t c = p.C_per_group(), k = p.K_per_group();
  if (dtype == at::kFloat && winograd_shape(p) && c >= 16 && k >= 16 &&
      pass != ConvPass::BackwardWeight)
    return {"winograd_f2", "im2col", "direct"};
  const bool narrow = k < 8 || (c < 8 && (p.groups > 1 || pass == ConvPass::BackwardWeight));
  if (narrow) return {"direct", "im2col"};
  return {"im2col", "direct"};
}

}  // namespace

CONV2D_REGISTER_AUTO_RULE(Backend::CPU, cpu_auto_rule);

}  // namespace cnnkern
