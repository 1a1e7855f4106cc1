#pragma once
// What the tensor-core implicit-GEMM kernels share (the forward, conv2d_igemm_tc.cu, which
// also runs grad-input; grad-weight, conv2d_igemm_tc_wgrad.cu): the cp.async pipeline over
// k-tiles, one k-tile of warp MMAs from ldmatrix fragments, the epilogue that stores a warp's
// accumulators (or its split-K partial sums), and the fixed-order split-K reduce. Torch-free.
//
// Block: 4 warps, 2 x 2 over a BM x BN tile; warp tile (BM/2) x (BN/2) of m16n8 MMA tiles;
// fp32 accumulators acc[mt][nt][e]: rows g (+8 for e >= 2), columns 2 tq, 2 tq + 1 of tile
// (mt, nt), g = lane / 4, tq = lane % 4 (the mma.sync m16n8 C layout).

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/igemm_tc_plan.h"
#include "cuda/async_copy.cuh"
#include "cuda/implicit_gemm_kernel.cuh"  // MmaOp<T>: mma.sync m16n8k16, fp32 accumulators
#include "cuda/kernel_utils.cuh"
#include "cuda/ldmatrix.cuh"

namespace cnnkern {
namespace igemm_tc {

// Where a GEMM's M x N result goes: `out` (row-major, ld N) after bias (by column) and ReLU,
// or, with split-K, raw fp32 partial sums to ws[split][M][N].
template <class T>
struct TcOut {
  T* out;
  float* ws;      // nullptr: no split
  const T* bias;  // N elements or nullptr
  bool relu;
  int M, N;
};

// Two adjacent output columns as one 32-bit store.
__device__ inline void store_pair(__half* p, float a, float b) {
  *reinterpret_cast<__half2*>(p) = __floats2half2_rn(a, b);
}
__device__ inline void store_pair(__nv_bfloat16* p, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
}
__device__ inline void store_pair(float* p, float a, float b) {
  *reinterpret_cast<float2*>(p) = make_float2(a, b);
}

// The MMA step on fragments as ldmatrix delivered them. b16 (float16/bfloat16): mma.sync
// m16n8k16 on the registers as they are. float32 (the TF32 forward): a stage row of 64 bytes
// is 16 floats, and an ldmatrix 8x8 b16 matrix is an 8 x 4 block of floats of which lane t
// receives element (t / 4, t % 4): exactly the m16n8k8 .tf32 A / B fragment layout, with the
// same byte addresses as the b16 k16 step (a k8 step of floats spans the same 32 bytes). The
// registers hold raw fp32 bits, so each is rounded by cvt.rna.tf32.f32 (Tf32MmaOp::to_reg,
// the general kernel's rounding) once, after the load, before it enters NT or MT MMAs.
template <class T>
struct TcMma {
  static constexpr int kStepsPerTile = kBK / 16;  // k16 steps per 64-byte row
  template <int N>
  __device__ static void round(uint32_t (&)[N]) {}
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    igemm_cuda::MmaOp<T>::mma(c, a, b);
  }
};
template <>
struct TcMma<float> {
  static constexpr int kStepsPerTile = bk_elems(4) / 8;  // k8 steps per 64-byte row
  template <int N>
  __device__ static void round(uint32_t (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const float v[1] = {__uint_as_float(r[i])};
      r[i] = igemm_cuda::Tf32MmaOp::to_reg(v);
    }
  }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    igemm_cuda::Tf32MmaOp::mma(c, a, b);
  }
};

template <class T>
__device__ inline float epilogue_value(const TcOut<T>& o, int col, float v) {
  if (o.bias != nullptr) v += cuda_detail::ldg_acc(o.bias + col);
  if (o.relu) v = v < 0.f ? 0.f : v;  // NaN stays NaN, as torch.relu
  return v;
}

template <int MT, int NT>
__device__ inline void zero(float (&acc)[MT][NT][4]) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;
}

// The warp's accumulators, its tile's top-left at (row0, col0) of the result.
template <class T, int MT, int NT>
__device__ inline void store_warp_tile(const TcOut<T>& o, const float (&acc)[MT][NT][4],
                                       int row0, int col0, int lane, int split) {
  const int g = lane >> 2, tq = lane & 3;
  const bool pairs = (o.N & 1) == 0;  // an even N keeps every column pair 4-byte aligned
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = row0 + mt * 16 + g + 8 * h;
        const int col = col0 + nt * 8 + 2 * tq;
        if (row >= o.M || col >= o.N) continue;
        float v0 = acc[mt][nt][2 * h], v1 = acc[mt][nt][2 * h + 1];
        const int64_t off = static_cast<int64_t>(row) * o.N + col;
        if (o.ws != nullptr) {
          float* dst = o.ws + static_cast<int64_t>(split) * o.M * o.N + off;
          if (pairs) {
            *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
          } else {
            dst[0] = v0;
            if (col + 1 < o.N) dst[1] = v1;
          }
          continue;
        }
        v0 = epilogue_value(o, col, v0);
        if (pairs) {
          v1 = epilogue_value(o, col + 1, v1);
          store_pair(o.out + off, v0, v1);
        } else {
          o.out[off] = cuda_detail::from_acc<T>(v0);
          if (col + 1 < o.N) o.out[off + 1] = cuda_detail::from_acc<T>(epilogue_value(o, col + 1, v1));
        }
      }
}

