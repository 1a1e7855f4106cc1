// The plan of the CUDA tensor-core implicit-GEMM forward (core/igemm_tc_plan.h) on the CPU, for
// tests/internals/test_igemm_tc_plan.py (torch.ops.cnnkern_testing.igemm_tc_plan).

#include <torch/library.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "core/igemm_tc_plan.h"
#include "ops/checks.h"

namespace cnnkern {

// Declared in schemas.cpp. (why_not, [large tile?, bm, bn, tiles_m, tiles_n, k_tiles, splits,
// k_tiles_per_split, workspace floats]) for a GPU of `sm_count` SMs; reason: the plan's words.
std::tuple<std::string, std::vector<int64_t>, std::string> igemm_tc_plan_op(
    c10::IntArrayRef input_size, c10::IntArrayRef weight_size, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups, int64_t sm_count) {
  constexpr const char* kOp = "cnnkern_testing.igemm_tc_plan";
  TORCH_CHECK(sm_count >= 1, kOp, ": sm_count must be >= 1; got ", sm_count);
  const Conv2dProblem p =
      make_conv2d_problem(kOp, input_size, weight_size, stride, padding, dilation, groups);
  const igemm_tc::Plan pl = igemm_tc::make_plan(p, static_cast<int>(sm_count));
  return {igemm_tc::why_not(p),
          {pl.tile == igemm_tc::Tile::Large, pl.bm, pl.bn, pl.tiles_m, pl.tiles_n, pl.k_tiles,
           pl.splits, pl.k_tiles_per_split, pl.workspace_elems()},
          pl.reason};
}

}  // namespace cnnkern
