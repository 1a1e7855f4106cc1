// The float32 grad-weight on the fp32 GEMM core (cuda/gemm_fp32_core.cuh: 128 x 128 block
// tile, 8 x 8 per thread, cp.async double buffering; for K/groups <= 64 the forward's narrow
// 64 x 128 tile, 4 x 8 per thread, so that no row of the block is idle: make_wgrad_plan). Per group and split-K slice:
// dW[Kg x CRS] (+)= dY[Kg x pixels] * im2col(X)[pixels x CRS] over the slice's pixels; dY is
// the core's A operand, the input windows its B operand, both gathered k-fastest with 4-byte
// zero-filling cp.async (core/igemm_fp32_bwd.h: a thread's one pixel per k-tile, walked
// without division, and its 4 filter taps, decoded once). The epilogue is the core's
// store_tile: dW's rows are contiguous along CRS. With split-K the slices write fp32 partial
// sums and the general kernel's reduce sums them in slice order. Torch-free.

#include "cuda/conv2d_igemm_fp32_wgrad.h"

#include <cstdint>

#include "cuda/gemm_fp32_core.cuh"
#include "cuda/opaque_pointer.cuh"
#include "cuda/implicit_gemm_kernel.cuh"  // igemm_cuda::splitk_reduce_kernel

namespace cnnkern {
namespace igemm32 {
namespace {

using gemm32::kGemmThreads;

// Everything the kernel reads besides the tensors (kernel parameters: constant memory).
struct WgradArgs {
  gemm32::GemmDesc out;  // one group's Kg x CRS result: M, N and its row stride c_m = CRS
  Geom geom;
  PixelWalk walk;           // BK pixels: one k-tile
  int32_t npq = 0, pq = 0;  // pixels, and pixels per plane (dY's channel stride)
  int32_t groups = 1, k_tiles = 0, k_tiles_per_split = 0;
  int64_t cg_hw = 0;         // C/groups*H*W: X's group stride
  int64_t slice = 0;         // K*C/groups*R*S: one split's partial sums
  bool vec_out = false;      // CRS % 4 == 0 and the result 16-byte aligned
};

// The block's 128 filter taps (its columns n0 + i), decoded once into shared memory: kept in
// registers, a thread's 4 taps (12 values) beside the 64 accumulators spill. The narrow tile's
// 32 accumulators leave room for them: it copies its 4 into registers once (WgradStager).
using TapTable = WTap[Tile::BN];

// Thread t's copies of both operands: pixel k0 + t % 8 of each k-tile (gemm32::scalar_slot
// with k fastest), dY rows (output channels) t / 8 + 32 e for e < BM / 32 and X columns
// (filter taps) t / 8 + 32 e for e < 4.
template <int BM>
struct WgradStager {
  static constexpr int kRowCopies = BM / 32;  // 4, or 2 for the narrow tile's 64 rows
  static constexpr bool kTapsInRegs = BM == kNarrowBM;
  const float* dy;  // the thread's first output channel's plane, image 0
  const float* x;   // the group's channel 0, image 0
  Pixel px;
  int dst;          // copy 0's float offset in a stage; copy e is 32 e further
  int col;          // copy 0's column in the tile: t / 8
  int rows_ok = 0;  // bit e: copy e's output channel is inside the group
  WTap mine[Tile::kCopies];  // kTapsInRegs: this thread's 4 taps (else unused, not kept)

  // taps: the block's table, complete (after the barrier).
  __device__ WgradStager(const WgradArgs& a, const Conv2dProblem& p, const float* dy_all,
                         const float* x_all, int64_t g, int64_t m0, int64_t j0, int t,
                         const TapTable& taps) {
    const gemm32::CopySlot s = gemm32::scalar_slot(true, t, 0);
    dy = opaque_pointer(dy_all + (g * a.out.M + m0 + s.mn) * a.pq);
    x = opaque_pointer(x_all + g * a.cg_hw);
    px = pixel_of(p, j0 + s.k);
    dst = s.smem();
    col = s.mn;
#pragma unroll
    for (int e = 0; e < kRowCopies; ++e)
      if (m0 + s.mn + 32 * e < a.out.M) rows_ok |= 1 << e;
    if constexpr (kTapsInRegs) {
#pragma unroll
      for (int e = 0; e < Tile::kCopies; ++e) mine[e] = taps[col + 32 * e];
    }
  }

