#pragma once
// The GPU side of the implicit-GEMM tile loop in common/implicit_gemm.h: a block of 256
// threads running block_mainloop for one (m tile, n tile, batch/split), __ldg loads converted
// to the accumulator type, and the epilogues; plus the fixed-order split-K reduction. Used by
// conv2d_implicit_gemm.cu (the convolution passes) and conv2d_winograd.cu (the Winograd-domain
// GEMMs). Torch-free.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

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

// mma.sync.m16n8k16 with fp32 accumulators, per operand type; pack(lo, hi) rounds two floats
// (exact here: they were converted from T) into one register, lo in the low half.
template <class T>
struct MmaOp;
template <>
struct MmaOp<__half> {
  __device__ static uint32_t pack(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();  // mma.sync.m16n8k16 needs sm_80+ (the project builds for 8.0 and 9.0)
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
  }
};
template <>
struct MmaOp<__nv_bfloat16> {
  __device__ static uint32_t pack(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
  }
};

// The tensor-core compute policy (layout and warp tiling: igemm::MmaLayout). The shared tiles
// hold floats converted from T; the fragments are packed back to T (exactly) per k-tile.
// Every lane of each warp runs this together (the tile loop's control flow is block-uniform).
template <class T>
struct MmaCompute {
  using L = igemm::MmaLayout;
  template <class State>
  __device__ static void compute(const igemm::SharedTiles<float>& sm, int buf, int t, State& st) {
    const int lane = t % 32, m0 = L::warp_m0(t), n0 = L::warp_n0(t);
    uint32_t a[2][4], b[2][2];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        int r0, k0, r1, k1;
        L::a_frag(lane, 2 * q, r0, k0);
        L::a_frag(lane, 2 * q + 1, r1, k1);
        a[mt][q] = MmaOp<T>::pack(sm.a[buf][k0][m0 + 16 * mt + r0],
                                  sm.a[buf][k1][m0 + 16 * mt + r1]);
      }
    }
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        int k0, c0, k1, c1;
        L::b_frag(lane, 2 * q, k0, c0);
        L::b_frag(lane, 2 * q + 1, k1, c1);
        b[nt][q] = MmaOp<T>::pack(sm.b[buf][k0][n0 + 8 * nt + c0],
                                  sm.b[buf][k1][n0 + 8 * nt + c1]);
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) MmaOp<T>::mma(st.acc[i], a[i / 2], b[i % 2]);
  }
  __device__ static int row(int t, int i, int j) { return L::row(t, i, j); }
  __device__ static int col(int t, int i, int j) { return L::col(t, i, j); }
};

template <class T>
constexpr bool kTensorCoreType =
    std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value;

// CNNKERN_IGEMM_SIMT=1 (read once) runs float16/bfloat16 on the SIMT path instead of the
// tensor cores: a switch for diagnosing the mma path on a new GPU.
inline bool tensor_cores_disabled() {
  static const bool off = [] {
    const char* v = std::getenv("CNNKERN_IGEMM_SIMT");
    return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
  }();
  return off;
}

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
template <class T, class Map, class Compute>
__global__ void __launch_bounds__(Tile::kThreads)
    igemm_kernel(const typename Map::Params p, const Plan pl, const T* __restrict__ a_src,
                 const T* __restrict__ b_src, const T* __restrict__ bias, bool relu,
                 T* __restrict__ out, acc_t<T>* __restrict__ ws) {
  using A = acc_t<T>;
  __shared__ igemm::SharedTiles<A> sm;
  igemm::ThreadState<A, typename Map::ARow> st[1];
  const int64_t z = blockIdx.z;
  const int64_t g = z / pl.splits, split = z % pl.splits;
  const Map map(p, g);
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * Tile::BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * Tile::BN;
  const GpuExec ex;
  igemm::block_mainloop<GpuCvt<T>, Compute>(ex, map, a_src, b_src, m0, n0,
                                            pl.k_begin(split), pl.k_end(split), sm, st);
  const int t = static_cast<int>(threadIdx.x);
  if (ws != nullptr) {
    WorkspaceEpilogue<A> e{ws + split * pl.groups * pl.M * pl.N};
    igemm::block_epilogue<Compute>(map, m0, n0, t, st[0], e);
  } else {
    OutputEpilogue<T> e{out, bias, relu};
    igemm::block_epilogue<Compute>(map, m0, n0, t, st[0], e);
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

template <class Map, class T, class Compute>
cudaError_t launch_with(const typename Map::Params& p, const Plan& pl, const T* a_src,
                        const T* b_src, const T* bias, bool relu, T* out, acc_t<T>* ws,
                        cudaStream_t stream) {
  if (igemm::plan_why_not(pl)[0] != '\0') return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(pl.tiles_m), static_cast<unsigned>(pl.tiles_n),
                  static_cast<unsigned>(pl.grid_z()));
  igemm_kernel<T, Map, Compute><<<grid, Tile::kThreads, 0, stream>>>(p, pl, a_src, b_src, bias,
                                                                      relu, out, ws);
  return cudaGetLastError();
}

// float16/bfloat16 on the tensor cores (unless disabled), everything else on the SIMT path.
template <class Map, class T>
cudaError_t launch_pass(const typename Map::Params& p, const Plan& pl, const T* a_src,
                        const T* b_src, const T* bias, bool relu, T* out, acc_t<T>* ws,
                        cudaStream_t stream) {
  if constexpr (kTensorCoreType<T>) {
    if (!tensor_cores_disabled())
      return launch_with<Map, T, MmaCompute<T>>(p, pl, a_src, b_src, bias, relu, out, ws, stream);
  }
  return launch_with<Map, T, igemm::SimtCompute>(p, pl, a_src, b_src, bias, relu, out, ws, stream);
}

}  // namespace igemm_cuda
}  // namespace cnnkern
