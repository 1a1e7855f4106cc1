// The schemas of the INTERNAL ops, for tests only: the CPU GEMM, the CPU emulations of the CUDA
// implicit-GEMM / Winograd / pooling index math, and their plans. Not part of the public API
// (cnnkern.cpp holds that); implemented in gemm_op.cpp, implicit_gemm_test_ops.cpp,
// pool2d_test_ops.cpp, smem_swizzle_test_ops.cpp and gemm_fp32_tile_test_ops.cpp.

#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "cpu/gemm/gemm_dispatch.h"

namespace cnnkern {

// testing/ops/implicit_gemm_test_ops.cpp (tests only).
std::vector<int64_t> igemm_plan_op(const std::string& pass, c10::IntArrayRef input_size,
                                   c10::IntArrayRef weight_size, c10::IntArrayRef stride,
                                   c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                   int64_t groups, int64_t splits);
std::vector<int64_t> mma_fragments_op(const std::string& shape, const std::string& operand);
// testing/ops/smem_swizzle_test_ops.cpp (tests only).
std::vector<int64_t> smem_swizzle_op(int64_t row_chunks, int64_t rows);
// testing/ops/igemm_tc_plan_test_op.cpp (tests only).
std::tuple<std::string, std::vector<int64_t>, std::string> igemm_tc_plan_op(
    c10::IntArrayRef input_size, c10::IntArrayRef weight_size, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups, int64_t sm_count);
// testing/ops/gemm_fp32_tile_test_ops.cpp (tests only).
std::vector<int64_t> gemm32_slots_op(const std::string& what);
std::vector<int64_t> gemm32_edges_op(int64_t mn, int64_t k, int64_t extent, int64_t K,
                                     c10::IntArrayRef strides, int64_t addr);
// testing/ops/igemm_fp32_plan_test_op.cpp (tests only).
std::tuple<std::string, std::vector<int64_t>> igemm32_patches_op(
    c10::IntArrayRef input_size, c10::IntArrayRef weight_size, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups, int64_t g);
// testing/ops/igemm_fp32_schedule_test_op.cpp (tests only).
std::tuple<std::vector<int64_t>, std::string> igemm32_schedule_op(
    c10::IntArrayRef input_size, c10::IntArrayRef weight_size, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups, int64_t sm_count);

}  // namespace cnnkern

