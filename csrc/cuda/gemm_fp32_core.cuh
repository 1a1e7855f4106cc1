#pragma once
// The fp32 GEMM core: a strided batched C[z] = A[z] B[z] (core/gemm_fp32_tile.h: the tile, the
// thread mappings and the operand description, tested on the CPU). One block of 256 threads
// per 128 x 128 tile of C, each thread an 8 x 8 register tile; k-tiles of 8 staged into two
// shared-memory buffers with cp.async (one 16-byte copy per thread and operand where the
// operand's mn dimension is contiguous and aligned, else four 4-byte copies), so tile k + 1
// loads while tile k is multiplied; the copies zero-fill past M, N and K, so the main loop
// has no edge branches. Torch-free.

#include <cuda_runtime.h>

#include <cstdint>

#include "core/gemm_fp32_tile.h"
#include "cuda/async_copy.cuh"

namespace cnnkern {
namespace gemm32 {

// Stages one operand's k-tiles into shared memory, in k-tile order (each load advances). Its
// state is 5 registers; strides are re-read from the kernel's parameters (constant memory) at
// each load rather than kept, since the 8 x 8 accumulators leave few registers to spare.
// Copies past an edge take 0 source bytes (zero-fill): their address, possibly past the
// operand's end, is never read (PTX ISA, cp.async: src-size), only aligned like the others.
template <bool Vec>
struct OperandStager {
  const float* src;  // the thread's first copy in the next k-tile
  int dst;           // its float offset in a stage
  int k;             // its k within the tile
  int mn_bytes = 0;  // vector path: source bytes inside the extent; scalar: bit e = copy e is

  __device__ OperandStager(const float* p, const Operand& o, int64_t mn0, int t) {
    const CopySlot s = Vec ? vec_slot(t) : scalar_slot(k_fastest(o), t, 0);
    src = p + (mn0 + s.mn) * o.mn + s.k * o.k;
    dst = s.smem();
    k = s.k;
    if constexpr (Vec) {
      mn_bytes = vec_src_bytes(mn0 + s.mn, 0, o, 1);
    } else {
#pragma unroll
      for (int e = 0; e < Tile::kCopies; ++e)
        if (mn0 + scalar_slot(k_fastest(o), t, e).mn < o.extent) mn_bytes |= 1 << e;
    }
  }

  // The next k-tile (starting at k0 < K) into `stage`.
  __device__ void load(float* stage, const Operand& o, int k0, int K) {
    using namespace cuda_async;
    if constexpr (Vec) {
      cp_async_cg(stage + dst, src, k0 + k < K ? mn_bytes : 0);
    } else {
      // From copy e to e + 1 (scalar_slot): 32 along mn, or 2 along k.
      const bool kf = k_fastest(o);
      const int64_t e_step = kf ? 32 * o.mn : 2 * o.k;
      const int dst_step = kf ? 32 : 2 * Tile::kLd, k_e = kf ? 0 : 2;
#pragma unroll
      for (int e = 0; e < Tile::kCopies; ++e) {
        const bool ok = ((mn_bytes >> e) & 1) != 0 && k0 + k + e * k_e < K;
        cp_async_ca<4>(stage + dst + e * dst_step, src + e * e_step, ok ? 4 : 0);
      }
    }
    src += Tile::BK * o.k;
  }
};

// Stages an operand whose mn rows are contiguous along k (row stride `ld`, `extent` rows):
// OperandStager<false>'s k-fastest copies with the layout known at compile time, so a k-tile
// costs one k check and Copies predicated 4-byte copies (8 lanes read 32 consecutive bytes of
// a row). Copies = 4 stages 128 rows; 2 stages the first 64 (the narrow tile's A operand).
template <int Copies = Tile::kCopies>
struct KRowStager {
  static_assert(Copies >= 1 && Copies <= Tile::kCopies, "32 rows per copy, at most BM rows");
  const float* src;  // copy 0's element in the next k-tile; copy e is 32 * e rows further
  int dst;           // copy 0's float offset in a stage; copy e is 32 * e further
  int k;             // the thread's k within a tile
  int rows_ok = 0;   // bit e: copy e's row is inside the extent

