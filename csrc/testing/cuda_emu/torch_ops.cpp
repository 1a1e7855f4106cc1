// The emulated library's own ops, for the tests (torch.ops.cnnkern_emu._emu_*): the engine's
// thread/block order and counters, the planted-bug kernels (planted/planted_bugs.cu), and the
// fp32 GEMM core (cuda/gemm_fp32.h) on strided operands.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <cstddef>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/device_context.h"
#include "cuda/gemm_fp32.h"
#include "cuda_emu/engine.h"
#include "testing/cuda_emu/planted/planted_bugs.h"
#include "testing/cuda_emu/planted/staged_tile.h"

namespace cuda_emu {
namespace {

void set_order_op(int64_t order, int64_t seed) {
  TORCH_CHECK(order >= 0 && order <= 2, "_emu_set_order: order must be 0 (forward), 1 (reverse) "
              "or 2 (random); got ", order);
  set_order(static_cast<Order>(order), static_cast<uint64_t>(seed));
}

void set_sm_count_op(int64_t n) {
  TORCH_CHECK(n >= 1 && n <= 1024, "_emu_set_sm_count: n must be in [1, 1024]; got ", n);
  set_sm_count(static_cast<int>(n));
}

std::vector<int64_t> stats_op() {
  const Stats s = stats();
  return {static_cast<int64_t>(s.launches), static_cast<int64_t>(s.blocks),
          static_cast<int64_t>(s.threads), static_cast<int64_t>(s.barriers),
          static_cast<int64_t>(s.warp_collectives), static_cast<int64_t>(s.mmas),
          static_cast<int64_t>(s.ldmatrices), static_cast<int64_t>(s.cp_asyncs)};
}

// The kernel variant a test names: its entry in `table`, else an error naming the op and name.
template <class Bug, std::size_t M>
Bug bug_named(const std::pair<const char*, Bug> (&table)[M], const std::string& name,
              const char* op) {
  const Bug* found = nullptr;
  for (const auto& kv : table)
    if (name == kv.first) found = &kv.second;
  TORCH_CHECK(found != nullptr, op, ": unknown bug '", name, "'");
  return *found;
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
      {"shared_within_default", Bug::SharedWithinDefault},
      {"shared_above_default", Bug::SharedAboveDefault},
      {"shared_opted_in", Bug::SharedOptedIn},
      {"shared_above_opt_in", Bug::SharedAboveOptIn},
  };
  const Bug found = bug_named(kBugs, bug, "_emu_planted");
  TORCH_CHECK(x.scalar_type() == at::kFloat && x2.scalar_type() == at::kFloat &&
                  x.is_contiguous() && x2.is_contiguous(),
              "_emu_planted: x and x2 must be contiguous float32");
  at::Tensor y = at::full({out_numel}, -7.0f, x.options());
  CNNKERN_CUDA_CHECK(cnnkern::planted::launch(found, x.const_data_ptr<float>(),
                                              x2.const_data_ptr<float>(),
                                              y.mutable_data_ptr<float>(),
                                              static_cast<int>(x.numel())));
  return y;
}

std::tuple<at::Tensor, at::Tensor> staged_tile_op(const std::string& bug, const at::Tensor& x,
                                                  int64_t num, bool trans, int64_t copy_bytes,
                                                  int64_t valid_cols) {
  using cnnkern::planted::StagedBug;
  static const std::pair<const char*, StagedBug> kBugs[] = {
      {"none", StagedBug::None},
      {"missing_wait", StagedBug::MissingWait},
      {"shallow_wait", StagedBug::ShallowWait},
      {"read_before_wait", StagedBug::ReadBeforeWait},
      {"colliding_swizzle", StagedBug::CollidingSwizzle},
      {"unswizzled_read", StagedBug::UnswizzledRead},
      {"misaligned_ldmatrix", StagedBug::MisalignedLdmatrix},
      {"ldmatrix_from_global", StagedBug::LdmatrixFromGlobal},
      {"misaligned_cp_async", StagedBug::MisalignedCpAsync},
  };
  const StagedBug found = bug_named(kBugs, bug, "_emu_staged_tile");
  TORCH_CHECK(x.element_size() == 2 && x.is_contiguous() && x.dim() == 3 && x.size(1) == 16 &&
                  x.size(2) == 16,
              "_emu_staged_tile: x must be a contiguous (tiles, 16, 16) tensor of a 16-bit "
              "dtype; got ", x.sizes(), " ", x.scalar_type());
  TORCH_CHECK(num == 1 || num == 2 || num == 4, "_emu_staged_tile: num must be 1, 2 or 4; got ",
              num);
  TORCH_CHECK(copy_bytes == 0 || copy_bytes == 4 || copy_bytes == 8 || copy_bytes == 16,
              "_emu_staged_tile: copy_bytes must be 4, 8, 16 (cp.async.ca) or 0 (cg); got ",
              copy_bytes);
  TORCH_CHECK(valid_cols >= 0 && valid_cols <= 16,
              "_emu_staged_tile: valid_cols must be in [0, 16]; got ", valid_cols);
  at::Tensor y = at::full({x.size(0), 32, num}, -7, x.options().dtype(at::kInt));
  at::Tensor early = at::full({1}, -7.0f, x.options().dtype(at::kFloat));
  cnnkern::planted::StagedTileArgs args{
      static_cast<const uint16_t*>(x.const_data_ptr()),
      reinterpret_cast<uint32_t*>(y.mutable_data_ptr<int32_t>()),
      early.mutable_data_ptr<float>(),
      static_cast<int>(x.size(0)),
      static_cast<int>(num),
      trans,
      static_cast<int>(copy_bytes),
      static_cast<int>(valid_cols)};
  CNNKERN_CUDA_CHECK(cnnkern::planted::launch_staged_tile(found, args));
  return {y, early};
}

// C = A B by the fp32 GEMM core, for a (batch, M, K) and b (batch, K, N) float32 tensors of
// any strides (the core reads them through their strides; a storage offset of one element
// misaligns them for the 16-byte path). C is (batch, M, N), stored n-contiguous, or
// m-contiguous (a transposed view) when c_transposed.
at::Tensor gemm_fp32_op(const at::Tensor& a, const at::Tensor& b, bool c_transposed) {
  TORCH_CHECK(a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat,
              "_emu_gemm_fp32: a and b must be float32; got ", a.scalar_type(), " and ",
              b.scalar_type());
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(1),
              "_emu_gemm_fp32: a must be (batch, M, K) and b (batch, K, N); got a ", a.sizes(),
              " and b ", b.sizes());
  const int64_t batch = a.size(0), M = a.size(1), K = a.size(2), N = b.size(2);
  at::Tensor c = c_transposed ? at::empty({batch, N, M}, a.options()).transpose(1, 2)
                              : at::empty({batch, M, N}, a.options());
  cnnkern::gemm32::GemmDesc d;
  d.batches = batch;
  d.M = M;
  d.N = N;
  d.K = K;
  d.a_z = a.stride(0);
  d.a_m = a.stride(1);
  d.a_k = a.stride(2);
  d.b_z = b.stride(0);
  d.b_k = b.stride(1);
  d.b_n = b.stride(2);
  d.c_z = c.stride(0);
  d.c_m = c.stride(1);
  d.c_n = c.stride(2);
  const char* why = cnnkern::gemm_fp32_why_not(d);
  TORCH_CHECK(why[0] == '\0', "_emu_gemm_fp32: ", why);
  CNNKERN_CUDA_CHECK(cnnkern::launch_gemm_fp32(d, a.const_data_ptr<float>(),
                                               b.const_data_ptr<float>(),
                                               c.mutable_data_ptr<float>(), nullptr));
  return c;
}

}  // namespace
}  // namespace cuda_emu

