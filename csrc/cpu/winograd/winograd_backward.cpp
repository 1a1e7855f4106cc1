// Winograd F(m x m, 3x3) grad-weight on the CPU, accumulated in the Winograd domain:
//   dM[k][xi][t] = (A dy_{k,t} A^T)[xi]              the adjoint of the output transform
//   dU[k][xi][c] = sum_t dM[k][xi][t] V[c][xi][t]    one GEMM per group and xi
//   grad_w[k][c] = G^T dU[k][.][c] G                 the adjoint of the filter transform
// with V the forward's transformed input tiles. Two schedules, as in the forward:
// - blocked: runs of whole blocks of tiles, each accumulated by one thread into its own
//   partial dU, the partials then added in a fixed order (one run: blocks in turn, each phase
//   split over channels, filters or GEMMs);
// - filter-streaming (few tiles): V and dM of all tiles once, V packed once as the GEMM's A
//   operand; threads take chunks of filters, each a GEMM per xi (dU^T of the chunk, in cache)
//   and the filter adjoint with lanes over filters. No a*a*K*C dU is ever written (38 MB
//   for a 512 x 512 layer in F(4x4)).
// Either way the reduction over tiles has one order whatever the thread count.

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu/gemm/gemm.h"
#include "cpu/winograd/winograd_cpu.h"
#include "cpu/winograd/winograd_plan.h"

namespace cnnkern {
namespace cpu {
namespace {

using wino::Plan;

// Partial sums of the blocked grad-weight: the blocks are cut into this many contiguous runs,
// each summed by one thread into its own dU, then the partials added in run order into the
// first. A function of the problem only, never of the thread count: changing it changes the
// rounding, not the result's independence from threads. Up to kPartials runs while their
// partials fit kPartialBytes; one run when a single dU is larger (each block's phases split
// over the threads: faster on an idle machine, slower on a loaded one, see
// backward_weight_runs). Fresh multi-MB partials cost page faults and a summing pass: on
// VGG16's 28x28 and 56x56 layers at batch 8, 2 threads, idle, a 2-8 MiB budget ran
// grad-weight up to 1.6x faster than 32 MiB, and forcing two runs where one dU passes the
// budget (two 38 MB partials in F(4x4) for 512 x 512) 1.3-1.5x slower than one run. The
// budget also keeps a training step's peak memory near PyTorch's.
constexpr int64_t kPartials = 8;
constexpr int64_t kPartialBytes = int64_t(4) << 20;

template <int M, typename T>
int64_t partial_runs(const Plan<M, T>& plan) {
  const int64_t du_bytes = plan.G * plan.A2 * plan.Kg * plan.Cg * int64_t(sizeof(T));
  const int64_t by_memory = std::clamp<int64_t>(kPartialBytes / std::max<int64_t>(du_bytes, 1),
                                                1, kPartials);
  return std::min(plan.nblocks, by_memory);
}

// dU (+)= the GEMMs of one block of tiles (V, dM already in Vw, Mw), on the calling thread.
template <int M, typename T>
void accumulate_block(const Plan<M, T>& plan, int64_t nt, const T* Vw, const T* Mw, bool first,
                      T* dU) {
  const int64_t A2 = plan.A2, Kg = plan.Kg, Cg = plan.Cg, ld = plan.ld;
  for (int64_t i = 0; i < plan.G * A2; ++i) {
    const int64_t g = i / A2, xi = i % A2;
    // dU[g's k][xi][c] (+)= dM[k][xi][t] V[c][xi][t]^T
    gemm<T>(Kg, Cg, nt, Mw + (g * Kg * A2 + xi) * ld, A2 * ld, 1, Vw + (g * Cg * A2 + xi) * ld,
            1, A2 * ld, first ? T(0) : T(1), dU + (g * Kg * A2 + xi) * Cg, A2 * Cg);
  }
}

// Many blocks: one parallel region over partial_runs() runs of whole blocks (each thread
// transforms and multiplies its blocks alone), then one adding the partials into the first
// (dU = partial, no separate buffer). A thread that the OS deschedules then delays the call
// once, not at every block: with a parallel region per block phase, a machine with other
// work made this 10-40x slower at 2 threads.
template <int M, typename T>
void backward_weight_runs(const Plan<M, T>& plan, int64_t runs, const T* grad_output,
                          const T* input, T* partial) {
  const int64_t n = plan.G * plan.A2 * plan.Kg * plan.Cg;
  at::parallel_for(0, runs, 1, [&](int64_t r0, int64_t r1) {
    T* Vw = thread_scratch<T>(ScratchSlot::WinogradV, plan.v_elems());
    T* Mw = thread_scratch<T>(ScratchSlot::WinogradM, plan.m_elems());
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b0 = r * plan.nblocks / runs, b1 = (r + 1) * plan.nblocks / runs;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t t0 = b * plan.NB, nt = std::min(plan.NB, plan.tiles - t0);
        plan.input_phase(input, t0, nt, Vw);  // serial: inside this parallel region
        plan.grad_output_phase(grad_output, t0, nt, Mw);
        accumulate_block(plan, nt, Vw, Mw, b == b0, partial + r * n);
      }
    }
  });
  at::parallel_for(0, n, 4096, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      T sum = partial[e];
      for (int64_t r = 1; r < runs; ++r) sum += partial[r * n + e];
      partial[e] = sum;
    }
  });
}

