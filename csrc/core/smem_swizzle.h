#pragma once
// The XOR-swizzled layout of a shared-memory tile read with ldmatrix (cuda/ldmatrix.cuh).
// Torch-free, __host__ __device__: the CUDA kernels index their tiles with it and the CPU tests
// check its two properties (tests/internals/test_smem_swizzle.py, through
// torch.ops.cnnkern_testing.smem_swizzle).
//
// A tile is rows of kRowChunks 16-byte chunks, row-major. Shared memory serves 32 banks of 4
// bytes, so a 128-byte line holds 8 "bank groups" of 16 bytes, and the bank group of a byte
// offset is (offset / 16) % 8. An ldmatrix phase reads one 16-byte row from each of 8 threads:
// in a plain row-major tile, the same chunk column of 8 consecutive rows falls into one bank
// group whenever a row is a multiple of 128 bytes long (8-way conflict), or into fewer than 8
// groups whenever it is a multiple of 32 bytes. The swizzle keeps each chunk in its own row and
// moves it within that row:
//
//     physical chunk = chunk ^ ((row / kRowsPerLine) % kXor)
//     kRowsPerLine = max(1, 8 / kRowChunks)   rows that share one 128-byte line
//     kXor         = min(kRowChunks, 8)       chunk bits that take part in the XOR
//
// so (1) within a row it is a permutation of the chunks (XOR with a value below kRowChunks,
// a power of 2), hence a bijection on the whole tile; and (2) the 8 rows r0..r0+7 (r0 a multiple
// of 8) of one logical chunk column land in 8 distinct bank groups: writing r = a + kRowsPerLine*b,
// the bank group is a*kRowChunks + (chunk ^ b) for kRowChunks <= 8 (distinct (a, b) pairs give
// distinct values), and chunk ^ (r % 8) modulo 8 for wider rows. This is CUTLASS's / CuTe's
// Swizzle<3, 4, 3> written per row. Elements inside a 16-byte chunk keep their order, so an
// ldmatrix row (8 b16 values) or a 16-byte cp.async stays contiguous.

#include <cstdint>

#include "core/macros.h"

namespace cnnkern {

template <int kRowChunks>
struct XorSwizzle {
  static_assert(kRowChunks >= 1 && (kRowChunks & (kRowChunks - 1)) == 0,
                "a swizzled row is a power-of-2 number of 16-byte chunks");
  static constexpr int kChunkBytes = 16;
  static constexpr int kRowBytes = kRowChunks * kChunkBytes;
  static constexpr int kRowsPerLine = kRowChunks >= 8 ? 1 : 8 / kRowChunks;
  static constexpr int kXor = kRowChunks >= 8 ? 8 : kRowChunks;

  // The chunk of `row` that holds logical chunk `chunk` (0 <= chunk < kRowChunks).
  CNNKERN_HD static constexpr int chunk(int row, int chunk) {
    return chunk ^ ((row / kRowsPerLine) % kXor);
  }
  // The byte offset in the tile of logical byte `byte` (0 <= byte < kRowBytes) of `row`.
  CNNKERN_HD static constexpr int byte_offset(int row, int byte) {
    return row * kRowBytes + chunk(row, byte / kChunkBytes) * kChunkBytes + byte % kChunkBytes;
  }
  // The element offset in the tile of element (row, col) of a tile of T (16 / sizeof(T)
  // elements per chunk).
  template <class T>
  CNNKERN_HD static constexpr int element(int row, int col) {
    return byte_offset(row, col * static_cast<int>(sizeof(T))) / static_cast<int>(sizeof(T));
  }
};

}  // namespace cnnkern
