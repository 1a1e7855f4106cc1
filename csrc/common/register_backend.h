#pragma once
// One registration routine for every backend: the op bodies are shared (csrc/common/*_ops.cpp),
// so a backend differs only in its Backend tag, its pooling kernel table, and the guard that
// makes the input's device current for the duration of the call (a no-op on the CPU,
// c10::cuda::OptionalCUDAGuard on CUDA).
//
// Use inside TORCH_LIBRARY_IMPL(cnnkern, <KEY>, m): register_backend_ops<Ops<...>>(m);

#include <torch/library.h>

#include <string>
#include <tuple>

#include "common/conv2d_ops.h"
#include "common/pool2d_ops.h"

namespace cnnkern {

struct NoDeviceGuard {
  explicit NoDeviceGuard(const at::Tensor&) {}
};

template <Backend B, const Pool2dKernels& (*Kernels)(), class Guard>
struct BackendOps {
  static Conv2dMath math(bool allow_tf32) {
    Conv2dMath m;
    m.allow_tf32 = allow_tf32;
    return m;
  }

  static at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight,
                           const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                           c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups,
                           c10::string_view algo, bool allow_tf32) {
    Guard guard(input);
    return conv2d_op(B, input, weight, bias, stride, padding, dilation, groups,
                     std::string(algo), /*relu=*/false, math(allow_tf32));
  }

  // conv2d with the ReLU in the algorithm's epilogue (the folded eval path of ConvBNReLU2d).
  static at::Tensor conv2d_relu(const at::Tensor& input, const at::Tensor& weight,
                                const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                                c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                int64_t groups, c10::string_view algo, bool allow_tf32) {
    Guard guard(input);
    return conv2d_op(B, input, weight, bias, stride, padding, dilation, groups,
                     std::string(algo), /*relu=*/true, math(allow_tf32));
  }

  static at::Tensor conv2d_backward_input(const at::Tensor& grad_output,
                                          const at::Tensor& weight, c10::IntArrayRef input_size,
                                          c10::IntArrayRef stride, c10::IntArrayRef padding,
                                          c10::IntArrayRef dilation, int64_t groups,
                                          c10::string_view algo, bool allow_tf32) {
    Guard guard(grad_output);
    return conv2d_backward_input_op(B, grad_output, weight, input_size, stride, padding,
                                    dilation, groups, std::string(algo), math(allow_tf32));
  }

  static at::Tensor conv2d_backward_weight(const at::Tensor& grad_output,
                                           const at::Tensor& input,
                                           c10::IntArrayRef weight_size,
                                           c10::IntArrayRef stride, c10::IntArrayRef padding,
                                           c10::IntArrayRef dilation, int64_t groups,
                                           c10::string_view algo, bool allow_tf32) {
    Guard guard(grad_output);
    return conv2d_backward_weight_op(B, grad_output, input, weight_size, stride, padding,
                                     dilation, groups, std::string(algo), math(allow_tf32));
  }

  static std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(
      const at::Tensor& input, c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
      c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode) {
    Guard guard(input);
    return max_pool2d_with_indices_op(Kernels(), input, kernel_size, stride, padding, dilation,
                                      ceil_mode);
  }

  static at::Tensor max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                                        c10::IntArrayRef input_size,
                                        c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                        c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                        bool ceil_mode) {
    Guard guard(grad_output);
    return max_pool2d_backward_op(Kernels(), grad_output, indices, input_size, kernel_size,
                                  stride, padding, dilation, ceil_mode);
  }

  static at::Tensor avg_pool2d(const at::Tensor& input, c10::IntArrayRef kernel_size,
                               c10::IntArrayRef stride, c10::IntArrayRef padding,
                               bool ceil_mode, bool count_include_pad,
                               c10::optional<int64_t> divisor_override) {
    Guard guard(input);
    return avg_pool2d_op(Kernels(), input, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override);
  }

  static at::Tensor avg_pool2d_backward(const at::Tensor& grad_output,
                                        c10::IntArrayRef input_size,
                                        c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                        c10::IntArrayRef padding, bool ceil_mode,
                                        bool count_include_pad,
                                        c10::optional<int64_t> divisor_override) {
    Guard guard(grad_output);
    return avg_pool2d_backward_op(Kernels(), grad_output, input_size, kernel_size, stride,
                                  padding, ceil_mode, count_include_pad, divisor_override);
  }

  static at::Tensor adaptive_avg_pool2d(const at::Tensor& input,
                                        c10::IntArrayRef output_size) {
    Guard guard(input);
    return adaptive_avg_pool2d_op(Kernels(), input, output_size);
  }

  static at::Tensor adaptive_avg_pool2d_backward(const at::Tensor& grad_output,
                                                 c10::IntArrayRef input_size) {
    Guard guard(grad_output);
    return adaptive_avg_pool2d_backward_op(Kernels(), grad_output, input_size);
  }
};

template <class Ops>
void register_backend_ops(torch::Library& m) {
  m.impl("conv2d", TORCH_FN(Ops::conv2d));
  m.impl("conv2d_relu", TORCH_FN(Ops::conv2d_relu));
  m.impl("conv2d_backward_input", TORCH_FN(Ops::conv2d_backward_input));
  m.impl("conv2d_backward_weight", TORCH_FN(Ops::conv2d_backward_weight));
  m.impl("max_pool2d_with_indices", TORCH_FN(Ops::max_pool2d_with_indices));
  m.impl("max_pool2d_backward", TORCH_FN(Ops::max_pool2d_backward));
  m.impl("avg_pool2d", TORCH_FN(Ops::avg_pool2d));
  m.impl("avg_pool2d_backward", TORCH_FN(Ops::avg_pool2d_backward));
  m.impl("adaptive_avg_pool2d", TORCH_FN(Ops::adaptive_avg_pool2d));
  m.impl("adaptive_avg_pool2d_backward", TORCH_FN(Ops::adaptive_avg_pool2d_backward));
}

}  // namespace cnnkern
