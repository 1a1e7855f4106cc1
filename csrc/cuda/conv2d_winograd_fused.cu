// Fused Winograd F(m x m, 3x3) forward on CUDA, m = 4 or 2, as openCNN arranges it: one block
// per (16 tiles, 32 output channels, group) keeps all a*a Winograd-domain GEMMs of its tiles in
// registers (core/winograd_fused_tile.h: the block shape). Per chunk of input channels it
//   1. transforms its input tiles (with their halo, zero past the image) into shared memory
//      (the GEMMs' B operand), with core/winograd.h's 1-D input transform, columns then rows;
//   2. copies the chunk's transformed filters U (launch_winograd_filter's, cached or not) into
//      shared memory with cp.async (the A operand), 16 bytes at a time when K/groups % 4 == 0;
//   3. accumulates: each thread one Winograd point, an 8 x 8 (channel x tile) register tile.
// The epilogue stages the products through shared memory a few rows at a time and applies the
// output transform, bias and ReLU on the way to the output. All in fp32 (float16/bfloat16 are
// converted on load and rounded once on store). Single-buffered: a block's load and compute
// phases alternate, other resident blocks fill the gaps.

#include "cuda/conv2d_winograd_fused.h"

#include <cuda_runtime.h>  // first: the emulator's runtime, which async_copy.cuh relies on

#include <type_traits>

#include "core/winograd.h"
#include "core/winograd_fused_tile.h"
#include "cuda/async_copy.cuh"
#include "cuda/implicit_gemm_kernel.cuh"

namespace cnnkern {
namespace {

using namespace cuda_detail;
using igemm_cuda::GpuCvt;
using igemm_cuda::OutputEpilogue;
using wino_fused::Cfg;
using wino_fused::Tiles;

// Block sizes as the launches name them (bench/launch_config.py reads these).
constexpr int kFused4Threads = 288;
constexpr int kFused2Threads = 128;
static_assert(kFused4Threads == Cfg<4>::kThreads && kFused2Threads == Cfg<2>::kThreads,
              "launch sizes follow the block shape");

// Where one of the block's TB input tiles lies, worked out once per block (tid < TB) and kept
// in shared memory, so the per-chunk transform needs no 64-bit division.
struct TileInfo {
  long long plane;  // element offset of channel 0 of the block's group, the tile's image
  int origin;       // in-plane offset of the window's (0, 0): may be negative
  unsigned masks;   // bit r: window row r inside the image; bit 8 + s: column s
};
static_assert(sizeof(TileInfo) == 16, "one float4 per tile");

template <int M>
__device__ __forceinline__ TileInfo tile_info(const Conv2dProblem& q, const Tiles& tl,
                                              int64_t t, int g) {
  TileInfo ti{0, 0, 0u};
  if (t >= tl.T) return ti;  // past the last tile: all zeros
  const int64_t tw = t % tl.TW, u = t / tl.TW;
  const int64_t th = u % tl.TH, n = u / tl.TH;
  const int64_t h0 = th * M - q.pad_h, w0 = tw * M - q.pad_w;
#pragma unroll
  for (int r = 0; r < M + 2; ++r) {
    if (h0 + r >= 0 && h0 + r < q.H) ti.masks |= 1u << r;
    if (w0 + r >= 0 && w0 + r < q.W) ti.masks |= 1u << (8 + r);
  }
  ti.origin = static_cast<int>(h0 * q.W + w0);  // |.| < H*W + 2W + 2 < 2^31 (why_not)
  ti.plane = (n * q.C + g * q.C_per_group()) * q.H * q.W;
  return ti;
}

// The input transform V_s[xi][c][t] = (B^T d B)[xi] of the chunk's BC x TB tiles, as the 1-D
// transform down every window column, written in place to V_s[r * a + s], then (after a
// barrier) along every row. Each thread owns one column (c_l, t_l, s) and one row of the
// chunk's windows (Cfg::BC makes that exact): where its column lies is worked out once, a
// chunk only moves it BC planes on; a few registers per thread instead of a whole window.
template <int M, class T>
struct ColumnLoader {
  static constexpr int a = M + 2;
  const T* src;   // the column's top in the current chunk's plane (x itself when dead)
  int c_l;        // the chunk channel it reads
  int W;
  unsigned rows;  // bit r: window row r inside the image (0: column outside, or no tile)
  float* dst;     // V_s at point (0, s), its channel and tile

