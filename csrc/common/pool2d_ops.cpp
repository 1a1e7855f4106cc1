#include "common/pool2d_ops.h"

#include <ATen/ATen.h>

#include "common/checks.h"

namespace cnnkern {

namespace {

void check_dtype(const Pool2dKernels& k, const char* op, const char* what, const at::Tensor& t) {
  check_floating_dtype(op, what, t, k.dtypes);
}

at::Tensor new_output(const at::Tensor& like, const Pool2dProblem& p) {
  return at::empty({p.N, p.C, p.P, p.Q}, like.options());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices_op(
    const Pool2dKernels& k, const at::Tensor& input, c10::IntArrayRef kernel_size,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
    bool ceil_mode) {
  constexpr const char* op = "cnnkern.max_pool2d";
  const Pool2dProblem p =
      make_max_pool2d_problem(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  check_dtype(k, op, "input", input);
  at::Tensor out = new_output(input, p);
  at::Tensor idx = at::empty({p.N, p.C, p.P, p.Q}, input.options().dtype(at::kLong));
  if (p.output_numel() > 0) k.max_forward(p, input.contiguous(), out, idx);
  return {out, idx};
}

at::Tensor max_pool2d_backward_op(const Pool2dKernels& k, const at::Tensor& grad_output,
                                  const at::Tensor& indices, c10::IntArrayRef input_size,
                                  c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                  c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                  bool ceil_mode) {
  constexpr const char* op = "cnnkern.max_pool2d_backward";
  const Pool2dProblem p = make_max_pool2d_problem(op, input_size, kernel_size, stride, padding,
                                                  dilation, ceil_mode);
  check_dtype(k, op, "grad_output", grad_output);
  check_grad_output(op, grad_output, p.N, p.C, p.P, p.Q);
  TORCH_CHECK(indices.scalar_type() == at::kLong && indices.sizes() == grad_output.sizes() &&
                  indices.device() == grad_output.device(),
              op, ": expected int64 indices of size ", sizes_str(grad_output.sizes()), " on ",
              grad_output.device(), "; got ", indices.scalar_type(), " of size ",
              sizes_str(indices.sizes()), " on ", indices.device());
  at::Tensor grad_input = at::zeros(input_size, grad_output.options());
  if (p.output_numel() > 0)
    k.max_backward(p, grad_output.contiguous(), indices.contiguous(), grad_input);
  return grad_input;
}

at::Tensor avg_pool2d_op(const Pool2dKernels& k, const at::Tensor& input,
                         c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                         c10::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                         c10::optional<int64_t> divisor_override) {
  constexpr const char* op = "cnnkern.avg_pool2d";
  const Pool2dProblem p = make_avg_pool2d_problem(op, input.sizes(), kernel_size, stride,
                                                  padding, ceil_mode, count_include_pad,
                                                  divisor_override);
  check_dtype(k, op, "input", input);
  at::Tensor out = new_output(input, p);
  if (p.output_numel() > 0) k.avg_forward(p, input.contiguous(), out);
  return out;
}

at::Tensor avg_pool2d_backward_op(const Pool2dKernels& k, const at::Tensor& grad_output,
                                  c10::IntArrayRef input_size, c10::IntArrayRef kernel_size,
                                  c10::IntArrayRef stride, c10::IntArrayRef padding,
                                  bool ceil_mode, bool count_include_pad,
                                  c10::optional<int64_t> divisor_override) {
  constexpr const char* op = "cnnkern.avg_pool2d_backward";
  const Pool2dProblem p = make_avg_pool2d_problem(op, input_size, kernel_size, stride, padding,
                                                  ceil_mode, count_include_pad,
                                                  divisor_override);
  check_dtype(k, op, "grad_output", grad_output);
  check_grad_output(op, grad_output, p.N, p.C, p.P, p.Q);
  at::Tensor grad_input = at::zeros(input_size, grad_output.options());
  if (p.output_numel() > 0) k.avg_backward(p, grad_output.contiguous(), grad_input);
  return grad_input;
}

at::Tensor adaptive_avg_pool2d_op(const Pool2dKernels& k, const at::Tensor& input,
                                  c10::IntArrayRef output_size) {
  constexpr const char* op = "cnnkern.adaptive_avg_pool2d";
  const Pool2dProblem p = make_adaptive_avg_pool2d_problem(op, input.sizes(), output_size);
  check_dtype(k, op, "input", input);
  at::Tensor out = new_output(input, p);
  if (p.output_numel() > 0) k.adaptive_avg_forward(p, input.contiguous(), out);
  return out;
}

at::Tensor adaptive_avg_pool2d_backward_op(const Pool2dKernels& k,
                                           const at::Tensor& grad_output,
                                           c10::IntArrayRef input_size) {
  constexpr const char* op = "cnnkern.adaptive_avg_pool2d_backward";
  TORCH_CHECK(grad_output.dim() == 4, op, ": expected a 4-D grad_output; got size ",
              sizes_str(grad_output.sizes()));
  const int64_t out_hw[2] = {grad_output.size(2), grad_output.size(3)};
  const Pool2dProblem p =
      make_adaptive_avg_pool2d_problem(op, input_size, c10::IntArrayRef(out_hw, 2));
  check_dtype(k, op, "grad_output", grad_output);
  check_grad_output(op, grad_output, p.N, p.C, p.P, p.Q);
  at::Tensor grad_input = at::zeros(input_size, grad_output.options());
  if (p.output_numel() > 0) k.adaptive_avg_backward(p, grad_output.contiguous(), grad_input);
  return grad_input;
}

}  // namespace cnnkern
