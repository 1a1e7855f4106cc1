// The tile and split-K schedule of the fp32 implicit-GEMM forward (core/igemm_fp32_schedule.h)
// on the CPU, for tests/internals/test_igemm_fp32_schedule.py
// (torch.ops.cnnkern_testing.igemm32_schedule).

#include <torch/library.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "core/igemm_fp32_schedule.h"
#include "ops/checks.h"

namespace cnnkern {

// Declared in schemas.cpp. ([bm, tiles_m, tiles_n, groups, k_tiles, splits, k_tiles_per_split,
// workspace floats], reason) for a GPU of `sm_count` SMs.
std::tuple<std::vector<int64_t>, std::string> igemm32_schedule_op(
    c10::IntArrayRef input_size, c10::IntArrayRef weight_size, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups, int64_t sm_count) {
  constexpr const char* kOp = "cnnkern_testing.igemm32_schedule";
  TORCH_CHECK(sm_count >= 1 && sm_count <= 65535, kOp,
              ": sm_count must be in [1, 65535]; got ", sm_count);
  const Conv2dProblem p =
      make_conv2d_problem(kOp, input_size, weight_size, stride, padding, dilation, groups);
  const igemm32::Schedule s = igemm32::make_schedule(p, static_cast<int>(sm_count));
  return {{s.bm, s.tiles_m, s.tiles_n, s.groups, s.k_tiles, s.splits, s.k_tiles_per_split,
           s.workspace_elems()},
          s.reason};
}

}  // namespace cnnkern
