// The shared-memory swizzle of the CUDA kernels (core/smem_swizzle.h) run on the CPU, for
// tests/internals/test_smem_swizzle.py (torch.ops.cnnkern_testing.smem_swizzle).

#include <torch/library.h>

#include <cstdint>
#include <vector>

#include "core/smem_swizzle.h"

namespace cnnkern {
namespace {

template <int kRowChunks>
std::vector<int64_t> b16_offsets(int64_t rows) {
  std::vector<int64_t> out;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < kRowChunks * 8; ++c)
      out.push_back(XorSwizzle<kRowChunks>::template element<uint16_t>(r, c));
  return out;
}

}  // namespace

// Declared in schemas.cpp. For a tile of `rows` rows of `row_chunks` 16-byte chunks of b16
// elements: the element offset where XorSwizzle puts element (row, col), row-major.
std::vector<int64_t> smem_swizzle_op(int64_t row_chunks, int64_t rows) {
  TORCH_CHECK(rows >= 0 && rows <= 4096, "smem_swizzle: rows must be in [0, 4096]; got ", rows);
  switch (row_chunks) {
    case 1: return b16_offsets<1>(rows);
    case 2: return b16_offsets<2>(rows);
    case 4: return b16_offsets<4>(rows);
    case 8: return b16_offsets<8>(rows);
    case 16: return b16_offsets<16>(rows);
    default: break;
  }
  TORCH_CHECK(false, "smem_swizzle: row_chunks must be 1, 2, 4, 8 or 16; got ", row_chunks);
}

}  // namespace cnnkern
