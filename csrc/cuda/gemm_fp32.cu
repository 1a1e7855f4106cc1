// Chooses the fp32 GEMM core's variant (16-byte or 4-byte staging, per operand) and launches it.

#include "cuda/gemm_fp32.h"

#include "cuda/gemm_fp32_core.cuh"

namespace cnnkern {
namespace {

using gemm32::GemmDesc;
using gemm32::kGemmThreads;

template <bool VecA, bool VecB>
void launch(const GemmDesc& d, const dim3& grid, const float* a, const float* b, float* c,
            bool vec_c, cudaStream_t stream) {
  gemm32::gemm_fp32_kernel<VecA, VecB><<<grid, kGemmThreads, 0, stream>>>(d, a, b, c, vec_c);
}

uint64_t addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

}  // namespace

const char* gemm_fp32_why_not(const GemmDesc& d) { return gemm32::why_not(d); }

cudaError_t launch_gemm_fp32(const GemmDesc& d, const float* a, const float* b, float* c,
                             cudaStream_t stream) {
  if (gemm32::why_not(d)[0] != '\0') return cudaErrorInvalidConfiguration;
  if (d.M == 0 || d.N == 0 || d.batches == 0) return cudaSuccess;
  const gemm32::Grid g = gemm32::grid_of(d);
  const dim3 grid(static_cast<unsigned>(g.x), static_cast<unsigned>(g.y),
                  static_cast<unsigned>(g.z));
  const bool va = gemm32::vec_ok(gemm32::operand_a(d), addr(a));
  const bool vb = gemm32::vec_ok(gemm32::operand_b(d), addr(b));
  // C as an operand too: n contiguous, rows and batches 16-byte aligned.
  const bool vc = gemm32::vec_ok(gemm32::Operand{d.c_z, d.c_n, d.c_m, d.N}, addr(c));
  if (va && vb) launch<true, true>(d, grid, a, b, c, vc, stream);
  else if (va) launch<true, false>(d, grid, a, b, c, vc, stream);
  else if (vb) launch<false, true>(d, grid, a, b, c, vc, stream);
  else launch<false, false>(d, grid, a, b, c, vc, stream);
  return cudaGetLastError();
}

}  // namespace cnnkern
