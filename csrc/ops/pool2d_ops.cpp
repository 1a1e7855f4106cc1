#include "ops/pool2d_ops.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "ops/checks.h"

namespace cnnkern {

namespace {

void check_dtype(const Pool2dKernels& k, const char* op, const char* what, const at::Tensor& t) {
  check_floating_dtype(op, what, t, k.dtypes);
}

// The layout a call runs in, from the tensor that decides it (the input; for the backward
// passes the indices or grad_output): channels_last when its strides suggest it, as
// torch's pooling decides (Tensor::suggest_memory_format), else NCHW. Sets p's layout.
at::MemoryFormat choose_layout(Pool2dProblem& p, const at::Tensor& t) {
  p.channels_last = t.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return p.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

at::Tensor new_output(const at::Tensor& like, const Pool2dProblem& p, at::MemoryFormat fmt) {
  return at::empty({p.N, p.C, p.P, p.Q}, like.options().memory_format(fmt));
}

// grad_input in the call's layout: zero-filled for kernels that add into it, or when no
// kernel runs (an empty output); left for the kernel to write otherwise.
at::Tensor new_grad_input(const Pool2dKernels& k, const Pool2dProblem& p,
                          const at::Tensor& grad_output, c10::IntArrayRef input_size,
                          at::MemoryFormat fmt) {
  at::Tensor gi = at::empty(input_size, grad_output.options().memory_format(fmt));
  if (p.output_numel() == 0 || k.needs_zeroed_grad_input(p)) gi.zero_();
  return gi;
}

}  // namespace

namespace {

// The two max-pool forward ops: the indices are allocated (and written) only when asked for.
std::tuple<at::Tensor, at::Tensor> max_pool2d_forward(const Pool2dKernels& k,
                                                      const at::Tensor& input,
                                                      c10::IntArrayRef kernel_size,
                                                      c10::IntArrayRef stride,
                                                      c10::IntArrayRef padding,
                                                      c10::IntArrayRef dilation, bool ceil_mode,
                                                      bool with_indices) {
  constexpr const char* op = "cnnkern.max_pool2d";
  Pool2dProblem p =
      make_max_pool2d_problem(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  check_dtype(k, op, "input", input);
  const at::MemoryFormat fmt = choose_layout(p, input);
  at::Tensor out = new_output(input, p, fmt);
  at::Tensor idx;
  if (with_indices)
    idx = at::empty({p.N, p.C, p.P, p.Q}, input.options().dtype(at::kLong).memory_format(fmt));
  if (p.output_numel() > 0)
    k.max_forward(p, input.contiguous(fmt), out, with_indices ? &idx : nullptr);
  return {out, idx};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices_op(
    const Pool2dKernels& k, const at::Tensor& input, c10::IntArrayRef kernel_size,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
    bool ceil_mode) {
  return max_pool2d_forward(k, input, kernel_size, stride, padding, dilation, ceil_mode, true);
}

at::Tensor max_pool2d_op(const Pool2dKernels& k, const at::Tensor& input,
                         c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                         c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode) {
  return std::get<0>(
      max_pool2d_forward(k, input, kernel_size, stride, padding, dilation, ceil_mode, false));
}

at::Tensor max_pool2d_backward_op(const Pool2dKernels& k, const at::Tensor& grad_output,
                                  const at::Tensor& indices, c10::IntArrayRef input_size,
                                  c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                  c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                  bool ceil_mode) {
  constexpr const char* op = "cnnkern.max_pool2d_backward";
  Pool2dProblem p = make_max_pool2d_problem(op, input_size, kernel_size, stride, padding,
                                            dilation, ceil_mode);
  check_dtype(k, op, "grad_output", grad_output);
  check_grad_output(op, grad_output, p.N, p.C, p.P, p.Q);
  TORCH_CHECK(indices.scalar_type() == at::kLong && indices.sizes() == grad_output.sizes() &&
                  indices.device() == grad_output.device(),
              op, ": expected int64 indices of size ", sizes_str(grad_output.sizes()), " on ",
              grad_output.device(), "; got ", indices.scalar_type(), " of size ",
              sizes_str(indices.sizes()), " on ", indices.device());
  // The indices come from the forward, in its input's layout: following them gives grad_input
  // the forward input's layout whatever grad_output's, as torch's backward does.
  const at::MemoryFormat fmt = choose_layout(p, indices);
  at::Tensor grad_input = new_grad_input(k, p, grad_output, input_size, fmt);
  if (p.output_numel() > 0)
    k.max_backward(p, grad_output.contiguous(fmt), indices.contiguous(fmt), grad_input);
  return grad_input;
}

at::Tensor avg_pool2d_op(const Pool2dKernels& k, const at::Tensor& input,
                         c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                         c10::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                         c10::optional<int64_t> divisor_override) {
  constexpr const char* op = "cnnkern.avg_pool2d";
  Pool2dProblem p = make_avg_pool2d_problem(op, input.sizes(), kernel_size, stride, padding,
                                            ceil_mode, count_include_pad, divisor_override);
  check_dtype(k, op, "input", input);
  const at::MemoryFormat fmt = choose_layout(p, input);
  at::Tensor out = new_output(input, p, fmt);
  if (p.output_numel() > 0) k.avg_forward(p, input.contiguous(fmt), out);
  return out;
}

at::Tensor avg_pool2d_backward_op(const Pool2dKernels& k, const at::Tensor& grad_output,
                                  c10::IntArrayRef input_size, c10::IntArrayRef kernel_size,
                                  c10::IntArrayRef stride, c10::IntArrayRef padding,
                                  bool ceil_mode, bool count_include_pad,
                                  c10::optional<int64_t> divisor_override) {
  constexpr const char* op = "cnnkern.avg_pool2d_backward";
  Pool2dProblem p = make_avg_pool2d_problem(op, input_size, kernel_size, stride, padding,
                                            ceil_mode, count_include_pad, divisor_override);
  check_dtype(k, op, "grad_output", grad_output);
  check_grad_output(op, grad_output, p.N, p.C, p.P, p.Q);
  // No indices to say the forward's layout: grad_output's decides (cnnkern's autograd hands
  // grad_output over in the forward input's layout, so grad_input follows it as torch's).
  const at::MemoryFormat fmt = choose_layout(p, grad_output);
  at::Tensor grad_input = new_grad_input(k, p, grad_output, input_size, fmt);
  if (p.output_numel() > 0) k.avg_backward(p, grad_output.contiguous(fmt), grad_input);
  return grad_input;
}

at::Tensor adaptive_avg_pool2d_op(const Pool2dKernels& k, const at::Tensor& input,
                                  c10::IntArrayRef output_size) {
  constexpr const char* op = "cnnkern.adaptive_avg_pool2d";
  Pool2dProblem p = make_adaptive_avg_pool2d_problem(op, input.sizes(), output_size);
  check_dtype(k, op, "input", input);
  const at::MemoryFormat fmt = choose_layout(p, input);
  at::Tensor out = new_output(input, p, fmt);
  if (p.output_numel() > 0) k.adaptive_avg_forward(p, input.contiguous(fmt), out);
  return out;
}

at::Tensor adaptive_avg_pool2d_backward_op(const Pool2dKernels& k,
                                           const at::Tensor& grad_output,
                                           c10::IntArrayRef input_size) {
  constexpr const char* op = "cnnkern.adaptive_avg_pool2d_backward";
  TORCH_CHECK(grad_output.dim() == 4, op, ": expected a 4-D grad_output; got size ",
              sizes_str(grad_output.sizes()));
  const int64_t out_hw[2] = {grad_output.size(2), grad_output.size(3)};
  Pool2dProblem p =
      make_adaptive_avg_pool2d_problem(op, input_size, c10::IntArrayRef(out_hw, 2));
  check_dtype(k, op, "grad_output", grad_output);
  check_grad_output(op, grad_output, p.N, p.C, p.P, p.Q);
  const at::MemoryFormat fmt = choose_layout(p, grad_output);  // as in avg_pool2d_backward_op
  at::Tensor grad_input = new_grad_input(k, p, grad_output, input_size, fmt);
  if (p.output_numel() > 0)
    k.adaptive_avg_backward(p, grad_output.contiguous(fmt), grad_input);
  return grad_input;
}

}  // namespace cnnkern
