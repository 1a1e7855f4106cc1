// What algo="auto" runs on the CPU: per pass, the fastest algorithm for the shape class among
// those whose float32 error stays at PyTorch's level (F(4x4) `winograd` is 5-10x less accurate,
// so it is opt-in: algo="winograd" or the autotuner, never a silent trade of accuracy for speed;
// float64 has only portable Winograd kernels, so Winograd is auto's choice in float32 only).
//
// Measured with `OMP_WAIT_POLICY=PASSIVE cnnkern auto-regret --clock cpu --rounds 5` (bench/
// auto_regret.py: every algorithm that can run the shape and auto, interleaved in one process,
// 2 threads) on the default, vgg16, resnet50 and googlenet layer sets, batch as in the sets, on
// an Intel Xeon (Sapphire Rapids class, AVX-512 incl. avx512_bf16/fp16, 2 cores) loaded by other
// jobs (load average ~20): bench/results/cpu_2026-12-07_auto_regret_*. The figures below are
// time ratios of the two algorithms in that run (loser / winner); each clause's reason quotes
// them, so explain() shows what the choice rests on. The earlier rule's figures were taken on an
// AMD EPYC Zen 3 (AVX2) with older kernels; its clauses that this run confirms are kept.
//
// To re-tune after a kernel changes: run the command above with --json, read the "worst" list,
// and move a threshold in kTuning (each says which layers decide it) or a clause's order; then
// update the figures in the clause's reason from the same run.

#include <algorithm>
#include <string>

#include "core/winograd.h"
#include "cpu/common/half_via_float32.h"
#include "ops/conv2d_algo.h"

