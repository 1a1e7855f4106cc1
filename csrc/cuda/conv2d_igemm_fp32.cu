// The fp32 implicit-GEMM forward on the fp32 GEMM core (cuda/gemm_fp32_core.cuh: 128 x 128
// block tile, 8 x 8 per thread, float4 shared reads, cp.async double buffering). Per group:
// output[Kg x NPQ] = weight[Kg x CRS] * patches[CRS x NPQ]; the weights are the core's A
// operand (its 4-byte copies along k), the patches its B operand, gathered here with 4-byte
// zero-filling cp.async through the tap walk of core/igemm_fp32_plan.h (no division in the
// main loop). The epilogue adds the bias, applies the ReLU and stores float4 runs of one
// output plane. Torch-free.
//
// The schedule (core/igemm_fp32_schedule.h) picks the block's output channels, BM = 128 or
// 64 (4 x 8 per thread: K/groups <= 64 would idle half the big tile), and may split the
// k-tiles into slices (grid z = group x slice): each slice then stores raw partial sums to
// its output-shaped slice of the workspace, and igemm_fp32_reduce_kernel sums the slices in
// order, adds the bias and applies the ReLU.

#include "cuda/conv2d_igemm_fp32.h"

#include <cstdint>

#include "core/igemm_fp32_plan.h"
#include "core/igemm_fp32_schedule.h"
#include "cuda/gemm_fp32_core.cuh"
#include "cuda/opaque_pointer.cuh"
#include "cuda/kernel_utils.cuh"

namespace cnnkern {
namespace igemm32 {
namespace {

using gemm32::kGemmThreads;

// Everything the kernel reads besides the tensors (kernel parameters: constant memory).
struct FpropArgs {
  Conv2dProblem p;
  Geom geom;
  TapStep tile_step;  // BK taps: one k-tile
  TapStep copy_step;  // kCopyKStride taps: from one of a thread's copies to the next
  int32_t ktiles = 0;
  int32_t splits = 1;             // slices of the k-tiles (grid z = group * splits + slice)
  int32_t ktiles_per_split = 0;   // the last slice may have fewer
  bool vec_out = false;  // P*Q % 4 == 0 and the output (and workspace) 16-byte aligned
};

// Stages thread t's patch copies of each k-tile, in k-tile order. State: the window of its
// column (fixed for the block) and the tap of its first copy in the next k-tile.
struct PatchStager {
  const float* base;  // the column's image and group
  igemm::ImageRow pos;  // h0, w0 of the column's window (its base is in `base`)
  Tap tap;
  int dst;

  // k0: the reduction index the block starts at (its slice's first k-tile).
  __device__ PatchStager(const FpropArgs& a, const float* x, int64_t g, int64_t n0, int k0,
                         int t) {
    const igemm::ImageRow row = patch_row(a.p, g, n0 + patch_slot(t, 0).mn);
    base = opaque_pointer(x + row.base);
    pos = row;
    tap = tap_of(a.p, k0 + patch_slot(t, 0).k);
    dst = patch_slot(t, 0).smem();
  }

  __device__ void load(float* stage, const FpropArgs& a) {
    Tap tp = tap;
#pragma unroll
    for (int e = 0; e < Tile::kCopies; ++e) {
      int32_t off;
      const bool ok = patch_at(a.geom, pos, tp, off);
      // A zero-fill copy (0 source bytes) reads nothing at its address (PTX ISA, cp.async:
      // src-size), so `off` goes unchecked.
      cuda_async::cp_async_ca<4>(stage + dst + e * kCopyKStride * Tile::kLd, base + off,
                                 ok ? 4 : 0);
      tp = advance(tp, a.copy_step);
    }
    tap = advance(tap, a.tile_step);
  }
};

// PatchStager for a pointwise problem (igemm32::pointwise): the column's pixel is fixed, so a
// copy is its channel's offset (2 channels = 2*H*W further per copy) and one channel check; a
// column past N*P*Q copies nothing (its channel is set past the group).
struct PointwiseStager {
  const float* base;  // the column's image and group
  int32_t off;        // the first copy's element in the next k-tile, from base
  int32_t c;          // its channel
  int dst;

  __device__ PointwiseStager(const FpropArgs& a, const float* x, int64_t g, int64_t n0, int k0,
                             int t) {
    const int64_t n = n0 + patch_slot(t, 0).mn;
    c = k0 + patch_slot(t, 0).k;
    igemm::ImageRow row;
    if (n < a.p.gemm_m()) {
      row = igemm::image_row(a.p, g, n);
    } else {
      c = a.geom.Cg;  // never below Cg: every copy zero-fills
    }
    base = x + row.base;
    off = pointwise_offset(a.geom, row, c);
    dst = patch_slot(t, 0).smem();
  }

