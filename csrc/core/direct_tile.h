#pragma once
// The tiling of the CUDA direct convolution's forward (cuda/conv2d_direct.cu): block and thread
// tile sizes, which kernel variant runs a problem, how many input channels one shared-memory
// stage holds, and the 32-bit index bound. Torch-free and __host__ __device__: the launcher
// plans with it, the kernel reads the plan, and the CUDA glue asks it why a problem cannot run.
//
// A block computes a TH x TW output tile of one image for KB output channels of one group;
// each of its 256 threads a 2 x 2 patch of that tile for 8 of those channels (32 accumulators
// in registers). The input channels are consumed `cb` at a time: the block stages their input
// tile and the matching weights in shared memory, zero-filled wherever the tile leaves the
// input or the channel range, so the inner loop reads shared memory with no bounds checks.
//
// Variants (DirectVariant):
//   Halo3x3Unit     3x3, stride 1, dilation 1: the tile with its 1-pixel halo, (TH+2) x (TW+2)
//                   per channel; every tap offset is a compile-time constant.
//   Halo3x3Strided  3x3 with another stride or dilation: the halo tile
//                   ((TH-1)*stride + 2*dilation + 1 rows), the steps read from the plan.
//   Taps            any R x S (1x1 included): one filter tap per stage; the stage holds, per
//                   channel, exactly the TH x TW input pixels that tap reads (a gather with the
//                   stride), so shared memory never depends on R, S, stride or dilation. For a
//                   1x1 filter this is the whole convolution in one stage per channel block; a
//                   3x3 whose halo tile does not fit (large stride or dilation) runs here too.

#include <cstdint>

#include "core/conv2d_problem.h"
#include "core/int_math.h"
#include "core/macros.h"

namespace cnnkern {
namespace direct_tile {

constexpr int kThreadsX = 8, kThreadsY = 8, kChannelGroups = 4;
constexpr int kThreads = kThreadsX * kThreadsY * kChannelGroups;  // 256
constexpr int kOutH = 2, kOutW = 2;   // outputs per thread, rows x columns
constexpr int kKT = 8;                // output channels per thread
constexpr int TH = kThreadsY * kOutH;   // 16 output rows per block
constexpr int TW = kThreadsX * kOutW;   // 16 output columns per block
constexpr int KB = kChannelGroups * kKT;  // 32 output channels per block
constexpr int kMaxStageChannels = 8;
// Dynamic shared memory per block. A block gets 48 KiB in all (static + dynamic) without
// opting in; the compiled forward kernels report 1 KiB of static shared memory (cuobjdump
// -res-usage, bench/results/sass_2026-12-07_sm90_merged.txt), so the stages keep to 47.
constexpr int64_t kSmemBudget = 47 * 1024;
constexpr int64_t kInt32Max = 2147483647;

enum class DirectVariant : int { Halo3x3Unit = 0, Halo3x3Strided = 1, Taps = 2 };

struct DirectPlan {
  DirectVariant variant = DirectVariant::Taps;
  int cb = 1;            // input channels per shared-memory stage
  int ih = TH, iw = TW;  // staged rows / columns per channel
  // Staged row (column) of output row o (column) through tap r (s) of this stage:
  // o*out_step_h + r*tap_step_h (Halo3x3Strided reads these; the others use 1 and 1).
  int out_step_h = 1, out_step_w = 1, tap_step_h = 1, tap_step_w = 1;
  // Input rows (columns) between consecutive staged rows (columns): 1 for a halo tile, the
  // stride for the Taps gather.
  int gather_h = 1, gather_w = 1;
  int taps_h = 1, taps_w = 1;  // stages per channel block (R x S for Taps, 1 for the halo)
  int64_t tiles_h = 0, tiles_w = 0, k_blocks = 0;  // per image, per group
  int64_t blocks = 0;          // N * groups * k_blocks * tiles_h * tiles_w
  int64_t smem_elems = 0;      // accumulator elements of shared memory per block

