#pragma once
// Index math of the CUDA fp32 GEMM core (cuda/gemm_fp32_core.cuh), host + device and torch-free,
// so that the CPU tests check it apart from the kernel (tests/internals/test_gemm_fp32_tile.py).
//
// The core computes a strided batched GEMM, C[z](m, n) = sum_k A[z](m, k) * B[z](k, n), every
// operand given by its strides (GemmDesc). A block of 256 threads owns a 128 x 128 tile of C;
// each thread an 8 x 8 register tile made of 2 x 2 blocks of 4 x 4 (rows ty*4 + {0..3} and
// 64 + ty*4 + {0..3}, columns likewise with tx), so each k step reads its 8 A and 8 B values as
// four float4 from shared memory (LDS.128): a warp's A reads hit 2 addresses (broadcast), its
// B reads 16 consecutive float4 (a quarter warp reads one 128-byte line), so no bank conflict.
// Both shared tiles are [BK][BM + kPad] floats with m (or n) contiguous: A is staged as A^T,
// so A and B share one loader ("the operand": an mn x k matrix).

#include <cstdint>

#include "core/macros.h"

namespace cnnkern {
namespace gemm32 {

// Threads per block (named apart from other kernels' kThreads: the SASS report resolves a
// launch's block size through the constant's name).
constexpr int kGemmThreads = 256;

struct Tile {
  static constexpr int BM = 128, BN = 128, BK = 8;
  static constexpr int TM = 8, TN = 8;  // register tile per thread: 2 x 2 blocks of 4 x 4
  static constexpr int kHalf = 64;      // where the second 4 x 4 block starts
  // Rows of BM + 4 floats: still 16-byte aligned for cp.async and float4 reads, and the
  // 4-byte copies of a k-contiguous operand (8 k rows x 4 mn per warp) land on 32 banks.
  static constexpr int kPad = 4;
  static constexpr int kLd = BM + kPad;
  static constexpr int kStageFloats = BK * kLd;  // one operand, one pipeline stage
  static constexpr int kCopies = 4;  // 4-byte copies per thread, operand and k-tile (scalar path)
};
static_assert(Tile::BM == Tile::BN, "A and B share the loader and the shared-tile shape");
static_assert(Tile::BM == 16 * Tile::TM && 16 * 16 == kGemmThreads, "a 16 x 16 thread grid");
static_assert(Tile::BK * Tile::BM == kGemmThreads * 4, "one float4 (or 4 floats) per thread");

// C[z](m, n) = sum_k A[z](m, k) B[z](k, n); element (m, k) of A[z] at a[z*a_z + m*a_m + k*a_k].
struct GemmDesc {
  int64_t batches = 1, M = 0, N = 0, K = 0;
  int64_t a_z = 0, a_m = 0, a_k = 0;
  int64_t b_z = 0, b_k = 0, b_n = 0;
  int64_t c_z = 0, c_m = 0, c_n = 0;
};

// One operand as the loader sees it: an mn x k matrix (A: mn = m; B: mn = n).
struct Operand {
  int64_t z = 0, mn = 0, k = 0;  // strides
  int64_t extent = 0;            // M or N
};
CNNKERN_HD Operand operand_a(const GemmDesc& d) { return {d.a_z, d.a_m, d.a_k, d.M}; }
CNNKERN_HD Operand operand_b(const GemmDesc& d) { return {d.b_z, d.b_n, d.b_k, d.N}; }

// Whether an operand can be staged with one 16-byte cp.async per thread: 4 mn-consecutive
// elements are contiguous, and every such group starts 16-byte aligned (given the base's
// address: `base_addr`).
CNNKERN_HD bool vec_ok(const Operand& o, uint64_t base_addr) {
  return o.mn == 1 && o.k % 4 == 0 && o.z % 4 == 0 && base_addr % 16 == 0;
}

// Thread t's rows (i) / columns (j) of the block's tile, i, j in [0, 8).
CNNKERN_HD int tile_row(int t, int i) { return (i / 4) * Tile::kHalf + (t / 16) * 4 + i % 4; }
CNNKERN_HD int tile_col(int t, int j) { return (j / 4) * Tile::kHalf + (t % 16) * 4 + j % 4; }

// Where thread t's copies of one k-tile come from (k, mn within the tile) and go (float offset
// in a stage: k * kLd + mn).
//   vector path: one 16-byte copy, k = t / 32, mn = 4 * (t % 32) .. + 3.
//   scalar path, copy e in [0, 4): 4-byte copies, consecutive threads along the operand's
//   contiguous dimension so a warp's reads coalesce: along mn (k = 2e + t / 128,
//   mn = t % 128) unless k is the unit-stride one (k = t % 8, mn = t / 8 + 32 e).
struct CopySlot {
  int k = 0, mn = 0;
  CNNKERN_HD int smem() const { return k * Tile::kLd + mn; }
};
CNNKERN_HD CopySlot vec_slot(int t) { return {t / 32, 4 * (t % 32)}; }
CNNKERN_HD bool k_fastest(const Operand& o) { return o.k == 1 && o.mn != 1; }
CNNKERN_HD CopySlot scalar_slot(bool kfast, int t, int e) {
  return kfast ? CopySlot{t % 8, t / 8 + 32 * e} : CopySlot{2 * e + t / 128, t % 128};
}

// Bytes a 16-byte copy takes from global memory for the 4 elements from mn (the rest is
// zero-filled): none past K or past the operand's extent.
CNNKERN_HD int vec_src_bytes(int64_t mn, int64_t k, const Operand& o, int64_t K) {
  if (k >= K || mn >= o.extent) return 0;
  const int64_t left = o.extent - mn;
  return 4 * static_cast<int>(left < 4 ? left : 4);
}

// Grid: x = tiles along N (the largest dimension in Winograd's use), y = tiles along M,
// z = batch. "" when it fits CUDA's grid limits, else why not.
struct Grid {
  int64_t x = 0, y = 0, z = 0;
};
CNNKERN_HD Grid grid_of(const GemmDesc& d) {
  return {(d.N + Tile::BN - 1) / Tile::BN, (d.M + Tile::BM - 1) / Tile::BM, d.batches};
}
CNNKERN_HD const char* why_not(const GemmDesc& d) {
  if (d.M < 0 || d.N < 0 || d.K < 0 || d.batches < 0) return "negative GEMM size";
  // The main loop counts k in 32 bits.
  if (d.K > 2147483647 - Tile::BK) return "the fp32 GEMM's reduction is longer than 2^31 - 9";
  const Grid g = grid_of(d);
  if (g.x > 2147483647) return "the fp32 GEMM's grid needs more than 2^31 - 1 column tiles";
  if (g.y > 65535) return "the fp32 GEMM's grid needs more than 65535 row tiles of 128";
  if (g.z > 65535) return "the fp32 GEMM's grid needs more than 65535 batches";
  return "";
}

}  // namespace gemm32
}  // namespace cnnkern