// One k-tile (a 64-byte row: kBK = 32 b16 in two k16 steps, or 16 floats in two k8 steps) of
// the warp's MMAs from the stage at `st`. a_off(ks, mt)
// and b_off(ks, np): this lane's ldmatrix.x4 row address (byte offset in the stage) for the
// m16 tile mt, and for the pair of n8 tiles 2 np, 2 np + 1, whose matrices come in the order
// b0, b1 of tile 2 np, then b0, b1 of tile 2 np + 1. Trans: the tiles are stored k-major
// (ldmatrix .trans turns their 8x8 blocks into the row-major A / column-major B fragments).
template <class T, int MT, int NT, bool Trans, class AOff, class BOff>
__device__ inline void warp_mma_ktile(float (&acc)[MT][NT][4], const unsigned char* st,
                                      const AOff& a_off, const BOff& b_off) {
  static_assert(NT % 2 == 0, "B fragments come in pairs of n8 tiles (one ldmatrix.x4)");
  static_assert(!(Trans && sizeof(T) == 4), "ldmatrix .trans moves b16 halves of a float");
#pragma unroll
  for (int ks = 0; ks < TcMma<T>::kStepsPerTile; ++ks) {
    uint32_t af[MT][4], bf[NT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      cuda_async::ldmatrix<4, Trans>(af[mt], st + a_off(ks, mt));
      TcMma<T>::round(af[mt]);
    }
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t q[4];
      cuda_async::ldmatrix<4, Trans>(q, st + b_off(ks, np));
      TcMma<T>::round(q);
      bf[2 * np][0] = q[0];
      bf[2 * np][1] = q[1];
      bf[2 * np + 1][0] = q[2];
      bf[2 * np + 1][1] = q[3];
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) TcMma<T>::mma(acc[mt][nt], af[mt], bf[nt]);
  }
}

// The cp.async ring: kStages - 1 k-tiles in flight ahead of the one computed, one commit group
// per k-tile. load_next(stage_off) copies the next k-tile into the stage at that byte offset
// and moves the loader on; compute(stage_off) runs the warp MMAs of a landed stage.
template <int kStageBytes, class LoadNext, class Compute>
__device__ inline void run_pipeline(int n_k, const LoadNext& load_next, const Compute& compute) {
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < n_k) load_next(st * kStageBytes);
    cuda_async::cp_async_commit();  // empty groups past the end keep the count uniform
  }
  int read_off = 0, write_off = (kStages - 1) * kStageBytes;
  for (int kt = 0; kt < n_k; ++kt) {
    cuda_async::cp_async_wait_group<kStages - 2>();  // k-tile kt has landed (this thread's)
    __syncthreads();  // ... everyone's; and every warp is done with the stage refilled below
    if (kt + kStages - 1 < n_k) load_next(write_off);
    cuda_async::cp_async_commit();
    compute(read_off);
    read_off = read_off == (kStages - 1) * kStageBytes ? 0 : read_off + kStageBytes;
    write_off = write_off == (kStages - 1) * kStageBytes ? 0 : write_off + kStageBytes;
  }
  cuda_async::cp_async_wait_all();  // only empty groups remain; none left pending at exit
}

// The k-tiles [begin, end) of split-K slice `split`.
struct KRange {
  int begin, count;
  __device__ KRange(int split, int k_tiles, int per_split) {
    begin = split * per_split;
    const int end = k_tiles < begin + per_split ? k_tiles : begin + per_split;
    count = end - begin;
  }
};

// out[e] = epilogue(sum over slices s = 0, 1, ... in order of ws[s M N + e]).
template <class T>
__global__ void __launch_bounds__(256) tc_splitk_reduce_kernel(const TcOut<T> o, int splits) {
  const int64_t mn = static_cast<int64_t>(o.M) * o.N;
  for (int64_t e = cuda_detail::global_thread_id(); e < mn;
       e += cuda_detail::global_thread_count()) {
    float v = o.ws[e];
    for (int s = 1; s < splits; ++s) v += o.ws[s * mn + e];
    o.out[e] = cuda_detail::from_acc<T>(epilogue_value(o, static_cast<int>(e % o.N), v));
  }
}

template <class T>
inline cudaError_t launch_splitk_reduce(const TcOut<T>& o, int splits, cudaStream_t stream) {
  const int64_t mn = static_cast<int64_t>(o.M) * o.N;
  tc_splitk_reduce_kernel<T><<<cuda_detail::blocks_for(mn), 256, 0, stream>>>(o, splits);
  return cudaGetLastError();
}

}  // namespace igemm_tc
}  // namespace cnnkern