  CNNKERN_HD int taps_per_stage() const { return variant == DirectVariant::Taps ? 1 : 9; }
};

// "" when every index the kernels compute in 32 bits stays below 2^31, else which one does
// not: the kernels use 32-bit math inside a channel plane, 64-bit only for the plane bases.
CNNKERN_HD const char* int32_why_not(const Conv2dProblem& p) {
  const int64_t lim = kInt32Max;
  if (p.H * p.W > lim || p.P * p.Q > lim) return "an input or output plane of 2^31 elements or more";
  if (p.H + 2 * p.pad_h + p.stride_h * (TH + 1) + p.dil_h * p.R > lim ||
      p.W + 2 * p.pad_w + p.stride_w * (TW + 1) + p.dil_w * p.S > lim)
    return "a padded row or column (with stride and dilation) of 2^31 elements or more";
  // A stage reads weights up to KB filters past its block's first one.
  if (p.C_per_group() * p.R * p.S * KB > lim || p.K > lim || p.C > lim)
    return "2^31 or more channels, or 2^26 or more weights per filter";
  return "";
}

// The stage's weights start at a multiple of kWeightAlign elements after its input tile, so
// that each thread reads its kKT filters of a tap as 16-byte vectors (2 x LDS.128 for float
// instead of 8 x LDS: the 1x1 inner loop is issue-bound). kKT and KB are multiples of it too.
constexpr int kWeightAlign = 4;
static_assert(kKT % kWeightAlign == 0 && KB % kWeightAlign == 0, "16-byte weight vectors");

// Offset (elements) of a stage's weights: its input tile of `cb` channels, rounded up.
CNNKERN_HD int64_t weight_offset(int64_t cb, int64_t ih, int64_t iw) {
  return round_up(cb * ih * iw, kWeightAlign);
}

// Shared-memory elements of one stage of `cb` channels.
CNNKERN_HD int64_t stage_elems(int64_t cb, int64_t ih, int64_t iw, int64_t taps) {
  return weight_offset(cb, ih, iw) + cb * taps * KB;
}

// The most channels (at least 1, at most cb_max) whose stage fits `budget` elements.
CNNKERN_HD int64_t fit_channels(int64_t budget, int64_t cb_max, int64_t ih, int64_t iw,
                                int64_t taps) {
  int64_t cb = budget / (ih * iw + taps * KB);  // without the alignment padding
  if (cb > cb_max) cb = cb_max;
  while (cb > 1 && stage_elems(cb, ih, iw, taps) > budget) --cb;  // the padding: at most once
  return cb;
}

// The plan for a problem whose elements accumulate in a type of `acc_bytes` bytes.
CNNKERN_HD DirectPlan make_plan(const Conv2dProblem& p, int64_t acc_bytes) {
  DirectPlan pl;
  const int64_t budget = kSmemBudget / acc_bytes;
  const int64_t cg = p.C_per_group();
  const int64_t cb_max = cg < kMaxStageChannels ? (cg > 0 ? cg : 1) : kMaxStageChannels;
  if (p.R == 3 && p.S == 3) {
    const int64_t ih = (TH - 1) * p.stride_h + 2 * p.dil_h + 1;
    const int64_t iw = (TW - 1) * p.stride_w + 2 * p.dil_w + 1;
    if (stage_elems(1, ih, iw, 9) <= budget) {
      const int64_t cb = fit_channels(budget, cb_max, ih, iw, 9);
      const bool unit = p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 && p.dil_w == 1;
      pl.variant = unit ? DirectVariant::Halo3x3Unit : DirectVariant::Halo3x3Strided;
      pl.cb = static_cast<int>(cb);
      pl.ih = static_cast<int>(ih);
      pl.iw = static_cast<int>(iw);
      pl.out_step_h = static_cast<int>(p.stride_h);
      pl.out_step_w = static_cast<int>(p.stride_w);
      pl.tap_step_h = static_cast<int>(p.dil_h);
      pl.tap_step_w = static_cast<int>(p.dil_w);
    }
  }
  if (pl.variant == DirectVariant::Taps) {
    pl.cb = static_cast<int>(fit_channels(budget, cb_max, TH, TW, 1));
    pl.gather_h = static_cast<int>(p.stride_h);
    pl.gather_w = static_cast<int>(p.stride_w);
    pl.taps_h = static_cast<int>(p.R);
    pl.taps_w = static_cast<int>(p.S);
  }
  pl.tiles_h = ceil_div(p.P, TH);
  pl.tiles_w = ceil_div(p.Q, TW);
  pl.k_blocks = ceil_div(p.K_per_group(), KB);
  pl.blocks = p.N * p.groups * pl.k_blocks * pl.tiles_h * pl.tiles_w;
  pl.smem_elems = stage_elems(pl.cb, pl.ih, pl.iw, pl.taps_per_stage());
  return pl;
}

CNNKERN_HD const char* variant_name(DirectVariant v) {
  switch (v) {
    case DirectVariant::Halo3x3Unit: return "3x3 stride 1 (halo tile)";
    case DirectVariant::Halo3x3Strided: return "3x3 strided/dilated (halo tile)";
    case DirectVariant::Taps: return "one tap per stage (any RxS, 1x1)";
  }
  return "";
}

}  // namespace direct_tile
}  // namespace cnnkern
