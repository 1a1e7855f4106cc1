// Winograd F(m x m, 3x3) grad-weight on the CPU, accumulated in the Winograd domain:
//   dM[xi][k][t] = (A dy_{k,t} A^T)[xi]            the adjoint of the output transform
//   dU[k][xi][c] += sum_t dM[k][xi][t] V[c][xi][t]  one GEMM per group and xi, over a block's tiles
//   grad_w      = G^T dU G                         the adjoint of the filter transform
// with V the forward's transformed input tiles. Blocks are accumulated in a fixed order and
// each phase is split over channels, filters or GEMMs, so the reduction over tiles has one
// order whatever the thread count.

#include <algorithm>

#include "cpu/gemm.h"
#include "cpu/winograd_cpu.h"
#include "cpu/winograd_plan.h"

namespace cnnkern {
namespace cpu {

template <int M, typename T>
void winograd_backward_weight(const T* grad_output, const T* input, T* grad_weight,
                              const Conv2dProblem& p) {
  const wino::Plan<M, T> plan(p, /*flipped_weight=*/false);
  if (plan.tiles == 0) {
    std::fill(grad_weight, grad_weight + p.weight_numel(), T(0));
    return;
  }
  const int64_t G = plan.G, A2 = plan.A2, Kg = plan.Kg, Cg = plan.Cg, ld = plan.ld;
  auto dU = wino::alloc<T>(G * A2 * Kg * Cg);
  T* Vw = wino::scratch<T>(wino::kScratchV, plan.v_elems());
  T* Mw = wino::scratch<T>(wino::kScratchM, plan.m_elems());
  for (int64_t b = 0; b < plan.nblocks; ++b) {
    const int64_t t0 = b * plan.NB, nt = std::min(plan.NB, plan.tiles - t0);
    plan.input_phase(input, t0, nt, Vw);
    plan.grad_output_phase(grad_output, t0, nt, Mw);
    plan.parallel(G * A2, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t g = i / A2, xi = i % A2;
        // dU[g's k][xi][c] (+)= dM[k][xi][t] V[c][xi][t]^T
        gemm<T>(Kg, Cg, nt, Mw + (g * Kg * A2 + xi) * ld, A2 * ld, 1,
                Vw + (g * Cg * A2 + xi) * ld, 1, A2 * ld, b > 0 ? T(1) : T(0),
                dU.get() + (g * Kg * A2 + xi) * Cg, A2 * Cg);
      }
    });
  }
  wino::filter_gradients<M, T>(dU.get(), p.K, Cg, grad_weight, plan.serial);
}

#define CNNKERN_INSTANTIATE(M, T)                                                          \
  template void winograd_backward_weight<M, T>(const T*, const T*, T*, const Conv2dProblem&);
CNNKERN_INSTANTIATE(2, float)
CNNKERN_INSTANTIATE(2, double)
CNNKERN_INSTANTIATE(4, float)
CNNKERN_INSTANTIATE(4, double)
#undef CNNKERN_INSTANTIATE

}  // namespace cpu
}  // namespace cnnkern
