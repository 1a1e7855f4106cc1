// The fp32 implicit-GEMM forward on the fp32 GEMM core (cuda/gemm_fp32_core.cuh: 128 x 128
// block tile, 8 x 8 per thread, float4 shared reads, cp.async double buffering). Per group:
// output[Kg x NPQ] = weight[Kg x CRS] * patches[CRS x NPQ]; the weights are the core's A
// operand (its 4-byte copies along k), the patches its B operand, gathered here with 4-byte
// zero-filling cp.async through the tap walk of core/igemm_fp32_plan.h (no division in the
// main loop). The epilogue adds the bias, applies the ReLU and stores float4 runs of one
// output plane. Torch-free.

#include "cuda/conv2d_igemm_fp32.h"

#include <cstdint>

#include "core/igemm_fp32_plan.h"
#include "cuda/gemm_fp32_core.cuh"

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
  bool vec_out = false;  // P*Q % 4 == 0 and the output 16-byte aligned
};

// Stages thread t's patch copies of each k-tile, in k-tile order. State: the window of its
// column (fixed for the block) and the tap of its first copy in the next k-tile.
struct PatchStager {
  const float* base;  // the column's image and group
  igemm::ImageRow pos;  // h0, w0 of the column's window (its base is in `base`)
  Tap tap;
  int dst;

  __device__ PatchStager(const FpropArgs& a, const float* x, int64_t g, int64_t n0, int t) {
    const igemm::ImageRow row = patch_row(a.p, g, n0 + patch_slot(t, 0).mn);
    base = x + row.base;
    pos = row;
    tap = tap_of(a.p, patch_slot(t, 0).k);
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

// Thread t's 8 x 8 results: rows are output channels m0 + tile_row (of group g), columns
// positions n0 + tile_col of N*P*Q; bias, ReLU, then a float4 per run of 4 columns when the
// planes allow it (4 consecutive positions from a multiple of 4 stay in one plane when
// P*Q % 4 == 0), else one element at a time.
__device__ void store_output(const FpropArgs& a, float* y, const float* bias, bool relu,
                             int64_t g, int64_t m0, int64_t n0, int t,
                             const float (&acc)[Tile::TM][Tile::TN]) {
  const Conv2dProblem& p = a.p;
  const int64_t PQ = p.P * p.Q, NPQ = p.gemm_m(), Kg = p.K_per_group();
#pragma unroll
  for (int jb = 0; jb < Tile::TN; jb += 4) {
    const int64_t n = n0 + gemm32::tile_col(t, jb);
    if (n >= NPQ) continue;
    const int64_t img = n / PQ;
    float* out = y + (img * p.K + g * Kg) * PQ + (n - img * PQ);  // channel 0 of the group
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
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

// grid: x = tiles along N*P*Q, y = tiles along K/groups, z = group.
__global__ void __launch_bounds__(kGemmThreads, 2)
    igemm_fp32_fprop_kernel(const FpropArgs a, const float* __restrict__ x,
                            const float* __restrict__ w, const float* __restrict__ bias,
                            bool relu, float* __restrict__ y) {
  __shared__ gemm32::StageBuf sa, sb;
  const int t = static_cast<int>(threadIdx.x);
  // Block coordinates, read again for the epilogue rather than kept through the main loop.
  const auto m0 = [] { return static_cast<int64_t>(blockIdx.y) * Tile::BM; };
  const auto n0 = [] { return static_cast<int64_t>(blockIdx.x) * Tile::BN; };
  const auto g = [] { return static_cast<int64_t>(blockIdx.z); };
  const int64_t Kg = a.p.K_per_group(), Kr = a.p.gemm_k();
  gemm32::KRowStager lw(w + g() * Kg * Kr, Kr, Kg, m0(), t);
  PatchStager lx(a, x, g(), n0(), t);
  float acc[Tile::TM][Tile::TN];
  const int K = static_cast<int>(Kr);  // < 2^30 (index32_why_not)
  gemm32::mainloop(a.ktiles, sa, sb, t, acc, [&](float* st_a, float* st_b, int kt) {
    lw.load(st_a, Kr, kt * Tile::BK, K);
    lx.load(st_b, a);
  });
  store_output(a, y, bias, relu, g(), m0(), n0(), t, acc);
}

}  // namespace
}  // namespace igemm32

const char* igemm_fp32_why_not(const Conv2dProblem& p) { return igemm32::why_not(p); }

cudaError_t launch_igemm_fp32_forward(const Conv2dProblem& p, const float* input,
                                      const float* weight, const float* bias, bool relu,
                                      float* output, cudaStream_t stream) {
  using namespace igemm32;
  if (why_not(p)[0] != '\0') return cudaErrorInvalidConfiguration;
  if (p.output_numel() == 0) return cudaSuccess;
  const gemm32::GemmDesc d = gemm_of(p);
  const gemm32::Grid g = gemm32::grid_of(d);
  FpropArgs a;
  a.p = p;
  a.geom = geom_of(p);
  a.tile_step = tap_step(p, Tile::BK);
  a.copy_step = tap_step(p, kCopyKStride);
  a.ktiles = static_cast<int32_t>((d.K + Tile::BK - 1) / Tile::BK);
  a.vec_out = (p.P * p.Q) % 4 == 0 && reinterpret_cast<uintptr_t>(output) % 16 == 0;
  const dim3 grid(static_cast<unsigned>(g.x), static_cast<unsigned>(g.y),
                  static_cast<unsigned>(g.z));
  igemm_fp32_fprop_kernel<<<grid, gemm32::kGemmThreads, 0, stream>>>(a, input, weight, bias,
                                                                     relu, output);
  return cudaGetLastError();
}

}  // namespace cnnkern