  __device__ void load(float* stage, const FpropArgs& a) {
    const int32_t plane = a.geom.H * a.geom.W;
#pragma unroll
    for (int e = 0; e < Tile::kCopies; ++e) {
      const bool ok = c + e * kCopyKStride < a.geom.Cg;
      // Zero-fill copies (a channel past the group, past-the-end columns) read nothing.
      cuda_async::cp_async_ca<4>(stage + dst + e * kCopyKStride * Tile::kLd,
                                 base + off + e * kCopyKStride * plane, ok ? 4 : 0);
    }
    c += Tile::BK;
    off += Tile::BK * plane;
  }
};

// Thread t's TM x 8 results: rows are output channels m0 + tile_row (of group g), columns
// positions n0 + tile_col of N*P*Q; bias, ReLU, then a float4 per run of 4 columns when the
// planes allow it (4 consecutive positions from a multiple of 4 stay in one plane when
// P*Q % 4 == 0), else one element at a time.
template <int TM>
__device__ void store_output(const FpropArgs& a, float* y, const float* bias, bool relu,
                             int64_t g, int64_t m0, int64_t n0, int t,
                             const float (&acc)[TM][Tile::TN]) {
  const Conv2dProblem& p = a.p;
  const int64_t PQ = p.P * p.Q, NPQ = p.gemm_m(), Kg = p.K_per_group();
#pragma unroll
  for (int jb = 0; jb < Tile::TN; jb += 4) {
    const int64_t n = n0 + gemm32::tile_col(t, jb);
    if (n >= NPQ) continue;
    const int64_t img = n / PQ;
    float* out = y + (img * p.K + g * Kg) * PQ + (n - img * PQ);  // channel 0 of the group
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t m = m0 + gemm32::tile_row(t, i);
      if (m >= Kg) continue;
      const float b = bias != nullptr ? __ldg(bias + g * Kg + m) : 0.f;
      float v[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        v[j] = acc[i][jb + j] + b;
        if (relu) v[j] = v[j] < 0.f ? 0.f : v[j];  // NaN stays NaN, as in torch.relu
      }
      if (a.vec_out) {
        *reinterpret_cast<float4*>(out + m * PQ) = make_float4(v[0], v[1], v[2], v[3]);
        continue;
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t nj = n + j;
        if (nj >= NPQ) break;
        const int64_t ij = nj / PQ;
        y[(ij * p.K + g * Kg + m) * PQ + (nj - ij * PQ)] = v[j];
      }
    }
  }
}

// grid: x = tiles along N*P*Q, y = tiles of BM along K/groups, z = group * splits + slice.
// y: the output, or with a split the workspace (slice s at y + s * N*K*P*Q, no bias or ReLU).
// Stager: PatchStager (any filter) or PointwiseStager (igemm32::pointwise problems).
template <int BM, class Stager>
__global__ void __launch_bounds__(kGemmThreads, 2)
    igemm_fp32_fprop_kernel(const FpropArgs a, const float* __restrict__ x,
                            const float* __restrict__ w, const float* __restrict__ bias,
                            bool relu, float* __restrict__ y) {
  constexpr int TM = BM / 16;  // 16 thread rows
  static_assert(BM == Tile::BM || BM == kNarrowBM, "the two tiles of the schedule");
  __shared__ gemm32::StageBuf sa, sb;
  const int t = static_cast<int>(threadIdx.x);
  // Block coordinates, read again for the epilogue rather than kept through the main loop.
  const auto m0 = [] { return static_cast<int64_t>(blockIdx.y) * BM; };
  const auto n0 = [] { return static_cast<int64_t>(blockIdx.x) * Tile::BN; };
  const auto g = [&] { return static_cast<int64_t>(blockIdx.z) / a.splits; };
  const auto slice = [&] { return static_cast<int>(blockIdx.z % a.splits); };
  const int kt0 = slice() * a.ktiles_per_split;
  const int kt_end = kt0 + a.ktiles_per_split < a.ktiles ? kt0 + a.ktiles_per_split : a.ktiles;
  const int64_t Kg = a.p.K_per_group(), Kr = a.p.gemm_k();
  const int k0 = kt0 * Tile::BK;
  gemm32::KRowStager<BM / 32> lw(w + g() * Kg * Kr + k0, Kr, Kg, m0(), t);
  Stager lx(a, x, g(), n0(), k0, t);
  float acc[TM][Tile::TN];
  const int K = static_cast<int>(Kr);  // < 2^30 (index32_why_not)
  gemm32::mainloop<TM>(kt_end - kt0, sa, sb, t, acc, [&](float* st_a, float* st_b, int kt) {
    lw.load(st_a, Kr, k0 + kt * Tile::BK, K);
    lx.load(st_b, a);
  });
  if (a.splits > 1) {
    store_output<TM>(a, y + slice() * a.p.output_numel(), nullptr, false, g(), m0(), n0(), t,
                     acc);
    return;
  }
  store_output<TM>(a, y, bias, relu, g(), m0(), n0(), t, acc);
}

template <int BM, class Stager>
void launch_fprop(const dim3& grid, const FpropArgs& a, const float* x, const float* w,
                  const float* bias, bool relu, float* y, cudaStream_t stream) {
  igemm_fp32_fprop_kernel<BM, Stager><<<grid, kGemmThreads, 0, stream>>>(a, x, w, bias, relu, y);
}

// y[e] = epilogue(ws[e] + ws[numel + e] + ... in slice order): the same sum on every run.
__global__ void __launch_bounds__(kGemmThreads)
    igemm_fp32_reduce_kernel(const float* __restrict__ ws, int splits, int64_t numel,
                             int64_t PQ, int64_t K, const float* __restrict__ bias, bool relu,
                             float* __restrict__ y) {
  for (int64_t e = cuda_detail::global_thread_id(); e < numel;
       e += cuda_detail::global_thread_count()) {
    float v = ws[e];
    for (int s = 1; s < splits; ++s) v += ws[s * numel + e];
    if (bias != nullptr) v += __ldg(bias + (e / PQ) % K);
    if (relu) v = v < 0.f ? 0.f : v;  // NaN stays NaN, as in torch.relu
    y[e] = v;
  }
}

}  // namespace
}  // namespace igemm32

