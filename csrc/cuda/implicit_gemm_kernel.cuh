#pragma once
// The GPU side of the implicit-GEMM tile loop in core/implicit_gemm.h: a block of 256
// threads running block_mainloop for one (m tile, n tile, batch/split), __ldg loads converted
// to the accumulator type, and the epilogues; plus the fixed-order split-K reduction. Used by
// conv2d_implicit_gemm.cu (the convolution passes) and conv2d_winograd.cu (the Winograd-domain
// GEMMs). Torch-free.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/implicit_gemm.h"
#include "cuda/kernel_utils.cuh"
#include "cuda/tensor_core_switch.h"

namespace cnnkern {
namespace igemm_cuda {

using namespace cuda_detail;
using igemm::Plan;
using igemm::Tile;

// The calling thread alone; see block_mainloop in core/implicit_gemm.h.
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

// The MMA step of the tensor-core compute policy (MmaCompute below), one per operand type:
//   Shape              the instruction's k and operand fragment layouts (core/implicit_gemm.h)
//   to_reg(v)          Shape::kElemsPerReg floats -> one 32-bit operand register
//   mma(c, a, b)       c += a * b on one 16 x 8 tile, fp32 accumulators; 4 A and 2 B registers
// mma.sync.*.m16n8k16 for float16/bfloat16 (to_reg packs two values, exact here: they were
// converted from T), mma.sync.*.m16n8k8.*.tf32 for float32 (to_reg rounds with cvt.rna).
// All need sm_80+ (the project builds for 8.0 and 9.0); older targets trap.

// One mma.sync on a 16 x 8 tile with fp32 accumulators (c += a * b; 4 A and 2 B registers);
// `shape_types` names the instruction's shape and operand types. CNNKERN_CVT_RNA_TF32(r, x):
// r = x rounded to tf32 (cvt.rna.tf32.f32). sm_80+ only: older targets trap. Inline PTX is
// the one construct the CUDA emulator (csrc/testing/cuda_emu, CNNKERN_CUDA_EMU) cannot take
// from a header, so there the two instructions go to its emulations, written from the PTX ISA.
#if defined(CNNKERN_CUDA_EMU)
#define CNNKERN_MMA_SYNC(shape_types, c, a, b) \
  ::cuda_emu::mma_sync(shape_types, c, a, b, ::cuda_emu::SourceLoc{__FILE__, __LINE__})
#define CNNKERN_CVT_RNA_TF32(r, x) ((r) = ::cuda_emu::cvt_rna_tf32(x))
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define CNNKERN_MMA_SYNC(shape_types, c, a, b) __trap()
#define CNNKERN_CVT_RNA_TF32(r, x) ((r) = 0u, __trap())
#else
#define CNNKERN_MMA_SYNC(shape_types, c, a, b)                                            \
  asm volatile("mma.sync.aligned." shape_types                                            \
               " {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"        \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                           \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
#define CNNKERN_CVT_RNA_TF32(r, x) asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x))
#endif

template <class T>
struct MmaOp;
template <>
struct MmaOp<__half> {
  using Shape = igemm::MmaShapeK16;
  __device__ static uint32_t to_reg(const float (&v)[2]) {
    const __half2 h = __floats2half2_rn(v[0], v[1]);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    CNNKERN_MMA_SYNC("m16n8k16.row.col.f32.f16.f16.f32", c, a, b);
  }
};
template <>
struct MmaOp<__nv_bfloat16> {
  using Shape = igemm::MmaShapeK16;
  __device__ static uint32_t to_reg(const float (&v)[2]) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(v[0], v[1]);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    CNNKERN_MMA_SYNC("m16n8k16.row.col.f32.bf16.bf16.f32", c, a, b);
  }
};
// float32 with TF32 allowed: each operand rounded to tf32 (round to nearest, ties away from
// zero, 10 mantissa bits) as it enters its fragment; products and sums in fp32.
struct Tf32MmaOp {
  using Shape = igemm::MmaShapeK8Tf32;
  __device__ static uint32_t to_reg(const float (&v)[1]) {
    uint32_t r;
    CNNKERN_CVT_RNA_TF32(r, v[0]);
    return r;
  }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    CNNKERN_MMA_SYNC("m16n8k8.row.col.f32.tf32.tf32.f32", c, a, b);
  }
};
#undef CNNKERN_MMA_SYNC
#undef CNNKERN_CVT_RNA_TF32

// The tensor-core compute policy (warp tiling and accumulator layout: igemm::MmaLayout; the
// MMA step: Op). The shared tiles hold floats (converted from T on load); each k-tile is
// BK / Op::Shape::kK mma steps, every step building its fragments from shared memory through
// Op::to_reg. Every lane of each warp runs this together (the tile loop's control flow is
// block-uniform), as mma.sync requires.
template <class Op>
struct MmaCompute {
  using L = igemm::MmaLayout;
  using S = typename Op::Shape;
  static constexpr int kPer = S::kElemsPerReg;
  static constexpr int kARegs = S::kAElems / kPer, kBRegs = S::kBElems / kPer;
  static_assert(kARegs == 4 && kBRegs == 2, "m16n8 mma: 4 A and 2 B registers per thread");
  static_assert(Tile::BK % S::kK == 0, "whole mma steps per k-tile");
  template <class State>
  __device__ static void compute(const igemm::SharedTiles<float>& sm, int buf, int t, State& st) {
    const int lane = t % 32, m0 = L::warp_m0(t), n0 = L::warp_n0(t);
#pragma unroll
    for (int ks = 0; ks < Tile::BK; ks += S::kK) {
      uint32_t a[2][kARegs], b[2][kBRegs];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
        for (int q = 0; q < kARegs; ++q) {
          float v[kPer];
#pragma unroll
          for (int h = 0; h < kPer; ++h) {
            int r, k;
            S::a_frag(lane, q * kPer + h, r, k);
            v[h] = sm.a[buf][ks + k][m0 + 16 * mt + r];
          }
          a[mt][q] = Op::to_reg(v);
        }
      }
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
        for (int q = 0; q < kBRegs; ++q) {
          float v[kPer];
#pragma unroll
          for (int h = 0; h < kPer; ++h) {
            int k, c;
            S::b_frag(lane, q * kPer + h, k, c);
            v[h] = sm.b[buf][ks + k][n0 + 8 * nt + c];
          }
          b[nt][q] = Op::to_reg(v);
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) Op::mma(st.acc[i], a[i / 2], b[i % 2]);
    }
  }
  __device__ static int row(int t, int i, int j) { return L::row(t, i, j); }
  __device__ static int col(int t, int i, int j) { return L::col(t, i, j); }
};