  __device__ ColumnLoader(const Conv2dProblem& q, const T* x, const TileInfo* info, int tid,
                          float* vs) {
    using C = Cfg<M>;
    const int s = tid % a, t_l = (tid / a) % C::TB;
    c_l = tid / (a * C::TB);
    const TileInfo ti = info[t_l];
    const bool col = ((ti.masks >> (8 + s)) & 1u) != 0;
    rows = col ? ti.masks & 0xffu : 0u;
    src = col ? x + ti.plane + c_l * q.H * q.W + ti.origin + s : x;
    W = static_cast<int>(q.W);
    dst = vs + s * C::kVStride + c_l * C::TB + t_l;
  }

  // The chunk starting at group channel c0 (zeros past Cg), then on to the next chunk.
  __device__ __forceinline__ void transform(int64_t c0, int64_t Cg, int64_t chunk_elems) {
    using C = Cfg<M>;
    const unsigned live = c0 + c_l < Cg ? rows : 0u;
    float d[a];
#pragma unroll
    for (int r = 0; r < a; ++r) d[r] = ((live >> r) & 1u) ? GpuCvt<T>::load(src, r * W) : 0.f;
    winograd::Tile<M>::template input_1d<float>(d, 1, dst, a * C::kVStride);
    if (rows != 0u) src += chunk_elems;
  }
};

template <int M>
__device__ __forceinline__ void transform_row(float* row) {
  using C = Cfg<M>;
  constexpr int a = M + 2;
  float d[a];
#pragma unroll
  for (int s = 0; s < a; ++s) d[s] = row[s * C::kVStride];
  winograd::Tile<M>::template input_1d<float>(d, 1, row, C::kVStride);
}

// The chunk's U (points x BC channels x KB output channels) into U_s[xi][c][k] with cp.async;
// zero-filled past Cg and Kg. VecU: Kg % 4 == 0 and U 16-byte aligned (one 16-byte copy per
// 4 channels), else 4-byte copies. Thread tid copies channels k..k+3 of chunk channel c_l at
// points xi0, xi0 + kUPointStep, ...: one source pointer and one stride for all its copies,
// and one bounds check, since only the point changes between them.
template <int M, bool VecU>
struct FilterCopier {
  const float* src;  // U at (xi0, g, chunk channel c_l, k0 + k) of the current chunk
  const float* U;    // a valid, aligned address for the zero-filling copies
  int64_t step;      // U's stride for kUPointStep points
  float* dst;
  int c_l;
  int k_valid;       // of the 4 channels, how many are inside Kg (0..4)

  __device__ FilterCopier(const float* u, int64_t groups, int g, int64_t Cg, int64_t Kg,
                          int64_t k0, int tid, float* us) : U(u) {
    using C = Cfg<M>;
    constexpr int k4s = C::KB / 4;
    const int k = (tid % k4s) * 4, xi0 = tid / (k4s * C::BC);
    c_l = (tid / k4s) % C::BC;
    step = C::kUPointStep * groups * Cg * Kg;
    src = u + ((xi0 * groups + g) * Cg + c_l) * Kg + k0 + k;
    dst = us + xi0 * C::kUStride + c_l * C::KB + k;
    const int64_t left = Kg - (k0 + k);
    k_valid = left <= 0 ? 0 : (left >= 4 ? 4 : static_cast<int>(left));
  }