TORCH_LIBRARY(cnnkern_testing, m) {
  // INTERNAL, for tests only (tests/internals/test_gemm.py): the CPU GEMM behind im2col and Winograd,
  // op(a) @ op(b) (+ c) (+ row_bias), on a named kernel set ("" = the default), A pre-packed
  // or not, B packed by a caller's function or not; and
  // the kernel sets this CPU can run. Not part of the public API.
  m.def(
      "gemm(Tensor a, Tensor b, Tensor? c, bool trans_a, bool trans_b, bool prepack_a=False, "
      "bool custom_b=False, Tensor? row_bias=None, str isa=\"\") -> Tensor");
  m.def("gemm_isas() -> str[]", &cnnkern::cpu::gemm_detail::available_isas);
  // INTERNAL, for tests only (tests/internals/test_implicit_gemm_cpu.py): the CUDA implicit-GEMM index
  // math and tile loop (core/implicit_gemm.h) run on the CPU in float64 -- a pass's dense
  // operand, the whole pass emulated block by block, and its grid / split-K plan.
  m.def(
      "igemm_matrix(str pass_, str operand, Tensor input, Tensor weight, Tensor grad_output, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor");
  m.def(
      "igemm_emulate(str pass_, Tensor input, Tensor weight, Tensor grad_output, Tensor? bias, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups, int splits=0, "
      "bool relu=False, bool mma=False, bool tf32=False) -> Tensor");
  // ... the TF32 path's operand rounding (the model of cvt.rna.tf32.f32) and the mma
  // fragment layouts, (row, col) per lane and element.
  m.def("tf32_round(Tensor x) -> Tensor");
  m.def("mma_fragments(str shape, str operand) -> int[]", &cnnkern::mma_fragments_op);
  // ... the XOR swizzle of the shared tiles read with ldmatrix (core/smem_swizzle.h): the
  // element offset of each (row, col) of a b16 tile, row-major
  // (tests/internals/test_smem_swizzle.py).
  m.def("smem_swizzle(int row_chunks, int rows) -> int[]", &cnnkern::smem_swizzle_op);
  // ... the tile and split-K plan of the CUDA tensor-core forward (core/igemm_tc_plan.h):
  // (why_not, [large, bm, bn, tiles_m, tiles_n, k_tiles, splits, k_tiles_per_split, ws floats],
  // reason) for a GPU of sm_count SMs (tests/internals/test_igemm_tc_plan.py).
  m.def(
      "igemm_tc_plan(int[] input_size, int[] weight_size, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, int sm_count) -> (str, int[], str)",
      &cnnkern::igemm_tc_plan_op);
  // ... the CUDA fp32 GEMM core's thread mappings and edge rules (core/gemm_fp32_tile.h,
  // tests/internals/test_gemm_fp32_tile.py).
  m.def("gemm32_slots(str what) -> int[]", &cnnkern::gemm32_slots_op);
  m.def("gemm32_edges(int mn, int k, int extent, int K, int[] strides, int addr) -> int[]",
        &cnnkern::gemm32_edges_op);
  // ... the patch gather of the fp32 implicit-GEMM forward on that core
  // (core/igemm_fp32_plan.h, tests/internals/test_igemm_fp32_plan.py): (why_not, input
  // element index or -1 per [k][n] of group g, as the kernel's tap walk reaches it).
  m.def(
      "igemm32_patches(int[] input_size, int[] weight_size, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, int g) -> (str, int[])",
      &cnnkern::igemm32_patches_op);
  // ... and its schedule (core/igemm_fp32_schedule.h): ([bm, tiles_m, tiles_n, groups,
  // k_tiles, splits, k_tiles_per_split, workspace floats], reason) for a GPU of sm_count SMs
  // (tests/internals/test_igemm_fp32_schedule.py).
  m.def(
      "igemm32_schedule(int[] input_size, int[] weight_size, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, int sm_count) -> (int[], str)",
      &cnnkern::igemm32_schedule_op);
  m.def(
      "wino_emulate(int m, str pass_, Tensor input, Tensor weight, Tensor grad_output, "
      "Tensor? bias, int[2] padding, int groups, int chunk_images=0) -> Tensor");
  m.def(
      "igemm_plan(str pass_, int[] input_size, int[] weight_size, int[2] stride, "
      "int[2] padding, int[2] dilation, int groups, int splits=0) -> int[]",
      &cnnkern::igemm_plan_op);
  // INTERNAL, for tests only (tests/internals/test_pool2d_element_cpu.py): the public pooling ops' bodies
  // with the CUDA kernels' per-element work (core/pool2d_element.h) run on the CPU, element
  // after element, NCHW or channels_last as the public ops choose.
  m.def(
      "pool_emu_max_pool2d_with_indices(Tensor input, int[2] kernel_size, int[2] stride, "
      "int[2] padding, int[2] dilation, bool ceil_mode) -> (Tensor, Tensor)");
  m.def(
      "pool_emu_max_pool2d_backward(Tensor grad_output, Tensor indices, SymInt[4] input_size, "
      "int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, bool ceil_mode) "
      "-> Tensor");
  m.def(
      "pool_emu_avg_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
      "bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor");
  m.def(
      "pool_emu_avg_pool2d_backward(Tensor grad_output, SymInt[4] input_size, "
      "int[2] kernel_size, int[2] stride, int[2] padding, bool ceil_mode, "
      "bool count_include_pad, int? divisor_override) -> Tensor");
  m.def("pool_emu_adaptive_avg_pool2d(Tensor input, int[2] output_size) -> Tensor");
  m.def(
      "pool_emu_adaptive_avg_pool2d_backward(Tensor grad_output, SymInt[4] input_size) "
      "-> Tensor");
}
