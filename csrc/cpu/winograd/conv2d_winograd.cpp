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

#include <string>

#include "ops/conv2d_algo.h"
#include "core/winograd.h"
#include "cpu/winograd/winograd_cpu.h"

namespace cnnkern {
namespace {

std::string why_not_winograd(const char* name, const Conv2dProblem& p, at::ScalarType dtype) {
  const std::string shape = winograd_shape_why_not(name, p);
  if (!shape.empty()) return shape;
  if (dtype != at::kFloat && dtype != at::kDouble)
    return std::string(name) + " on the CPU supports float32 and float64; got " +
           c10::toString(dtype);
  return "";
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

std::string why_not_f4(const Conv2dProblem& p, at::ScalarType dtype) {
  return why_not_winograd("winograd", p, dtype);
}

std::string why_not_f2(const Conv2dProblem& p, at::ScalarType dtype) {
  return why_not_winograd("winograd_f2", p, dtype);
}

}  // namespace

// auto_priority below direct's (10) for now: Winograd trades accuracy for speed (F(4x4)'s
// float32 error is ~10x direct's), so "auto" should take it only where the benchmarks show
// it faster; the lead sets the final values from those tables.
CONV2D_REGISTER_ALGO(Backend::CPU,
                     Conv2dAlgo{"winograd", /*auto_priority=*/5, why_not_f4, forward<4>,
                                backward_input<4>, backward_weight<4>});
CONV2D_REGISTER_ALGO(Backend::CPU,
                     Conv2dAlgo{"winograd_f2", /*auto_priority=*/4, why_not_f2, forward<2>,
                                backward_input<2>, backward_weight<2>});

}  // namespace cnnkern