template <class T>
constexpr bool kTensorCoreType =
    std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value;

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
// Register budget: three blocks per SM (80 registers) for fp32 accumulators, two (128) for fp64.
// With no minimum, ptxas held 14 fp32-accumulator variants at 64 registers (four blocks per
// SM) by spilling 16-40 bytes, inside the tile loop for grad-weight; they need 75-80 (the
// other fp32 variants already took 76-80, three blocks). fp64 took 94-126 unbounded: two
// blocks either way, but with a minimum of 1 it grew to 132-144 (one block).
template <class T, class Map, class Compute>
__global__ void __launch_bounds__(Tile::kThreads, sizeof(acc_t<T>) == 8 ? 2 : 3)
    igemm_kernel(const typename Map::Params p, const Plan pl, const T* __restrict__ a_src,
                 const T* __restrict__ b_src, const T* __restrict__ bias, bool relu,
                 T* __restrict__ out, acc_t<T>* __restrict__ ws) {
  using A = acc_t<T>;
  __shared__ igemm::SharedTiles<A> sm;
  igemm::ThreadState<A, typename Map::ARow> st[1];
  // grid z <= 65535 (plan_why_not), so the group and split decode in 32 bits: a 64-bit
  // division is a subroutine, and its two 64-bit results stay live across the tile loop.
  const int z = static_cast<int>(blockIdx.z), splits = static_cast<int>(pl.splits);
  const int g = z / splits, split = z % splits;
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

// float16/bfloat16 on the tensor cores, float32 too when `tf32` (TF32 allowed for this call;
// ignored for other dtypes), everything else on the SIMT path; CNNKERN_IGEMM_SIMT=1 moves
// all of them to the SIMT path.
template <class Map, class T>
cudaError_t launch_pass(const typename Map::Params& p, const Plan& pl, const T* a_src,
                        const T* b_src, const T* bias, bool relu, T* out, acc_t<T>* ws,
                        bool tf32, cudaStream_t stream) {
  if constexpr (kTensorCoreType<T>) {
    if (!tensor_cores_disabled())
      return launch_with<Map, T, MmaCompute<MmaOp<T>>>(p, pl, a_src, b_src, bias, relu, out, ws,
                                                       stream);
  }
  if constexpr (std::is_same<T, float>::value) {
    if (tf32 && !tensor_cores_disabled())
      return launch_with<Map, T, MmaCompute<Tf32MmaOp>>(p, pl, a_src, b_src, bias, relu, out, ws,
                                                        stream);
  }
  return launch_with<Map, T, igemm::SimtCompute>(p, pl, a_src, b_src, bias, relu, out, ws, stream);
}

}  // namespace igemm_cuda
}  // namespace cnnkern
