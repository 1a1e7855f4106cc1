// The emulated library's own ops, for the tests (torch.ops.cnnkern_emu._emu_*): the engine's
// thread/block order and counters, and the planted-bug kernels (planted/planted_bugs.cu).

#include <ATen/core/Tensor.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "cuda/device_context.h"
#include "cuda_emu/engine.h"
#include "testing/cuda_emu/planted/planted_bugs.h"

namespace cuda_emu {
namespace {

void set_order_op(int64_t order, int64_t seed) {
  TORCH_CHECK(order >= 0 && order <= 2, "_emu_set_order: order must be 0 (forward), 1 (reverse) "
              "or 2 (random); got ", order);
  set_order(static_cast<Order>(order), static_cast<uint64_t>(seed));
}

std::vector<int64_t> stats_op() {
  const Stats s = stats();
  return {static_cast<int64_t>(s.launches), static_cast<int64_t>(s.blocks),
          static_cast<int64_t>(s.threads), static_cast<int64_t>(s.barriers),
          static_cast<int64_t>(s.warp_collectives), static_cast<int64_t>(s.mmas)};
}

at::Tensor planted_op(const std::string& bug, const at::Tensor& x, const at::Tensor& x2,
                      int64_t out_numel) {
  using cnnkern::planted::Bug;
  static const std::pair<const char*, Bug> kBugs[] = {
      {"missing_barrier", Bug::MissingBarrier},
      {"with_barrier", Bug::WithBarrier},
      {"dynamic_shared_reverse", Bug::DynamicSharedReverse},
      {"engine_features", Bug::EngineFeatures},
      {"divergent_barrier", Bug::DivergentBarrier},
      {"shuffle_missing_lanes", Bug::ShuffleMissingLanes},
      {"above_launch_bounds", Bug::AboveLaunchBounds},
      {"within_launch_bounds", Bug::WithinLaunchBounds},
      {"unwritten_shared", Bug::UnwrittenShared},
      {"mma_swapped_fragment", Bug::MmaSwappedFragment},
      {"mma_correct", Bug::MmaCorrect},
      {"trap", Bug::Trap},
      {"shared_past_end", Bug::SharedPastEnd},
      {"read_past_end", Bug::ReadPastEnd},
      {"write_past_end", Bug::WritePastEnd},
  };
  const Bug* found = nullptr;
  for (const auto& kv : kBugs)
    if (bug == kv.first) found = &kv.second;
  TORCH_CHECK(found != nullptr, "_emu_planted: unknown bug '", bug, "'");
  TORCH_CHECK(x.scalar_type() == at::kFloat && x2.scalar_type() == at::kFloat &&
                  x.is_contiguous() && x2.is_contiguous(),
              "_emu_planted: x and x2 must be contiguous float32");
  at::Tensor y = at::full({out_numel}, -7.0f, x.options());
  CNNKERN_CUDA_CHECK(cnnkern::planted::launch(*found, x.const_data_ptr<float>(),
                                              x2.const_data_ptr<float>(),
                                              y.mutable_data_ptr<float>(),
                                              static_cast<int>(x.numel())));
  return y;
}

}  // namespace
}  // namespace cuda_emu

TORCH_LIBRARY_FRAGMENT(cnnkern_emu, m) {
  // order: 0 forward, 1 reverse, 2 random (seeded); for threads between synchronisation
  // points and for blocks.
  m.def("_emu_set_order(int order, int seed) -> ()", &cuda_emu::set_order_op);
  // [launches, blocks, threads, barriers, warp collectives, mma.sync] since the process began.
  m.def("_emu_stats() -> int[]", &cuda_emu::stats_op);
  // One planted-bug kernel on x (and x2), into a fresh out_numel-element tensor.
  m.def("_emu_planted(str bug, Tensor x, Tensor x2, int out_numel) -> Tensor",
        &cuda_emu::planted_op);
}