const char* igemm_fp32_why_not(const Conv2dProblem& p) { return igemm32::why_not(p); }

cudaError_t launch_igemm_fp32_forward(const Conv2dProblem& p, const igemm32::Schedule& s,
                                      const float* input, const float* weight, const float* bias,
                                      bool relu, float* output, float* workspace,
                                      cudaStream_t stream) {
  using namespace igemm32;
  if (why_not(p)[0] != '\0') return cudaErrorInvalidConfiguration;
  if (p.output_numel() == 0) return cudaSuccess;
  if (s.splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  const gemm32::GemmDesc d = gemm_of(p);
  FpropArgs a;
  a.p = p;
  a.geom = geom_of(p);
  a.tile_step = tap_step(p, Tile::BK);
  a.copy_step = tap_step(p, kCopyKStride);
  a.ktiles = static_cast<int32_t>((d.K + Tile::BK - 1) / Tile::BK);
  // A schedule of another problem: refused, never a partial or overlapping grid.
  const int64_t per = s.k_tiles_per_split;
  if ((s.bm != Tile::BM && s.bm != kNarrowBM) || s.groups != p.groups ||
      s.tiles_m != (d.M + s.bm - 1) / s.bm || s.tiles_n != (d.N + Tile::BN - 1) / Tile::BN ||
      a.ktiles != s.k_tiles || s.splits < 1 || per < 1 || (s.splits - 1) * per >= a.ktiles ||
      s.splits * per < a.ktiles || s.groups * s.splits > 65535)
    return cudaErrorInvalidValue;
  a.splits = s.splits;
  a.ktiles_per_split = s.k_tiles_per_split;
  float* dst = s.splits > 1 ? workspace : output;
  a.vec_out = (p.P * p.Q) % 4 == 0 && reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  const dim3 grid(static_cast<unsigned>(s.tiles_n), static_cast<unsigned>(s.tiles_m),
                  static_cast<unsigned>(s.groups * s.splits));
  const auto launch = pointwise(p) ? (s.bm == kNarrowBM ? launch_fprop<kNarrowBM, PointwiseStager>
                                                         : launch_fprop<Tile::BM, PointwiseStager>)
                                   : (s.bm == kNarrowBM ? launch_fprop<kNarrowBM, PatchStager>
                                                         : launch_fprop<Tile::BM, PatchStager>);
  launch(grid, a, input, weight, bias, relu, dst, stream);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || s.splits == 1) return err;
  const int64_t numel = p.output_numel();
  const unsigned blocks = cuda_detail::blocks_for(numel, gemm32::kGemmThreads);
  igemm_fp32_reduce_kernel<<<blocks, gemm32::kGemmThreads, 0, stream>>>(
      workspace, s.splits, numel, p.P * p.Q, p.K, bias, relu, output);
  return cudaGetLastError();
}

}  // namespace cnnkern