  __device__ __forceinline__ void copy(int64_t c0, int64_t Cg, int64_t Kg) {
    using C = Cfg<M>;
    const int n = c0 + c_l < Cg ? k_valid : 0;
#pragma unroll
    for (int e = 0; e < C::kUCopies; ++e) {
      float* d = dst + e * C::kUPointStep * C::kUStride;
      const float* p = src + e * step;
      if constexpr (VecU) {
        cuda_async::cp_async_cg(d, n > 0 ? p : U, n > 0 ? 16 : 0);  // Kg % 4 == 0: 4 or none
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) cuda_async::cp_async_ca<4>(d + j, j < n ? p + j : U, j < n ? 4 : 0);
      }
    }
    if (n > 0) src += C::BC * Kg;
  }
};

// acc += U_s[xi] x V_s[xi] over the chunk's BC channels: per channel 4 LDS.128 and 64 FFMA.
template <int M>
__device__ __forceinline__ void multiply_chunk(const float* us, const float* vs, int xi, int tk,
                                               int tt, float (&acc)[8][8]) {
  using C = Cfg<M>;
#pragma unroll
  for (int c = 0; c < C::BC; ++c) {
    const float4* ur = reinterpret_cast<const float4*>(us + xi * C::kUStride + c * C::KB + tk * C::RK);
    const float4* vr = reinterpret_cast<const float4*>(vs + xi * C::kVStride + c * C::TB + tt * C::RT);
    const float4 u0 = ur[0], u1 = ur[1], v0 = vr[0], v1 = vr[1];
    const float uv[8] = {u0.x, u0.y, u0.z, u0.w, u1.x, u1.y, u1.z, u1.w};
    const float vv[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(uv[i], vv[j], acc[i][j]);
    }
  }
}

// The epilogue: EP accumulator rows per thread per pass into E_s[xi][r][t_l] (r = tk * EP +
// row within the pass), then one output transform per (r, t_l) of the pass, bias and ReLU
// applied, the tile's in-image outputs stored.
template <int M, class T>
__device__ __forceinline__ void store_outputs(const Conv2dProblem& q, const Tiles& tl, int64_t t0,
                                              int64_t k0, int g, int xi, int tk, int tt,
                                              int tid, const float (&acc)[8][8],
                                              const OutputEpilogue<T>& out, float* es) {
  using C = Cfg<M>;
  constexpr int a = M + 2, kPoint = C::kEpiRows * C::TB;
  const int64_t Kg = q.K_per_group();
#pragma unroll
  for (int pass = 0; pass < C::RK / C::EP; ++pass) {
    __syncthreads();  // the previous pass (or the main loop) is done with the shared memory
#pragma unroll
    for (int i = 0; i < C::EP; ++i) {
      float4* row = reinterpret_cast<float4*>(es + xi * kPoint + (tk * C::EP + i) * C::TB +
                                              tt * C::RT);
      const float* v = acc[pass * C::EP + i];
      row[0] = make_float4(v[0], v[1], v[2], v[3]);
      row[1] = make_float4(v[4], v[5], v[6], v[7]);
    }
    __syncthreads();
    for (int it = tid; it < kPoint; it += C::kThreads) {
      const int r = it / C::TB, t_l = it % C::TB;
      const int64_t t = t0 + t_l;
      const int64_t kl = k0 + (r / C::EP) * C::RK + pass * C::EP + r % C::EP;
      if (t >= tl.T || kl >= Kg) continue;
      float xv[a][a], yv[M][M];
#pragma unroll
      for (int p = 0; p < a * a; ++p) xv[p / a][p % a] = es[p * kPoint + it];
      winograd::output_transform<M, float>(&xv[0][0], a, 1, &yv[0][0], M, 1);
      const int64_t tw = t % tl.TW, u = t / tl.TW;
      const int64_t th = u % tl.TH, n = u / tl.TH;
      const int64_t k = g * Kg + kl;
      const int64_t plane = (n * q.K + k) * q.P * q.Q;
#pragma unroll
      for (int rr = 0; rr < M; ++rr) {
        const int64_t op = th * M + rr;
#pragma unroll
        for (int s = 0; s < M; ++s) {
          const int64_t oq = tw * M + s;
          if (op < q.P && oq < q.Q) out(plane + op * q.Q + oq, k, yv[rr][s]);
        }
      }
    }
  }
}

// A launch's arguments (one struct, so that the two kernels below differ in their shape alone).
template <class T>
struct FusedArgs {
  Conv2dProblem q;  // the forward problem, or grad-input's turned one
  Tiles tl;
  const T* x;       // input (grad-input: grad_output)
  const float* U;   // launch_winograd_filter's transformed filters
  const T* bias;    // K elements or nullptr
  bool relu;
  unsigned k_blocks;  // channel blocks per tile block (wino_fused::Grid)
  T* y;
};

template <int M, bool VecU, class T>
__device__ __forceinline__ void fused_block(const FusedArgs<T>& args, float* smem) {
  using C = Cfg<M>;
  const Conv2dProblem& q = args.q;
  const Tiles& tl = args.tl;
  const unsigned k_blocks = args.k_blocks;
  constexpr int a = M + 2;
  float* us = smem;
  float* vs = smem + C::kUFloats;
  const int tid = static_cast<int>(threadIdx.x);
  const int xi = tid / C::kPointThreads, tk = (tid % C::kPointThreads) / C::TT,
            tt = tid % C::TT;
  // blockIdx.x = tile block * k_blocks + channel block (wino_fused::grid_of)
  const int64_t t0 = static_cast<int64_t>(blockIdx.x / k_blocks) * C::TB;
  const int64_t k0 = static_cast<int64_t>(blockIdx.x % k_blocks) * C::KB;
  const int g = static_cast<int>(blockIdx.z);
  const int64_t Cg = q.C_per_group(), Kg = q.K_per_group();
  TileInfo* info = reinterpret_cast<TileInfo*>(smem + C::kSmemFloats);
  if (tid < C::TB) info[tid] = tile_info<M>(q, tl, t0 + tid, g);
  __syncthreads();
  ColumnLoader<M, T> column(q, args.x, info, tid, vs);
  FilterCopier<M, VecU> filters(args.U, q.groups, g, Cg, Kg, k0, tid, us);
  float* row = vs + (tid % a) * a * C::kVStride + tid / a;  // row r = tid % a of window tid / a
  const int64_t chunk_elems = C::BC * q.H * q.W;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
  }
  for (int64_t c0 = 0; c0 < Cg; c0 += C::BC) {
    __syncthreads();  // every thread is done reading the previous chunk
    filters.copy(c0, Cg, Kg);
    cuda_async::cp_async_commit();
    column.transform(c0, Cg, chunk_elems);
    __syncthreads();  // every column done
    transform_row<M>(row);
    cuda_async::cp_async_wait_all();
    __syncthreads();  // U_s and V_s complete
    multiply_chunk<M>(us, vs, xi, tk, tt, acc);
  }
  const OutputEpilogue<T> out{args.y, args.bias, args.relu};
  store_outputs<M, T>(q, tl, t0, k0, g, xi, tk, tt, tid, acc, out, smem);
}

