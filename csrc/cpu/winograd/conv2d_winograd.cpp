// Winograd convolution on the CPU: "winograd" = F(4x4, 3x3), "winograd_f2" = F(2x2, 3x3).
//
// - forward: cpu/winograd/winograd_forward.cpp (transformed filters, tiles, a*a GEMMs per group);
// - grad-input: the grad-input of a 3x3 stride-1 convolution is a 3x3 stride-1 convolution of
//   grad_output with each group's filters turned by 180 degrees and their K/C axes swapped,
//   padded by 2 - pad. For pad > 2 that padding is negative, i.e. a crop of the padding-0
//   result, which the forward kernel handles as well (its tiles read at an offset);
// - grad-weight: accumulated in the Winograd domain (cpu/winograd/winograd_backward.cpp).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <string>

#include "ops/conv2d_algo.h"
#include "core/int_math.h"
#include "core/winograd.h"
#include "cpu/gemm/gemm.h"
#include "cpu/winograd/winograd_cpu.h"
#include "cpu/winograd/winograd_plan.h"
#include "cpu/common/half_via_float32.h"

namespace cnnkern {
namespace {

// The shape alone; the dtype rule is with_cpu_dtypes' (cpu/common/half_via_float32.h).
std::string why_not_winograd(const char* name, const Conv2dProblem& p) {
  return winograd_shape_why_not(name, p);
}

template <int M>
at::Tensor forward(const at::Tensor& input, const at::Tensor& weight,
                   const c10::optional<at::Tensor>& bias, const Conv2dProblem& p,
                   const Conv2dEpilogue& epi, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor out = at::empty({p.N, p.K, p.P, p.Q}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnkern_conv2d_winograd_cpu", [&] {
    cpu::winograd_forward<M, scalar_t>(
        input.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
        bias ? bias->const_data_ptr<scalar_t>() : nullptr, out.mutable_data_ptr<scalar_t>(), p,
        /*flipped_weight=*/false, epi.relu);
  });
  return out;
}

template <int M>
at::Tensor backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                          const Conv2dProblem& p, const Conv2dMath& /*math: no TF32 path*/) {
  // Filters w'[g*Cg + c][k] = rot180(w[g*Kg + k][c]), read from w in place (flipped_weight).
  const Conv2dProblem q = winograd::turned_problem(p);  // padding may be negative: a crop
  at::Tensor gi = at::empty({p.N, p.C, p.H, p.W}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnkern_conv2d_winograd_bwd_input_cpu",
                             [&] {
                               cpu::winograd_forward<M, scalar_t>(
                                   grad_output.const_data_ptr<scalar_t>(),
                                   weight.const_data_ptr<scalar_t>(), nullptr,
                                   gi.mutable_data_ptr<scalar_t>(), q, /*flipped_weight=*/true);
                             });
  return gi;
}

template <int M>
at::Tensor backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                           const Conv2dProblem& p, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor gw = at::empty({p.K, p.C_per_group(), 3, 3}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(
      grad_output.scalar_type(), "cnnkern_conv2d_winograd_bwd_weight_cpu", [&] {
        cpu::winograd_backward_weight<M, scalar_t>(grad_output.const_data_ptr<scalar_t>(),
                                                   input.const_data_ptr<scalar_t>(),
                                                   gw.mutable_data_ptr<scalar_t>(), p);
      });
  return gw;
}

std::string why_not_f4(const Conv2dProblem& p, at::ScalarType) {
  return why_not_winograd("winograd", p);
}

std::string why_not_f2(const Conv2dProblem& p, at::ScalarType) {
  return why_not_winograd("winograd_f2", p);
}

// --- workspace: the buffers winograd_forward.cpp / winograd_backward.cpp allocate, from the
// same Plan (winograd_plan.h) and the schedule each picks (the CNNKERN_WINOGRAD_SCHEDULE test
// knob aside). The GEMM's packing panels are the GEMM's and not counted.

const char* const kNotCounted = "; not counted: the GEMM's packing panels (per thread, kept)";

std::string blocks_of(int64_t nblocks, int64_t nb) {
  return std::to_string(nblocks) + (nblocks == 1 ? " block of " : " blocks of ") +
         std::to_string(nb) + " tiles";
}