template <int M, typename T>
void backward_weight_blocked(const Plan<M, T>& plan, const T* grad_output, const T* input,
                             T* grad_weight) {
  const Conv2dProblem& p = plan.p;
  const int64_t G = plan.G, A2 = plan.A2, Kg = plan.Kg, Cg = plan.Cg, ld = plan.ld;
  const int64_t runs = (!plan.serial && plan.nblocks > 1) ? partial_runs(plan) : 1;
  // dU, or with several runs their partials, the first of which becomes dU.
  auto dU = wino::alloc<T>(runs * G * A2 * Kg * Cg);
  if (runs > 1) {
    backward_weight_runs(plan, runs, grad_output, input, dU.get());
  } else {
    // One run: blocks in turn, each phase split over channels, filters or GEMMs.
    T* Vw = thread_scratch<T>(ScratchSlot::WinogradV, plan.v_elems());
    T* Mw = thread_scratch<T>(ScratchSlot::WinogradM, plan.m_elems());
    for (int64_t b = 0; b < plan.nblocks; ++b) {
      const int64_t t0 = b * plan.NB, nt = std::min(plan.NB, plan.tiles - t0);
      plan.input_phase(input, t0, nt, Vw);
      plan.grad_output_phase(grad_output, t0, nt, Mw);
      plan.parallel(G * A2, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t g = i / A2, xi = i % A2;
          gemm<T>(Kg, Cg, nt, Mw + (g * Kg * A2 + xi) * ld, A2 * ld, 1,
                  Vw + (g * Cg * A2 + xi) * ld, 1, A2 * ld, b > 0 ? T(1) : T(0),
                  dU.get() + (g * Kg * A2 + xi) * Cg, A2 * Cg);
        }
      });
    }
  }
  wino::filter_gradients<M, T>(dU.get(), p.K, Cg, grad_weight, plan.serial);
}

// grad_w[k_first + kk][c] = G^T dUt[c][.][kk] G for kk < nk, L filters at a time.
template <int M, typename T>
void filter_gradients_lanes(const T* dUt, int64_t kw, int64_t Cg, int64_t k_first, int64_t nk,
                            T* gw) {
  constexpr int a = M + 2, A2 = a * a, L = wino::kLanes<T>;
  using V = wino::vec_t<T>;
  alignas(32) T buf[9 * L];
  for (int64_t c = 0; c < Cg; ++c) {
    for (int64_t kk = 0; kk < nk; kk += L) {
      V u[A2], g[9];
      for (int xi = 0; xi < A2; ++xi) std::memcpy(&u[xi], dUt + (c * A2 + xi) * kw + kk, sizeof(V));
      winograd::filter_adjoint<M, T>(u, a, 1, g, 3, 1);
      std::memcpy(buf, g, sizeof(g));
      const int nvalid = static_cast<int>(std::min<int64_t>(L, nk - kk));
      for (int l = 0; l < nvalid; ++l)
        for (int i = 0; i < 9; ++i) gw[((k_first + kk + l) * Cg + c) * 9 + i] = buf[i * L + l];
    }
  }
}

