// Winograd F(m x m, 3x3) forward on the CPU (also grad-input, see conv2d_winograd.cpp).
//
// Two schedules over the same arithmetic (cpu/winograd/winograd_plan.h for the tile layout):
//
// - blocked (many tiles): U[g][c][xi][k] = (G w G^T)[xi] for all filters once (packed once
//   for the GEMM when several blocks reuse it), then per block of NB tiles:
//     V[c][xi][t] = input tiles, M[k][xi][t] = sum_c U[g][c][xi][k] V[c][xi][t] (one GEMM
//     per group and xi),
//     out = A^T M A + bias.
//   Whole blocks run on each thread when there are enough of them to balance; otherwise
//   blocks run in turn and each phase is split over channels, GEMMs or filters.
//
// - filter-streaming (few tiles, typically many channels: VGG's 28x28 and 14x14 layers):
//   all tiles are one block; V is computed and packed once as the GEMM's A operand
//   (tiles x channels), then threads take chunks of filters (Plan::filter_chunk): transform them (the
//   chunk stays in cache; the full U of a 512 x 512 layer would be 38 MB for F(4x4)),
//   Mt[t][xi][k] = V^T[xi] * Uc[xi], and the output transform with lanes over filters.
//
// The schedule and the block/chunk sizes depend on the problem only, and every GEMM gives the
// same bits however the caller tiles it (cpu/gemm/gemm.h), so results do not depend on the thread
// count. GEMMs run inside parallel regions, i.e. on the calling thread.

#include <ATen/Parallel.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu/gemm/gemm.h"
#include "cpu/winograd/winograd_cpu.h"
#include "cpu/winograd/winograd_plan.h"

namespace cnnkern {
namespace cpu {
namespace {

using wino::alloc;
using wino::Plan;

enum class Schedule { Blocked, Streaming };

// CNNKERN_WINOGRAD_SCHEDULE=blocked|streaming forces one (tests run every shape through
// both); otherwise the problem decides.
template <int M, typename T>
Schedule choose_schedule(const Plan<M, T>& plan) {
  const char* env = std::getenv("CNNKERN_WINOGRAD_SCHEDULE");
  if (env != nullptr && std::strcmp(env, "blocked") == 0) return Schedule::Blocked;
  if (env != nullptr && std::strcmp(env, "streaming") == 0) return Schedule::Streaming;
  return plan.streamable(plan.p.C) ? Schedule::Streaming : Schedule::Blocked;
}

template <int M, typename T>
void forward_blocked(const Plan<M, T>& plan, const T* input, const T* weight, const T* bias,
                     T* output, bool relu) {
  const int64_t G = plan.G, A2 = plan.A2, Kg = plan.Kg, Cg = plan.Cg, ld = plan.ld;
  const int64_t kw = plan.u_width();
  auto U = alloc<T>(plan.u_elems());
  plan.transform_filters(weight, U.get());
  // Several blocks reuse each U[g][xi]: pack them once instead of in every GEMM call.
  std::vector<GemmPackedA<T>> packed;
  if (plan.nblocks > 1) {
    packed.resize(G * A2);
    plan.parallel(G * A2, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t g = i / A2, xi = i % A2;
        packed[i] = gemm_pack_a<T>(Kg, Cg, U.get() + g * Cg * A2 * kw + xi * kw, 1, A2 * kw);
      }
    });
    U.reset();
  }

