// The patch gather of the fp32 implicit-GEMM forward (core/igemm_fp32_plan.h) on the CPU, for
// tests/internals/test_igemm_fp32_plan.py (torch.ops.cnnkern_testing.igemm32_patches).

#include <torch/library.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "core/igemm_fp32_plan.h"
#include "ops/checks.h"

namespace cnnkern {

// Declared in schemas.cpp. (why_not, the patch operand of group g as the kernel walks it:
// element [k][n] for k < ktiles * BK, n < N*P*Q is the input element index (into the whole
// NCHW input) each copy reads, or -1 for a zero fill). Every thread's walk is replayed as the
// kernel runs it: its first tap decoded once, then only advance() by a copy and by a k-tile.
std::tuple<std::string, std::vector<int64_t>> igemm32_patches_op(
    c10::IntArrayRef input_size, c10::IntArrayRef weight_size, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups, int64_t g) {
  constexpr const char* kOp = "cnnkern_testing.igemm32_patches";
  const Conv2dProblem p =
      make_conv2d_problem(kOp, input_size, weight_size, stride, padding, dilation, groups);
  TORCH_CHECK(g >= 0 && g < p.groups, kOp, ": g must be in [0, groups = ", p.groups, "); got ",
              g);
  using namespace igemm32;
  const std::string why = why_not(p);
  if (!why.empty()) return {why, {}};
  const gemm32::GemmDesc d = gemm_of(p);
  const int64_t ktiles = (d.K + Tile::BK - 1) / Tile::BK;
  const Geom geo = geom_of(p);
  const TapStep tile_step = tap_step(p, Tile::BK), copy_step = tap_step(p, kCopyKStride);
  const int64_t rows = ktiles * Tile::BK, cols = d.N;
  std::vector<int64_t> out(static_cast<size_t>(rows * cols), -2);  // -2: never written
  for (int64_t n0 = 0; n0 < cols; n0 += Tile::BN) {
    for (int t = 0; t < gemm32::kGemmThreads; ++t) {
      const int64_t n = n0 + patch_slot(t, 0).mn;
      const igemm::ImageRow row = patch_row(p, g, n);
      Tap tap = tap_of(p, patch_slot(t, 0).k);
      for (int64_t kt = 0; kt < ktiles; ++kt) {
        Tap tp = tap;
        for (int e = 0; e < Tile::kCopies; ++e) {
          int32_t off = 0;
          const bool ok = patch_at(geo, row, tp, off);
          const int64_t k = kt * Tile::BK + patch_slot(t, e).k;
          if (n < cols) out[static_cast<size_t>(k * cols + n)] = ok ? row.base + off : -1;
          tp = advance(tp, copy_step);
        }
        tap = advance(tap, tile_step);
      }
    }
  }
  return {"", out};
}

}  // namespace cnnkern
