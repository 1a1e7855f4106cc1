// What algo="auto" runs on the CPU: the fastest algorithm for the shape class in the
// benchmarks (bench/results/cpu_*; `python -m cnnkern --device cpu --passes all --threads 2`
// on the 2-core Zen 3 CI machine), among those whose float32 error stays at PyTorch's level.
//
//  * 3x3, stride 1, dilation 1, float32 (or float16/bfloat16, which the CPU kernels compute in
//    float32: cpu/common/half_via_float32.h), >= 16 input and output channels per group:
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

#include <string>

#include "core/winograd.h"
#include "cpu/common/half_via_float32.h"
#include "ops/conv2d_algo.h"

namespace cnnkern {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

// Each clause returns its preference order with its reason in words, the case first and the
// problem's own numbers after, so explain() quotes the branch that decided.
Conv2dAutoChoice cpu_auto_rule(const Conv2dProblem& p, at::ScalarType dtype, ConvPass pass) {
  const int64_t c = p.C_per_group(), k = p.K_per_group();
  const std::string per_group = "C/groups " + str(c) + ", K/groups " + str(k);
  const bool winograd_shape = winograd::supports_shape(p);
  const bool in_float32 = cpu::compute_dtype(dtype) == at::kFloat;
  const std::string computed =
      dtype == at::kFloat ? "float32" : std::string(c10::toString(dtype)) + " (computed in float32)";
  if (in_float32 && winograd_shape && c >= 16 && k >= 16)
    return {{"winograd_f2", "im2col", "direct"},
            "3x3 stride-1 dilation-1 " + computed + " with at least 16 input and output "
            "channels per group (" + per_group + "): winograd_f2, the fastest at PyTorch's "
            "float32 accuracy (F(4x4) winograd is faster still but 5-10x less accurate, so "
            "never picked by auto)"};
  // A 3-channel first layer's grad-weight: direct at batch 1 (1.1x PyTorch against im2col's
  // 0.8x at 224x224), im2col from a few images on (batch 8: 1.8x against 0.9x).
  const bool small_first_layer_grad_weight =
      pass == ConvPass::BackwardWeight && p.N * p.P * p.Q < (int64_t(1) << 17);
  // Few input channels and few filters (LeNet-5's C3, 6 -> 16): direct 1.1x against 0.45x.
  const std::string narrow_tail = " (" + per_group + ", groups " + str(p.groups) +
                                  "): direct; a GEMM with a dimension below ~8 wastes most of "
                                  "its register tile";
  if (c < 8 && p.groups > 1)
    return {{"direct", "im2col"},
            "grouped (depthwise or narrow) with fewer than 8 input channels per group" +
                narrow_tail};
  if (k < 8)
    return {{"direct", "im2col"}, "fewer than 8 filters per group" + narrow_tail};
  if (c < 8 && k < 32)
    return {{"direct", "im2col"},
            "fewer than 8 input channels into fewer than 32 filters" + narrow_tail};
  if (c < 8 && small_first_layer_grad_weight)
    return {{"direct", "im2col"},
            "grad-weight of a layer with fewer than 8 input channels over fewer than 2^17 "
            "output positions (N*P*Q = " + str(p.N * p.P * p.Q) + ")" + narrow_tail};
  // Why the Winograd clause did not apply to a 3x3 stride-1 problem, else the shape class.
  std::string which;
  if (winograd_shape && !in_float32)
    which = "3x3 stride-1 in " + std::string(c10::toString(dtype)) +
            " (Winograd is auto's choice in float32 only; float64 has only portable Winograd "
            "kernels)";
  else if (winograd_shape)
    which = "3x3 stride-1 with fewer than 16 input or output channels per group";
  else
    which = "not 3x3 stride-1 dilation-1 (a " + str(p.R) + "x" + str(p.S) + " kernel, stride " +
            str(p.stride_h) + "x" + str(p.stride_w) + ", dilation " + str(p.dil_h) + "x" +
            str(p.dil_w) + ": 1x1, strided, large or dilated kernels)";
  return {{"im2col", "direct"},
          "everything else: " + which + ", with enough channels per group for a GEMM (" +
              per_group + "): im2col"};
}

}  // namespace

CONV2D_REGISTER_AUTO_RULE(Backend::CPU, cpu_auto_rule);

}  // namespace cnnkern