template <int M, typename T>
void backward_weight_streaming(const Plan<M, T>& plan, const T* grad_output, const T* input,
                               T* grad_weight) {
  const int64_t chunk = plan.filter_chunk(), kw = plan.chunk_width();
  const int64_t G = plan.G, A2 = plan.A2, Kg = plan.Kg, Cg = plan.Cg, ld = plan.ld;
  const int64_t nt = plan.tiles;  // one block
  T* Mw = thread_scratch<T>(ScratchSlot::WinogradM, plan.m_elems());
  plan.grad_output_phase(grad_output, 0, nt, Mw);
  // A = V[.][xi] of group g (channels x tiles), packed once for every chunk of filters, kept
  // per thread between calls.
  const int64_t pa_elems = gemm_packed_a_elems<T>(Cg, nt);
  T* store = thread_scratch<T>(ScratchSlot::WinogradV, G * A2 * pa_elems);
  std::vector<GemmPackedA<T>> packed(G * A2);
  for (int64_t i = 0; i < G * A2; ++i)
    packed[i] = gemm_packed_a_view<T>(Cg, nt, store + i * pa_elems);
  plan.pack_transformed_input(input, packed, /*tiles_as_rows=*/false);
  const int64_t chunks = (Kg + chunk - 1) / chunk;
  plan.parallel(G * chunks, [&](int64_t i0, int64_t i1) {
    T* dUt = thread_scratch<T>(ScratchSlot::WinogradU, Cg * A2 * kw);  // dUt[c][xi][kk]
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / chunks, k0 = (i % chunks) * chunk;
      const int64_t nk = std::min(chunk, Kg - k0), k_first = g * Kg + k0;
      // dUt[c][xi][kk] = sum_t V[c][xi][t] dM[k_first + kk][xi][t]
      for (int64_t xi = 0; xi < A2; ++xi)
        gemm_packed<T>(packed[g * A2 + xi], nk, Mw + (k_first * A2 + xi) * ld, 1, A2 * ld, T(0),
                       dUt + xi * kw, A2 * kw);
      filter_gradients_lanes<M, T>(dUt, kw, Cg, k_first, nk, grad_weight);
    }
  });
}

}  // namespace

template <int M, typename T>
void winograd_backward_weight(const T* grad_output, const T* input, T* grad_weight,
                              const Conv2dProblem& p) {
  const Plan<M, T> probe(p, /*flipped_weight=*/false);
  if (probe.tiles == 0 || p.K == 0) {
    std::fill(grad_weight, grad_weight + p.weight_numel(), T(0));
    return;
  }
  const char* env = std::getenv("CNNKERN_WINOGRAD_SCHEDULE");
  const bool streaming = env != nullptr && env[0] != '\0'
                             ? std::strcmp(env, "streaming") == 0
                             : probe.streamable(p.C + p.K, wino::kStreamBytesGradWeight);
  if (streaming) {
    const Plan<M, T> plan(p, false, /*nb=*/probe.tiles);  // all tiles in one block
    backward_weight_streaming(plan, grad_output, input, grad_weight);
  } else {
    backward_weight_blocked(probe, grad_output, input, grad_weight);
  }
}

#define CNNKERN_INSTANTIATE(M, T)                                                          \
  template void winograd_backward_weight<M, T>(const T*, const T*, T*, const Conv2dProblem&);
CNNKERN_WINOGRAD_CPU_VARIANTS(CNNKERN_INSTANTIATE)
#undef CNNKERN_INSTANTIATE

}  // namespace cpu
}  // namespace cnnkern
