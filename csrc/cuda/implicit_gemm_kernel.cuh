#pragma once
// The GPU side of the implicit-GEMM tile loop in common/implicit_gemm.h: a block of 256
// threads running block_mainloop for one (m tile, n tile, batch/split), __ldg loads converted
// to the accumulator type, and the epilogues; plus the fixed-order split-K reduction. Used by
// conv2d_implicit_gemm.cu (the convolution passes) and conv2d_winograd.cu (the Winograd-domain
// GEMMs). Torch-free.

#include "common/implicit_gemm.h"
#include "cuda/kernel_utils.cuh"

namespace cnnkern {
namespace igemm_cuda {

using namespace cuda_detail;
using igemm::Plan;
using igemm::Tile;

// The calling thread alone; see block_mainloop in common/implicit_gemm.h.
struct GpuExec {
  __device__ int begin() const { return static_cast<int>(threadIdx.x); }
  __device__ int end() const { return static_cast<int>(threadIdx.x) + 1; }
  __device__ static constexpr int slot(int) { return 0; }
  __device__ void sync() const { __syncthreads(); }
};

template <class T>
struct GpuCvt {
  __device__ static acc_t<T> load(const T* base, int64_t off) { return ldg_acc(base + off); }
};

template <class T>
struct OutputEpilogue {  // fprop / dgrad / wgrad without split: convert and store
  T* out;
  const T* bias;  // indexed by the map's channel(); nullptr for none
  bool relu;
  __device__ void operator()(int64_t off, int64_t channel, acc_t<T> v) const {
    if (bias != nullptr) v += ldg_acc(bias + channel);
    if (relu) v = v < acc_t<T>(0) ? acc_t<T>(0) : v;  // NaN stays NaN, as in torch.relu
    out[off] = from_acc<T>(v);
  }
};

template <class A>
struct WorkspaceEpilogue {  // wgrad split s: raw partial sums into workspace row s
  A* ws;
  __device__ void operator()(int64_t off, int64_t, A v) const { ws[off] = v; }
};

// grid: x = m tile, y = n tile, z = group * splits + split.
template <class T, class Map>
__global__ void __launch_bounds__(Tile::kThreads)
    igemm_kernel(const typename Map::Params p, const Plan pl, const T* __restrict__ a_src,
                 const T* __restrict__ b_src, const T* __restrict__ bias, bool relu,
                 T* __restrict__ out, acc_t<T>* __restrict__ ws) {
  using A = acc_t<T>;
  __shared__ igemm::SharedTiles<A> sm;
  igemm::ThreadState<A> st[1];
  const int64_t z = blockIdx.z;
  const int64_t g = z / pl.splits, split = z % pl.splits;
  const Map map(p, g);
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * Tile::BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * Tile::BN;
  const GpuExec ex;
  igemm::block_mainloop<GpuCvt<T>>(ex, map, a_src, b_src, m0, n0, pl.k_begin(split),
                                   pl.k_end(split), sm, st);
  const int t = static_cast<int>(threadIdx.x);
  if (ws != nullptr) {
    WorkspaceEpilogue<A> e{ws + split * pl.groups * pl.M * pl.N};
    igemm::block_epilogue(map, m0, n0, t, st[0], e);
  } else {
    OutputEpilogue<T> e{out, bias, relu};
    igemm::block_epilogue(map, m0, n0, t, st[0], e);
  }
}

// out[e] = sum over splits s = 0, 1, ... (in that order) of ws[s * numel + e].
template <class T>
__global__ void splitk_reduce_kernel(const acc_t<T>* __restrict__ ws, int64_t splits,
                                     int64_t numel, T* __restrict__ out) {
  for (int64_t e = global_thread_id(); e < numel; e += global_thread_count()) {
    acc_t<T> acc = ws[e];
    for (int64_t s = 1; s < splits; ++s) acc += ws[s * numel + e];
    out[e] = from_acc<T>(acc);
  }
}

template <class Map, class T>
cudaError_t launch_pass(const typename Map::Params& p, const Plan& pl, const T* a_src, const T* b_src,
                        const T* bias, bool relu, T* out, acc_t<T>* ws, cudaStream_t stream) {
  if (igemm::plan_why_not(pl)[0] != '\0') return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(pl.tiles_m), static_cast<unsigned>(pl.tiles_n),
                  static_cast<unsigned>(pl.grid_z()));
  igemm_kernel<T, Map><<<grid, Tile::kThreads, 0, stream>>>(p, pl, a_src, b_src, bias, relu,
                                                             out, ws);
  return cudaGetLastError();
}

}  // namespace igemm_cuda
}  // namespace cnnkern