  __device__ void load(float* st_a, float* st_b, const WgradArgs& a, const TapTable& taps) {
    const bool in = px.j < a.npq;
    const int64_t row_step = int64_t(32) * a.pq;  // 32 output channels
#pragma unroll
    for (int e = 0; e < Tile::kCopies; ++e) {
      if (e < kRowCopies) {
        const bool ok_a = in && ((rows_ok >> e) & 1) != 0;
        cuda_async::cp_async_ca<4>(st_a + dst + 32 * e, dy + px.dy_off + e * row_step,
                                   ok_a ? 4 : 0);
      }
      int32_t off;
      const bool ok_b =
          wgrad_x_at(a.geom, a.npq, px, kTapsInRegs ? mine[e] : taps[col + 32 * e], off);
      // A zero-fill copy (0 source bytes) reads nothing at its address (PTX ISA, cp.async:
      // src-size), so `off` and a pixel past the end go unchecked.
      cuda_async::cp_async_ca<4>(st_b + dst + 32 * e, x + off, ok_b ? 4 : 0);
    }
    px = advance(px, a.walk);
  }
};

// grid: x = tiles along CRS, y = tiles of BM along K/groups, z = split * groups + group.
template <int BM>
__global__ void __launch_bounds__(kGemmThreads, 2)
    igemm_fp32_wgrad_kernel(const WgradArgs a, const Conv2dProblem p,
                            const float* __restrict__ dy, const float* __restrict__ x,
                            float* __restrict__ out) {
  constexpr int TM = BM / 16;  // 16 thread rows
  static_assert(BM == Tile::BM || BM == kNarrowBM, "the two tiles of make_wgrad_plan");
  __shared__ gemm32::StageBuf sa, sb;
  __shared__ TapTable taps;
  const int t = static_cast<int>(threadIdx.x);
  // Block coordinates, read again for the epilogue rather than kept through the main loop.
  const auto m0 = [] { return static_cast<int64_t>(blockIdx.y) * BM; };
  const auto n0 = [] { return static_cast<int64_t>(blockIdx.x) * Tile::BN; };
  const auto g = [&] { return static_cast<int64_t>(blockIdx.z % a.groups); };
  const auto split = [&] { return static_cast<int32_t>(blockIdx.z / a.groups); };
  const int32_t kt0 = split() * a.k_tiles_per_split;
  const int32_t left = a.k_tiles - kt0;
  const int32_t ktiles = left < a.k_tiles_per_split ? left : a.k_tiles_per_split;
  if (t < Tile::BN) taps[t] = wtap_of(p, n0() + t);
  __syncthreads();  // the first k-tile's copies read the table
  WgradStager<BM> ld(a, p, dy, x, g(), m0(), int64_t(kt0) * Tile::BK, t, taps);
  float acc[TM][Tile::TN];
  gemm32::mainloop<TM>(ktiles, sa, sb, t, acc, [&](float* st_a, float* st_b, int) {
    ld.load(st_a, st_b, a, taps);
  });
  float* c = out + split() * a.slice + g() * a.out.M * a.out.N;
  gemm32::store_tile<TM>(a.out, c, m0(), n0(), t, a.vec_out, acc);
}

}  // namespace
}  // namespace igemm32

cudaError_t launch_igemm_fp32_wgrad(const Conv2dProblem& p, const igemm32::WgradPlan& plan,
                                    const float* grad_output, const float* input,
                                    float* grad_weight, float* workspace, cudaStream_t stream) {
  using namespace igemm32;
  if (wgrad_why_not(p)[0] != '\0') return cudaErrorInvalidValue;
  if (plan.splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  if (p.weight_numel() == 0) return cudaSuccess;
  // A plan of another problem: refused, never a partial or overlapping grid.
  const int64_t per = plan.k_tiles_per_split;
  if ((plan.bm != Tile::BM && plan.bm != kNarrowBM) ||
      plan.tiles_m != (p.K_per_group() + plan.bm - 1) / plan.bm ||
      plan.tiles_n != (p.gemm_k() + Tile::BN - 1) / Tile::BN ||
      plan.k_tiles != (p.gemm_m() + Tile::BK - 1) / Tile::BK || plan.splits < 1 ||
      plan.splits > kMaxSplits ||
      (plan.k_tiles > 0 &&  // no pixels (N = 0): one slice of none, the weight zeroed
       (per < 1 || (plan.splits - 1) * per >= plan.k_tiles || plan.splits * per < plan.k_tiles)))
    return cudaErrorInvalidValue;
  WgradArgs a;
  a.out.M = p.K_per_group();
  a.out.N = p.gemm_k();
  a.out.c_m = a.out.N;
  a.out.c_n = 1;
  a.geom = geom_of(p);
  a.walk = pixel_walk(p, Tile::BK);
  a.npq = static_cast<int32_t>(p.gemm_m());
  a.pq = static_cast<int32_t>(p.P * p.Q);
  a.groups = static_cast<int32_t>(p.groups);
  a.k_tiles = plan.k_tiles;
  a.k_tiles_per_split = plan.k_tiles_per_split;
  a.cg_hw = p.C_per_group() * p.H * p.W;
  a.slice = p.weight_numel();
  float* out = plan.splits > 1 ? workspace : grad_weight;
  a.vec_out = a.out.N % 4 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  const dim3 grid(static_cast<unsigned>(plan.tiles_n), static_cast<unsigned>(plan.tiles_m),
                  static_cast<unsigned>(plan.splits * p.groups));
  if (plan.bm == kNarrowBM)
    igemm_fp32_wgrad_kernel<kNarrowBM>
        <<<grid, gemm32::kGemmThreads, 0, stream>>>(a, p, grad_output, input, out);
  else
    igemm_fp32_wgrad_kernel<Tile::BM>
        <<<grid, gemm32::kGemmThreads, 0, stream>>>(a, p, grad_output, input, out);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || plan.splits == 1) return err;
  const int64_t numel = p.weight_numel();
  igemm_cuda::splitk_reduce_kernel<float>
      <<<cuda_detail::blocks_for(numel), cuda_detail::kThreads, 0, stream>>>(workspace,
                                                                            plan.splits, numel,
                                                                            grad_weight);
  return cudaGetLastError();
}

}  // namespace cnnkern
