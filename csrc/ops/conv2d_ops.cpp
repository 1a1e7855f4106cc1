#include "ops/conv2d_ops.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "ops/checks.h"
#include "ops/layout.h"

namespace cnnkern {

namespace {

// The backward ops rebuild the forward problem from the saved sizes; the op name in messages
// stays the public one users called.
constexpr const char* kOp = "cnnkern.conv2d";

const Conv2dAlgo& select_with(const char* op, Backend backend, const Conv2dProblem& p,
                              at::ScalarType dtype, const std::string& algo, ConvPass pass) {
  const Conv2dAlgo& a = select_conv2d_algo(op, backend, p, dtype, algo, pass);
  TORCH_CHECK(pass != ConvPass::BackwardInput || a.backward_input, op, ": algo '", a.name,
              "' has no grad-input kernel on ", backend_name(backend));
  TORCH_CHECK(pass != ConvPass::BackwardWeight || a.backward_weight, op, ": algo '", a.name,
              "' has no grad-weight kernel on ", backend_name(backend));
  return a;
}

}  // namespace

at::Tensor conv2d_op(Backend backend, const at::Tensor& input, const at::Tensor& weight,
                     const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                     c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups,
                     const std::string& algo, bool relu, const Conv2dMath& math) {
  const Conv2dProblem p =
      make_conv2d_problem(kOp, input, weight, bias, stride, padding, dilation, groups);
  const Conv2dAlgo& a = select_with(kOp, backend, p, input.scalar_type(), algo, ConvPass::Forward);
  const at::MemoryFormat fmt = conv_memory_format(input, weight);
  if (p.output_numel() == 0)
    return at::empty({p.N, p.K, p.P, p.Q}, input.options().memory_format(fmt));
  c10::optional<at::Tensor> b;
  if (bias.has_value()) b = bias->contiguous();
  Conv2dEpilogue epi;
  epi.relu = relu;
  // An algorithm that reads channels_last gets a channels_last call's tensors uncopied.
  const at::MemoryFormat in_fmt =
      a.forward_takes_channels_last ? fmt : at::MemoryFormat::Contiguous;
  return in_memory_format(
      a.forward(input.contiguous(in_fmt), weight.contiguous(in_fmt), b, p, epi, math), fmt);
}

at::Tensor conv2d_backward_input_op(Backend backend, const at::Tensor& grad_output,
                                    const at::Tensor& weight, c10::IntArrayRef input_size,
                                    c10::IntArrayRef stride, c10::IntArrayRef padding,
                                    c10::IntArrayRef dilation, int64_t groups,
                                    const std::string& algo, const Conv2dMath& math) {
  check_same_device_dtype(kOp, "grad_output", grad_output, "weight", weight);
  const Conv2dProblem p = make_conv2d_problem(kOp, input_size, weight.sizes(), stride, padding,
                                              dilation, groups);
  check_grad_output(kOp, grad_output, p.N, p.K, p.P, p.Q);
  const Conv2dAlgo& a =
      select_with(kOp, backend, p, grad_output.scalar_type(), algo, ConvPass::BackwardInput);
  // As a transposed convolution (its other use), the result follows torch's conv rule.
  const at::MemoryFormat fmt = conv_memory_format(grad_output, weight);
  if (p.output_numel() == 0)
    return at::zeros(input_size, grad_output.options().memory_format(fmt));
  return in_memory_format(
      a.backward_input(grad_output.contiguous(), weight.contiguous(), p, math), fmt);
}

at::Tensor conv2d_backward_weight_op(Backend backend, const at::Tensor& grad_output,
                                     const at::Tensor& input, c10::IntArrayRef weight_size,
                                     c10::IntArrayRef stride, c10::IntArrayRef padding,
                                     c10::IntArrayRef dilation, int64_t groups,
                                     const std::string& algo, const Conv2dMath& math) {
  check_same_device_dtype(kOp, "grad_output", grad_output, "input", input);
  const Conv2dProblem p = make_conv2d_problem(kOp, input.sizes(), weight_size, stride, padding,
                                              dilation, groups);
  check_grad_output(kOp, grad_output, p.N, p.K, p.P, p.Q);
  const Conv2dAlgo& a =
      select_with(kOp, backend, p, grad_output.scalar_type(), algo, ConvPass::BackwardWeight);
  const at::MemoryFormat fmt = conv_memory_format(grad_output, input);
  if (p.output_numel() == 0)
    return at::zeros(weight_size, grad_output.options().memory_format(fmt));
  return in_memory_format(
      a.backward_weight(grad_output.contiguous(), input.contiguous(), p, math), fmt);
}

}  // namespace cnnkern