template <class T, bool VecU>
__global__ void __launch_bounds__(kFused4Threads, 1) wino_fused4_kernel(const FusedArgs<T> args) {
  __shared__ float4 smem[Cfg<4>::kSmemFloats / 4 + Cfg<4>::TB];  // + TileInfo[TB]
  fused_block<4, VecU>(args, reinterpret_cast<float*>(smem));
}

template <class T, bool VecU>
__global__ void __launch_bounds__(kFused2Threads, 2) wino_fused2_kernel(const FusedArgs<T> args) {
  __shared__ float4 smem[Cfg<2>::kSmemFloats / 4 + Cfg<2>::TB];  // + TileInfo[TB]
  fused_block<2, VecU>(args, reinterpret_cast<float*>(smem));
}

template <int M, class T, bool VecU>
void launch(const dim3& grid, const FusedArgs<T>& args, cudaStream_t stream) {
  if constexpr (M == 4)
    wino_fused4_kernel<T, VecU><<<grid, kFused4Threads, 0, stream>>>(args);
  else
    wino_fused2_kernel<T, VecU><<<grid, kFused2Threads, 0, stream>>>(args);
}

template <int M, class T>
cudaError_t run(const Conv2dProblem& q, const T* x, const float* U, const T* bias, bool relu,
                T* y, cudaStream_t stream) {
  const wino_fused::Grid g = wino_fused::grid_of<M>(q);
  const dim3 grid(static_cast<unsigned>(g.x), 1, static_cast<unsigned>(g.z));
  const FusedArgs<T> args{q, wino_fused::tiles_of<M>(q), x, U, bias, relu,
                          static_cast<unsigned>(g.k_blocks), y};
  const bool vec_u = q.K_per_group() % 4 == 0 && reinterpret_cast<uintptr_t>(U) % 16 == 0;
  if (vec_u) launch<M, T, true>(grid, args, stream);
  else launch<M, T, false>(grid, args, stream);
  return cudaGetLastError();
}

Conv2dProblem problem_of(const Conv2dProblem& p, bool grad_input) {
  return grad_input ? winograd::turned_problem(p) : p;
}

}  // namespace

const char* winograd_fused_why_not(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input) {
  if (dt == CudaDType::Double) return "float64 runs the unfused kernels";
  if (m != 2 && m != 4) return "m must be 2 or 4";
  const Conv2dProblem q = problem_of(p, grad_input);
  return m == 4 ? wino_fused::why_not<4>(q) : wino_fused::why_not<2>(q);
}

cudaError_t launch_winograd_fused(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input,
                                  const void* src, const void* U, const void* bias, bool relu,
                                  void* dst, cudaStream_t stream) {
  const Conv2dProblem q = problem_of(p, grad_input);
  if (q.output_numel() == 0) return cudaSuccess;
  if (U == nullptr || winograd_fused_why_not(dt, m, p, grad_input)[0] != '\0')
    return cudaErrorInvalidValue;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same<T, double>::value) {
      return cudaErrorInvalidValue;  // refused above
    } else {
      const T* x = static_cast<const T*>(src);
      const float* u = static_cast<const float*>(U);
      const T* b = static_cast<const T*>(bias);
      T* y = static_cast<T*>(dst);
      return m == 4 ? run<4, T>(q, x, u, b, relu, y, stream) : run<2, T>(q, x, u, b, relu, y, stream);
    }
  });
}

}  // namespace cnnkern