// winograd_forward (the forward, and grad-input as the turned problem's forward).
template <int M, typename T>
Conv2dWorkspace forward_workspace(const Conv2dProblem& p, bool flipped) {
  Conv2dWorkspace ws;
  if (p.N == 0 || p.K == 0 || p.P <= 0 || p.Q <= 0) {
    ws.what = "none: an empty problem";
    return ws;
  }
  using Plan = cpu::wino::Plan<M, T>;
  constexpr int64_t a = Plan::a, A2 = Plan::A2, bytes = sizeof(T);
  const Plan probe(p, flipped);
  const int64_t G = probe.G, Cg = probe.Cg, Kg = probe.Kg;
  if (probe.streamable(p.C)) {  // forward_streaming: all tiles in one block
    const Plan plan(p, flipped, /*nb=*/probe.tiles);
    const int64_t kw = plan.chunk_width();
    ws.per_call = G * A2 * cpu::gemm_packed_a_elems<T>(plan.tiles, Cg) * bytes;
    ws.per_thread = (a * plan.in_w + cpu::wino::kPackChannels * A2 * plan.ld +
                     A2 * Cg * kw + A2 * plan.tiles * kw) * bytes;
    ws.what = "filter-streaming schedule, " + std::to_string(plan.tiles) +
              " tiles: every transformed input tile, packed for the GEMM (per call, kept by "
              "the calling thread); a chunk of transformed tiles, of transformed filters and "
              "of their products, and a row buffer (per thread, kept)";
  } else {  // forward_blocked
    const int64_t u = probe.u_elems() * bytes;
    const int64_t packed =
        probe.nblocks > 1 ? G * A2 * cpu::gemm_packed_a_elems<T>(Kg, Cg) * bytes : 0;
    ws.per_thread = (probe.v_elems() + probe.m_elems() +
                     std::max(a * probe.in_w, M * probe.out_w)) * bytes;
    // Packed, the transformed filters are freed before any block's workspace exists: they
    // count only for what they add beyond one thread's (exact at one thread, a bound above).
    ws.per_call = packed > 0 ? std::max(u + packed - ws.per_thread, packed) : u;
    ws.what = "blocked schedule, " + blocks_of(probe.nblocks, probe.NB) +
              ": the transformed filters" + (packed ? " and their GEMM packing" : "") +
              " (per call); one block's transformed input tiles and products, and a row "
              "buffer (per thread, kept)";
  }
  ws.what += kNotCounted;
  return ws;
}

// winograd_backward_weight. kPartials and kPartialBytes are winograd_backward.cpp's.
template <int M, typename T>
Conv2dWorkspace backward_weight_workspace(const Conv2dProblem& p) {
  constexpr int64_t kPartials = 8, kPartialBytes = int64_t(4) << 20;
  Conv2dWorkspace ws;
  using Plan = cpu::wino::Plan<M, T>;
  constexpr int64_t a = Plan::a, A2 = Plan::A2, bytes = sizeof(T);
  const Plan probe(p, /*flipped_weight=*/false);
  if (probe.tiles == 0 || p.K == 0) {
    ws.what = "none: an empty problem";
    return ws;
  }
  const int64_t G = probe.G, Cg = probe.Cg, Kg = probe.Kg;
  if (probe.streamable(p.C + p.K, cpu::wino::kStreamBytesGradWeight)) {
    const Plan plan(p, false, /*nb=*/probe.tiles);
    const int64_t kw = plan.chunk_width();
    const int64_t chunk = round_up(cpu::wino::kPackChannels, cpu::gemm_pack_a_row_unit<T>());
    ws.per_call = (plan.m_elems() + G * A2 * cpu::gemm_packed_a_elems<T>(Cg, plan.tiles)) * bytes;
    ws.per_thread = (a * plan.in_w + chunk * A2 * plan.ld + Cg * A2 * kw) * bytes;
    ws.what = "filter-streaming schedule, " + std::to_string(plan.tiles) +
              " tiles: every transformed grad_output tile, and every transformed input tile "
              "packed for the GEMM (per call, kept by the calling thread); a chunk of "
              "transformed tiles and of filter gradients, and a row buffer (per thread, kept)";
  } else {
    const int64_t du = G * A2 * Kg * Cg;
    const int64_t runs =
        !probe.serial && probe.nblocks > 1
            ? std::min(probe.nblocks, std::clamp<int64_t>(
                                          kPartialBytes / std::max<int64_t>(du * bytes, 1), 1,
                                          kPartials))
            : 1;
    ws.per_call = runs * du * bytes;
    ws.per_thread = (probe.v_elems() + probe.m_elems() + a * probe.in_w) * bytes;
    ws.what = "blocked schedule, " + blocks_of(probe.nblocks, probe.NB) + ": " +
              std::to_string(runs) + (runs == 1 ? " gradient" : " partial gradients") +
              " in the Winograd domain (per call); one block's transformed input and "
              "grad_output tiles, and a row buffer (per thread, kept)";
  }
  ws.what += kNotCounted;
  return ws;
}

template <int M, typename T>
Conv2dWorkspace workspace_of(const Conv2dProblem& p, ConvPass pass) {
  switch (pass) {
    case ConvPass::Forward: return forward_workspace<M, T>(p, false);
    case ConvPass::BackwardInput: return forward_workspace<M, T>(winograd::turned_problem(p), true);
    case ConvPass::BackwardWeight: return backward_weight_workspace<M, T>(p);
  }
  return {};
}

template <int M>
Conv2dWorkspace workspace(const Conv2dProblem& p, at::ScalarType dtype, ConvPass pass) {
  return dtype == at::kDouble ? workspace_of<M, double>(p, pass) : workspace_of<M, float>(p, pass);
}

}  // namespace

// auto_priority below direct's (10) for now: Winograd trades accuracy for speed (F(4x4)'s
// float32 error is ~10x direct's), so "auto" should take it only where the benchmarks show
// it faster; the lead sets the final values from those tables.
CONV2D_REGISTER_ALGO(Backend::CPU,
                     cpu::with_cpu_dtypes(Conv2dAlgo{"winograd", /*auto_priority=*/5, why_not_f4,
                                                     forward<4>, backward_input<4>,
                                                     backward_weight<4>, workspace<4>}));
CONV2D_REGISTER_ALGO(Backend::CPU,
                     cpu::with_cpu_dtypes(Conv2dAlgo{"winograd_f2", /*auto_priority=*/4,
                                                     why_not_f2, forward<2>, backward_input<2>,
                                                     backward_weight<2>, workspace<2>}));

}  // namespace cnnkern