TORCH_LIBRARY_FRAGMENT(cnnkern_emu, m) {
  // order: 0 forward, 1 reverse, 2 random (seeded); for threads between synchronisation
  // points and for blocks.
  m.def("_emu_set_order(int order, int seed) -> ()", &cuda_emu::set_order_op);
  // [launches, blocks, threads, barriers, warp collectives, mma.sync, ldmatrix, cp.async] since
  // the process began.
  m.def("_emu_stats() -> int[]", &cuda_emu::stats_op);
  // The SM count the emulated device reports (default 132); plans size their grids by it.
  m.def("_emu_set_sm_count(int n) -> ()", &cuda_emu::set_sm_count_op);
  // One planted-bug kernel on x (and x2), into a fresh out_numel-element tensor.
  m.def("_emu_planted(str bug, Tensor x, Tensor x2, int out_numel) -> Tensor",
        &cuda_emu::planted_op);
  // The staged-tile kernel (planted/staged_tile.cu) on x (tiles, 16, 16) of a 16-bit dtype:
  // the ldmatrix registers (tiles, 32 lanes, num) as int32, and what read_before_wait read.
  m.def("_emu_staged_tile(str bug, Tensor x, int num, bool trans, int copy_bytes, "
        "int valid_cols) -> (Tensor, Tensor)",
        &cuda_emu::staged_tile_op);
  // The fp32 GEMM core: a (batch, M, K) @ b (batch, K, N), any strides (see gemm_fp32_op).
  m.def("_emu_gemm_fp32(Tensor a, Tensor b, bool c_transposed) -> Tensor",
        &cuda_emu::gemm_fp32_op);
}