  __device__ KRowStager(const float* p, int64_t ld, int64_t extent, int64_t mn0, int t) {
    const CopySlot s = scalar_slot(true, t, 0);
    src = p + (mn0 + s.mn) * ld + s.k;
    dst = s.smem();
    k = s.k;
#pragma unroll
    for (int e = 0; e < Copies; ++e)
      if (mn0 + scalar_slot(true, t, e).mn < extent) rows_ok |= 1 << e;
  }

  // The next k-tile (starting at k0 < K) into `stage`.
  __device__ void load(float* stage, int64_t ld, int k0, int K) {
    const bool k_ok = k0 + k < K;
    const int64_t e_step = 32 * ld;  // scalar_slot(true, t, e + 1).mn - ...(e).mn rows
#pragma unroll
    for (int e = 0; e < Copies; ++e) {
      const bool ok = k_ok && ((rows_ok >> e) & 1) != 0;
      cuda_async::cp_async_ca<4>(stage + dst + 32 * e, src + e * e_step, ok ? 4 : 0);
    }
    src += Tile::BK;
  }
};

// acc += the stage's A^T-tile x B-tile for thread t's TM x 8 outputs: per k, four LDS.128
// and 64 FFMA (TM = 8), or three and 32 (TM = 4: the narrow tile, rows tile_row(t, 0..3) of
// the first 64; tile_row is the same formula for both).
template <int TM = Tile::TM>
__device__ __forceinline__ void multiply_stage(const float4* sa, const float4* sb, int t,
                                               float (&acc)[TM][Tile::TN]) {
  static_assert(TM == 8 || TM == 4, "one or two float4 of A per k");
  constexpr int kLd4 = Tile::kLd / 4;
  const int a0 = tile_row(t, 0) / 4, a1 = tile_row(t, 4) / 4;
  const int b0 = tile_col(t, 0) / 4, b1 = tile_col(t, 4) / 4;
#pragma unroll
  for (int kk = 0; kk < Tile::BK; ++kk) {
    const float4 xa = sa[kk * kLd4 + a0];
    const float4 ya = TM == 8 ? sa[kk * kLd4 + a1] : xa;
    const float4 xb = sb[kk * kLd4 + b0], yb = sb[kk * kLd4 + b1];
    const float av[8] = {xa.x, xa.y, xa.z, xa.w, ya.x, ya.y, ya.z, ya.w};
    const float bv[Tile::TN] = {xb.x, xb.y, xb.z, xb.w, yb.x, yb.y, yb.z, yb.w};
#pragma unroll
    for (int i = 0; i < TM; ++i) {
#pragma unroll
      for (int j = 0; j < Tile::TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
  }
}

// Thread t's TM x 8 results to C, bounded by M and N; 4 columns at once as a float4 where C's
// n dimension is contiguous and aligned (vec_c) and all 4 are inside N. TM = 4: the narrow
// tile's rows tile_row(t, 0..3), all in the first 64 (multiply_stage).
template <int TM = Tile::TM>
__device__ __forceinline__ void store_tile(const GemmDesc& d, float* c, int64_t m0, int64_t n0,
                                           int t, bool vec_c,
                                           const float (&acc)[TM][Tile::TN]) {
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t m = m0 + tile_row(t, i);
    if (m >= d.M) continue;
#pragma unroll
    for (int jb = 0; jb < Tile::TN; jb += 4) {
      const int64_t n = n0 + tile_col(t, jb);
      float* p = c + m * d.c_m + n * d.c_n;
      if (vec_c && n + 3 < d.N) {
        *reinterpret_cast<float4*>(p) =
            make_float4(acc[i][jb], acc[i][jb + 1], acc[i][jb + 2], acc[i][jb + 3]);
        continue;
      }
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (n + j < d.N) p[j * d.c_n] = acc[i][jb + j];
    }
  }
}

// The core's main loop, shared by every kernel built on it: the block's `ktiles` k-tiles,
// double-buffered. load(stage_a, stage_b, kt) issues this thread's cp.async copies of tile kt
// (in increasing kt: the stagers advance); tile kt + 1 is in flight while tile kt is
// multiplied. Leaves every copy complete.
using StageBuf = float4[2][Tile::kStageFloats / 4];
template <int TM = Tile::TM, class Load>
__device__ __forceinline__ void mainloop(int ktiles, StageBuf& sa, StageBuf& sb, int t,
                                         float (&acc)[TM][Tile::TN], Load&& load) {
#pragma unroll
  for (int i = 0; i < TM; ++i) {
#pragma unroll
    for (int j = 0; j < Tile::TN; ++j) acc[i][j] = 0.f;
  }
  const auto stage = [](StageBuf& s, int b) { return reinterpret_cast<float*>(s[b]); };
  if (ktiles > 0) load(stage(sa, 0), stage(sb, 0), 0);
  cuda_async::cp_async_commit();
  for (int kt = 0; kt < ktiles; ++kt) {
    const int cur = kt & 1;
    // Tile kt + 1 into the other stage: every thread finished reading it (the barrier at the
    // end of the previous iteration).
    if (kt + 1 < ktiles) load(stage(sa, cur ^ 1), stage(sb, cur ^ 1), kt + 1);
    cuda_async::cp_async_commit();    // (an empty group on the last tile keeps the count)
    cuda_async::cp_async_wait_group<1>();  // this thread's copies of tile kt landed ...
    __syncthreads();                       // ... and every thread's
    multiply_stage<TM>(sa[cur], sb[cur], t, acc);
    __syncthreads();  // stage `cur` is refilled next iteration
  }
  cuda_async::cp_async_wait_all();
}

// grid_of(d) blocks of kGemmThreads; VecA / VecB: vec_ok of the batch's operand (every batch
// alike: vec_ok checks the batch stride), vec_c: C's columns float4-storable.
template <bool VecA, bool VecB>
__global__ void __launch_bounds__(kGemmThreads, 2)
    gemm_fp32_kernel(const GemmDesc d, const float* __restrict__ a, const float* __restrict__ b,
                     float* __restrict__ c, bool vec_c) {
  // Two stages per operand, as float4 so that both compilers align them for 16-byte copies.
  __shared__ StageBuf sa, sb;
  const int t = static_cast<int>(threadIdx.x);
  // Block coordinates, read again for the epilogue rather than kept through the main loop.
  const auto m0 = [] { return static_cast<int64_t>(blockIdx.y) * Tile::BM; };
  const auto n0 = [] { return static_cast<int64_t>(blockIdx.x) * Tile::BN; };
  const auto z = [] { return static_cast<int64_t>(blockIdx.z); };
  OperandStager<VecA> la(a + z() * d.a_z, operand_a(d), m0(), t);
  OperandStager<VecB> lb(b + z() * d.b_z, operand_b(d), n0(), t);
  const Operand oa = operand_a(d), ob = operand_b(d);
  float acc[Tile::TM][Tile::TN];
  const int K = static_cast<int>(d.K);  // < 2^31 - BK (why_not)
  mainloop((K + Tile::BK - 1) / Tile::BK, sa, sb, t, acc, [&](float* st_a, float* st_b, int kt) {
    la.load(st_a, oa, kt * Tile::BK, K);
    lb.load(st_b, ob, kt * Tile::BK, K);
  });
  store_tile(d, c + z() * d.c_z, m0(), n0(), t, vec_c, acc);
}

}  // namespace gemm32
}  // namespace cnnkern