namespace cnnkern {
namespace {

// Every threshold of the rule, in one place; the layers that decide each one are named.
struct Tuning {
  // Fewer input channels per group than this is "narrow" (depthwise, LeNet-5's C3, the
  // 3-channel first layers): a GEMM with a dimension below ~8 wastes its register tile.
  int64_t narrow_channels = 8;
  // Narrow input into fewer filters than this: direct in every pass (lenet5.c3, 6 -> 16).
  int64_t narrow_direct_max_filters = 32;
  // A narrow first layer's grad-weight: direct below this many output positions (N*P*Q) and up
  // to this stride; vgg16.conv1_1 (s1), resnet50/googlenet conv1 (7x7 s2) vs alexnet.conv1 (s4).
  int64_t first_layer_grad_weight_positions = int64_t(1) << 17;
  int64_t first_layer_grad_weight_max_stride = 2;
  // Large kernels (R*S >= this) with few (but at least narrow_channels: the 3-channel 7x7
  // conv1 of resnet50/googlenet runs im2col 1.5x faster forward) channels: direct forward up to small_kernel_fwd_filters
  // filters and in the backward passes up to small_kernel_bwd_filters (googlenet's 5x5
  // branches: 16..32 -> 32..64 direct, 32 -> 96/128 and 48 -> 128 im2col).
  int64_t large_kernel_area = 25;
  int64_t large_kernel_max_channels = 32;
  int64_t large_kernel_fwd_filters = 64;
  int64_t large_kernel_bwd_filters = 32;
  // Winograd F(2x2) needs at least this many input and output channels per group.
  int64_t winograd_min_channels = 16;
  // "Wide": at least this many input channels per group; "small plane": fewer output positions
  // per image (P*Q) than small_plane (14x14). 3x3 stride-1 forward runs winograd_f2 on every
  // plane (2026-12-07: googlenet inception5a/5b at 7x7 1.6x faster than im2col, 4a-4e at 14x14
  // 1.0-1.8x; the kernels' small-plane changes of that day reversed the older measurement).
  int64_t wide_channels = 256;
  int64_t small_plane = 14 * 14;
  // Grad-input runs im2col on planes under this unless wide: googlenet inception4a-5b's 3x3
  // (96-192 channels at 14x14 and 7x7) ran im2col 1.1-1.3x faster than winograd_f2.
  int64_t small_plane_grad_input = 28 * 28;
  // Grad-weight with at least mid_channels input channels and at most mid_max_fanout filters
  // per channel on planes up to small_plane: winograd_f2 (googlenet inception4c-5b).
  int64_t mid_channels = 128;
  int64_t mid_max_fanout = 2;
  // ... with at least mid_min_batch images or a 14x14 plane: at batch 1 im2col is 1.7x faster
  // on inception5a/5b (7x7) while winograd_f2 stays 1.2x faster on inception4c-4e (14x14); at
  // batch 2 5a/5b are even and at batch 8 winograd_f2 is 1.4-1.7x faster
  // (`cnnkern auto-regret --clock cpu --passes bwd_weight --batch N`, quiet, 2026-12-07).
  int64_t mid_min_batch = 2;
  // 3x3 stride-1 grad-weight runs winograd_f2 on any plane when a layer has at most
  // any_plane_max_fanout filters per input channel (resnet18/50's 64..512 -> same at 56x56
  // down to 7x7), and on planes of at least small_plane that are wide, or large
  // (>= large_plane) with at most large_plane_max_fanout filters per input channel; im2col
  // otherwise (googlenet conv3 and inception 3b-5b: 1.5-3 filters per channel).
  int64_t any_plane_max_fanout = 1;
  // ... with at least any_plane_min_batch images: resnet50 layer2.1.conv2 (128x28x28) ran
  // im2col 1.3x (batch 1) and 1.4x (batch 2) faster, winograd_f2 1.6x faster at batch 8;
  // layer4.1.conv2 (512x7x7) im2col 1.3x at batch 1, winograd_f2 1.0-1.6x at 2 and 8. Batches
  // 3-7 are not measured; 8 is the batch the whole-model benchmark trains at.
  int64_t any_plane_min_batch = 8;
  int64_t large_plane = 56 * 56;
  int64_t large_plane_max_fanout = 2;
  // Forward of a very wide (>= tiny_plane_channels), non-1x1 layer whose output plane is at
  // most tiny_plane, in a batch under tiny_plane_im2col_batch: direct (resnet50
  // layer4.0.conv2, 512 channels 3x3 stride 2 to 7x7, batch 1: direct 1.31x torch, im2col
  // 0.73x); at batch 8 im2col runs several images per GEMM and wins (0.85-0.91x against
  // direct's 0.50x; batches 2-7 are not measured). With 256 channels (resnet18
  // layer4.0.conv1, 256 -> 512 stride 2 to 7x7) im2col is 1.7x faster.
  int64_t tiny_plane = 7 * 7;
  int64_t tiny_plane_channels = 512;
  int64_t tiny_plane_im2col_batch = 8;
};
constexpr Tuning kTuning{};

std::string str(int64_t v) { return std::to_string(v); }

Conv2dAutoChoice direct(const std::string& why) { return {{"direct", "im2col"}, why + ": direct"}; }
Conv2dAutoChoice im2col(const std::string& why) { return {{"im2col", "direct"}, why + ": im2col"}; }
Conv2dAutoChoice winograd_f2(const std::string& why) {
  return {{"winograd_f2", "im2col", "direct"},
          why + ": winograd_f2, the fastest at PyTorch's float32 accuracy (F(4x4) winograd is "
                "5-10x less accurate, so never picked by auto)"};
}

// The clauses for 3x3 stride-1 float32 layers with enough channels for Winograd F(2x2).
Conv2dAutoChoice winograd_shape_rule(const Conv2dProblem& p, ConvPass pass,
                                     const std::string& head) {
  const int64_t c = p.C_per_group(), k = p.K_per_group(), plane = p.P * p.Q;
  const bool wide = c >= kTuning.wide_channels, small = plane < kTuning.small_plane;
  const std::string numbers = " (C/groups " + str(c) + ", K/groups " + str(k) + ", output " +
                              str(p.P) + "x" + str(p.Q) + ")";
  if (pass != ConvPass::BackwardWeight) {
    if (pass == ConvPass::BackwardInput && plane < kTuning.small_plane_grad_input && !wide)
      return im2col(head + ", grad-input, output plane under " +
                    str(kTuning.small_plane_grad_input) + " positions and fewer than " +
                    str(kTuning.wide_channels) + " input channels" + numbers +
                    ". Measured: im2col 1.1-1.3x faster than winograd_f2 on grad-input of "
                    "googlenet inception4a-5b's 3x3 (96-192 channels at 14x14 and 7x7)");
    return winograd_f2(head + ", forward or grad-input" + numbers +
                       ". Measured: within 10% of the fastest auto-eligible algorithm on "
                       "every such layer of vgg16/resnet18/resnet50/googlenet, 1.6x faster than "
                       "im2col forward on googlenet inception5a/5b (160/192 channels at 7x7)");
  }
  if (k <= kTuning.any_plane_max_fanout * c && p.N >= kTuning.any_plane_min_batch)
    return winograd_f2(head + ", grad-weight with at most " + str(kTuning.any_plane_max_fanout) +
                       " filter per input channel, any plane, at least " +
                       str(kTuning.any_plane_min_batch) + " images" + numbers + ", batch " +
                       str(p.N) + ". Measured: winograd_f2 1.3-1.7x faster than im2col on "
                       "resnet18/resnet50 128x28x28 and 512x7x7 at batch 8; im2col 1.3-1.4x "
                       "faster on 128x28x28 at batch 1 and 2 (Xeon AVX-512, 2 threads, "
                       "2026-12-07)");
  if (c >= kTuning.mid_channels && k <= kTuning.mid_max_fanout * c &&
      plane <= kTuning.small_plane &&
      (p.N >= kTuning.mid_min_batch || plane == kTuning.small_plane))
    return winograd_f2(head + ", grad-weight with at least " + str(kTuning.mid_channels) +
                       " input channels, at most " + str(kTuning.mid_max_fanout) +
                       " filters per channel, a plane of at most " + str(kTuning.small_plane) +
                       " positions, at least " + str(kTuning.mid_min_batch) + " images or a " +
                       "plane of exactly that size" + numbers + ", batch " + str(p.N) +
                       ". Measured: winograd_f2 1.1-1.4x faster than im2col on googlenet "
                       "inception4c-5b at batch 8 and 2, and on 4c-4e (14x14) at batch 1; at "
                       "batch 1 im2col 1.7x faster on inception5a/5b (7x7) (2026-12-07)");
  const bool fanout_ok = k <= kTuning.large_plane_max_fanout * c;
  if (!small && (wide || (plane >= kTuning.large_plane && fanout_ok)))
    return winograd_f2(head + ", grad-weight on a plane of at least " +
                       str(kTuning.small_plane) + " positions, " +
                       (wide ? "at least " + str(kTuning.wide_channels) + " input channels"
                             : "at least " + str(kTuning.large_plane) + " positions and at most " +
                                   str(kTuning.large_plane_max_fanout) +
                                   " filters per input channel") +
                       numbers + ". Measured: im2col took 0.97-1.4x winograd_f2's time on "
                       "vgg16 conv1_2-conv5_3 and resnet50 layer1.0.conv2");
  return im2col(head + ", grad-weight: output plane under " + str(kTuning.small_plane) +
                " positions, or fewer than " + str(kTuning.wide_channels) +
                " input channels with more than " + str(kTuning.large_plane_max_fanout) +
                " filters per channel or a plane under " + str(kTuning.large_plane) + numbers +
                ". Measured: im2col 1.1-1.5x faster than winograd_f2 on googlenet conv3 and "
                "inception 3b-4b (1.5-3 filters per input channel)");
}

// Each clause returns its preference order with its reason in words: the case, the problem's
// own numbers, and the measurement behind it, so explain() quotes the branch that decided.
Conv2dAutoChoice cpu_auto_rule(const Conv2dProblem& p, at::ScalarType dtype, ConvPass pass) {
  const int64_t c = p.C_per_group(), k = p.K_per_group();
  const std::string per_group = "C/groups " + str(c) + ", K/groups " + str(k);
  const bool winograd_shape = winograd::supports_shape(p);
  const bool in_float32 = cpu::compute_dtype(dtype) == at::kFloat;
  const std::string computed =
      dtype == at::kFloat ? "float32" : std::string(c10::toString(dtype)) + " (computed in float32)";
  const std::string narrow_tail = " (" + per_group + ", groups " + str(p.groups) +
                                  "); a GEMM with a dimension below ~8 wastes most of its "
                                  "register tile";
  const int64_t narrow = kTuning.narrow_channels;
  if (c < narrow && p.groups > 1)
    return direct("grouped (depthwise or narrow) with fewer than " + str(narrow) +
                  " input channels per group" + narrow_tail +
                  ". Measured: direct 5.5-56x faster than im2col on depthwise 3x3 64x56x56");
  if (k < narrow)
    return direct("fewer than " + str(narrow) + " filters per group" + narrow_tail +
                  ". Measured: direct 1.1-4.9x faster than im2col on lenet5.c1 (1 -> 6)");
  if (c < narrow && k < kTuning.narrow_direct_max_filters)
    return direct("fewer than " + str(narrow) + " input channels into fewer than " +
                  str(kTuning.narrow_direct_max_filters) + " filters" + narrow_tail +
                  ". Measured: direct 1.1-2.6x faster than im2col on lenet5.c3 (6 -> 16)");
  if (c < narrow && pass == ConvPass::BackwardWeight &&
      p.N * p.P * p.Q < kTuning.first_layer_grad_weight_positions &&
      std::max(p.stride_h, p.stride_w) <= kTuning.first_layer_grad_weight_max_stride)
    return direct("grad-weight of a layer with fewer than " + str(narrow) +
                  " input channels over fewer than " +
                  str(kTuning.first_layer_grad_weight_positions) + " output positions (N*P*Q = " +
                  str(p.N * p.P * p.Q) + ") at stride <= " +
                  str(kTuning.first_layer_grad_weight_max_stride) + narrow_tail +
                  ". Measured: direct 1.3-1.8x faster than im2col on vgg16.conv1_1 and the 7x7 "
                  "stride-2 conv1 of resnet50/googlenet; im2col 1.3x faster at stride 4 "
                  "(alexnet.conv1)");
  const int64_t large_kernel_filters = pass == ConvPass::Forward
                                           ? kTuning.large_kernel_fwd_filters
                                           : kTuning.large_kernel_bwd_filters;
  if (p.R * p.S >= kTuning.large_kernel_area && c >= narrow &&
      c <= kTuning.large_kernel_max_channels && k <= large_kernel_filters)
    return direct("a " + str(p.R) + "x" + str(p.S) + " kernel with " + str(narrow) + " to " +
                  str(kTuning.large_kernel_max_channels) + " input channels and at most " +
                  str(large_kernel_filters) + " filters per group in this pass (" + per_group +
                  "). Measured: direct 1.25-1.75x faster than im2col forward on googlenet's "
                  "5x5 branches with 16-32 -> 32-64 channels, 1.1-1.15x in the backward passes "
                  "at 16 -> 32");
  if (in_float32 && winograd_shape && c >= kTuning.winograd_min_channels &&
      k >= kTuning.winograd_min_channels)
    return winograd_shape_rule(p, pass,
                               "3x3 stride-1 dilation-1 " + computed + " with at least " +
                                   str(kTuning.winograd_min_channels) +
                                   " input and output channels per group");
  // Why the Winograd clause did not apply to a 3x3 stride-1 problem, else the shape class.
  std::string which;
  if (winograd_shape && !in_float32)
    which = "3x3 stride-1 in " + std::string(c10::toString(dtype)) +
            " (Winograd is auto's choice in float32 only; float64 has only portable Winograd "
            "kernels)";
  else if (winograd_shape)
    which = "3x3 stride-1 with fewer than " + str(kTuning.winograd_min_channels) +
            " input or output channels per group";
  else
    which = "not 3x3 stride-1 dilation-1 (a " + str(p.R) + "x" + str(p.S) + " kernel, stride " +
            str(p.stride_h) + "x" + str(p.stride_w) + ", dilation " + str(p.dil_h) + "x" +
            str(p.dil_w) + ": 1x1, strided, large or dilated kernels)";
  if (pass == ConvPass::Forward && p.R * p.S > 1 && c >= kTuning.tiny_plane_channels &&
      p.P * p.Q <= kTuning.tiny_plane && p.N < kTuning.tiny_plane_im2col_batch)
    return direct("forward, " + which + ", at least " + str(kTuning.tiny_plane_channels) +
                  " input channels into an output plane of at most " +
                  str(kTuning.tiny_plane) + " positions, fewer than " +
                  str(kTuning.tiny_plane_im2col_batch) + " images (" + per_group + ", output " +
                  str(p.P) + "x" + str(p.Q) + ", batch " + str(p.N) + "): a GEMM with so few "
                  "columns per image runs below its speed. Measured: direct 1.8x faster than "
                  "im2col on resnet50 layer4.0.conv2 (512 channels, 3x3 stride 2 to 7x7) at "
                  "batch 1, im2col 1.7-1.9x faster at batch 8 (several images per GEMM); with "
                  "256 channels (resnet18 layer4.0.conv1) im2col is 1.7x faster, so that runs "
                  "im2col (Xeon AVX-512, 2 threads, 2026-12-07)");
  return im2col("everything else: " + which + ", with enough channels per group for a GEMM (" +
                per_group + "). Measured: im2col 1.15-7.6x faster than direct on resnet50's 1x1 "
                "and strided layers");
}

}  // namespace

CONV2D_REGISTER_AUTO_RULE(Backend::CPU, cpu_auto_rule);

}  // namespace cnnkern
