// The fp32 GEMM core's thread mappings (core/gemm_fp32_tile.h) run on the CPU, for
// tests/internals/test_gemm_fp32_tile.py (torch.ops.cnnkern_testing.gemm32_slots).

#include <torch/library.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/gemm_fp32_tile.h"

namespace cnnkern {

// Declared in schemas.cpp. Per thread t of a block (and per item of that thread), flattened:
//   "register"     (row, col) of each of the 8 x 8 outputs (i, j), j fastest
//   "vector"       (k, mn, shared float offset) of the thread's 16-byte copy
//   "scalar_mn"    (k, mn, shared float offset) of copies e = 0..3, operand mn-contiguous
//   "scalar_k"     the same, operand k-contiguous
std::vector<int64_t> gemm32_slots_op(const std::string& what) {
  using namespace gemm32;
  std::vector<int64_t> out;
  for (int t = 0; t < kGemmThreads; ++t) {
    if (what == "register") {
      for (int i = 0; i < Tile::TM; ++i)
        for (int j = 0; j < Tile::TN; ++j) out.insert(out.end(), {tile_row(t, i), tile_col(t, j)});
    } else if (what == "vector") {
      const CopySlot s = vec_slot(t);
      out.insert(out.end(), {s.k, s.mn, s.smem()});
    } else if (what == "scalar_mn" || what == "scalar_k") {
      const Operand o = what == "scalar_k" ? Operand{0, 64, 1, 128} : Operand{0, 1, 64, 128};
      for (int e = 0; e < Tile::kCopies; ++e) {
        const CopySlot s = scalar_slot(k_fastest(o), t, e);
        out.insert(out.end(), {s.k, s.mn, s.smem()});
      }
    } else {
      TORCH_CHECK(false, "gemm32_slots: what must be register, vector, scalar_mn or scalar_k; "
                  "got '", what, "'");
    }
  }
  return out;
}

// Declared in schemas.cpp: [vec_src_bytes(mn, k, extent, K), vec_ok of (z, mn, k strides) at
// address addr] for the CPU tests of the edge rules.
std::vector<int64_t> gemm32_edges_op(int64_t mn, int64_t k, int64_t extent, int64_t K,
                                     c10::IntArrayRef strides, int64_t addr) {
  using namespace gemm32;
  TORCH_CHECK(strides.size() == 3, "gemm32_edges: strides must be (z, mn, k); got ", strides);
  const Operand o{strides[0], strides[1], strides[2], extent};
  return {vec_src_bytes(mn, k, o, K), vec_ok(o, static_cast<uint64_t>(addr)) ? 1 : 0};
}

}  // namespace cnnkern