  auto run_block = [&](int64_t b, T* Vw, T* Mw) {
    const int64_t t0 = b * plan.NB, nt = std::min(plan.NB, plan.tiles - t0);
    plan.input_phase(input, t0, nt, Vw);
    plan.parallel(G * A2, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t g = i / A2, xi = i % A2;
        const T* Vi = Vw + (g * Cg * A2 + xi) * ld;
        T* Mi = Mw + (g * Kg * A2 + xi) * ld;
        if (packed.empty())
          gemm<T>(Kg, nt, Cg, U.get() + g * Cg * A2 * kw + xi * kw, 1, A2 * kw, Vi, A2 * ld, 1,
                  T(0), Mi, A2 * ld);
        else
          gemm_packed<T>(packed[i], nt, Vi, A2 * ld, 1, T(0), Mi, A2 * ld);
      }
    });
    plan.output_phase(Mw, t0, nt, bias, output, relu);
  };

  // Scheduling only (results are the same either way): whole blocks per thread when there
  // are at least two per thread (at worst 5 blocks on 2 threads, 20% idle), else blocks in
  // turn with each phase split over threads. Whole blocks open one parallel region; a region
  // per phase and block made a machine with other work (a descheduled thread at every
  // barrier) run F(4x4) on 64x56x56 x 8 4-5x slower at 2 threads than at 1.
  const int64_t threads = at::get_num_threads();
  if (!plan.serial && plan.nblocks >= threads &&
      (plan.nblocks % threads == 0 || plan.nblocks >= 2 * threads)) {
    plan.parallel(plan.nblocks, [&](int64_t b0, int64_t b1) {
      T* Vw = thread_scratch<T>(ScratchSlot::WinogradV, plan.v_elems());
      T* Mw = thread_scratch<T>(ScratchSlot::WinogradM, plan.m_elems());
      for (int64_t b = b0; b < b1; ++b) run_block(b, Vw, Mw);
    });
  } else {
    T* Vw = thread_scratch<T>(ScratchSlot::WinogradV, plan.v_elems());
    T* Mw = thread_scratch<T>(ScratchSlot::WinogradM, plan.m_elems());
    for (int64_t b = 0; b < plan.nblocks; ++b) run_block(b, Vw, Mw);
  }
}

template <int M, typename T>
void forward_streaming(const Plan<M, T>& plan, const T* input, const T* weight, const T* bias,
                       T* output, bool relu) {
  const int64_t G = plan.G, A2 = plan.A2, Kg = plan.Kg, Cg = plan.Cg;
  const int64_t nt = plan.tiles;  // one block
  // A = V[.][xi]^T (tiles x channels of group g), packed once, kept per thread between calls.
  const int64_t pa_elems = gemm_packed_a_elems<T>(nt, Cg);
  T* store = thread_scratch<T>(ScratchSlot::WinogradV, G * A2 * pa_elems);
  std::vector<GemmPackedA<T>> packed(G * A2);
  for (int64_t i = 0; i < G * A2; ++i)
    packed[i] = gemm_packed_a_view<T>(nt, Cg, store + i * pa_elems);
  plan.pack_transformed_input(input, packed, /*tiles_as_rows=*/true);
  const int64_t chunk = plan.filter_chunk(), kw = plan.chunk_width();
  const int64_t chunks = (Kg + chunk - 1) / chunk;
  plan.parallel(G * chunks, [&](int64_t i0, int64_t i1) {
    T* Uc = thread_scratch<T>(ScratchSlot::WinogradU, A2 * Cg * kw);
    T* Mt = thread_scratch<T>(ScratchSlot::WinogradMt, A2 * nt * kw);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / chunks, k0 = (i % chunks) * chunk;
      const int64_t nk = std::min(chunk, Kg - k0), k_first = g * Kg + k0;
      plan.kern.filters(plan.filter_source(weight, g, k0, 0), Cg, nk, Uc, A2 * kw,
                        kw);  // Uc[c][xi][kk]
      for (int64_t xi = 0; xi < A2; ++xi)  // Mt[t][xi][kk]
        gemm_packed<T>(packed[g * A2 + xi], nk, Uc + xi * kw, A2 * kw, 1, T(0),
                       Mt + xi * kw, A2 * kw);
      plan.output_filter_lanes(Mt, kw, k_first, nk, bias, output, relu);
    }
  });
}

}  // namespace

template <int M, typename T>
void winograd_forward(const T* input, const T* weight, const T* bias, T* output,
                      const Conv2dProblem& p, bool flipped_weight, bool relu) {
  if (p.N == 0 || p.K == 0 || p.P <= 0 || p.Q <= 0) return;
  const Plan<M, T> probe(p, flipped_weight);
  if (choose_schedule(probe) == Schedule::Streaming) {
    const Plan<M, T> plan(p, flipped_weight, /*nb=*/probe.tiles);  // all tiles in one block
    forward_streaming(plan, input, weight, bias, output, relu);
  } else {
    forward_blocked(probe, input, weight, bias, output, relu);
  }
}

#define CNNKERN_INSTANTIATE(M, T)                                        \
  template void winograd_forward<M, T>(const T*, const T*, const T*, T*, \
                                       const Conv2dProblem&, bool, bool);
CNNKERN_WINOGRAD_CPU_VARIANTS(CNNKERN_INSTANTIATE)
#undef CNNKERN_INSTANTIATE

}  // namespace cpu
}  // namespace cnnkern
