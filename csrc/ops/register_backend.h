#pragma once
// The one way a backend plugs into the ops: the op bodies are shared (ops/*_ops.cpp), so a
// backend differs only in
//   - its Backend tag, under which its conv2d algorithms register themselves
//     (CONV2D_REGISTER_ALGO in each algorithm's file: ops/conv2d_algo.h),
//   - its kernel table for each other op family (pooling, BN+ReLU),
//   - the guard that makes the input's device current for the duration of the call (a no-op
//     on the CPU, the CUDA device guard on CUDA).
//
// Each backend has one file (cpu/register.cpp, cuda/register.cpp) doing, inside its
// TORCH_LIBRARY_IMPL: register_backend_ops<BackendOps<tag, pool table, bn_relu table, guard>>(m).
// A new op family adds its table parameter and its m.impl lines here, once for every backend.

#include <torch/library.h>

#include <string>
#include <tuple>

#include "ops/bn_relu_ops.h"
#include "ops/conv2d_ops.h"
#include "ops/pool2d_ops.h"

namespace cnnkern {

struct NoDeviceGuard {
  explicit NoDeviceGuard(const at::Tensor&) {}
};

template <Backend B, const Pool2dKernels& (*Kernels)(), const BnReluKernels& (*BnRelu)(),
          class Guard>
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

  static at::Tensor max_pool2d(const at::Tensor& input, c10::IntArrayRef kernel_size,
                               c10::IntArrayRef stride, c10::IntArrayRef padding,
                               c10::IntArrayRef dilation, bool ceil_mode) {
    Guard guard(input);
    return max_pool2d_op(Kernels(), input, kernel_size, stride, padding, dilation, ceil_mode);
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

  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_train(
      const at::Tensor& z, const c10::optional<at::Tensor>& bn_weight,
      const c10::optional<at::Tensor>& bn_bias, double eps, bool relu,
      c10::optional<double> relu_max) {
    Guard guard(z);
    return bn_relu_train_op(BnRelu(), z, bn_weight, bn_bias, eps, relu, relu_max);
  }

  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_add_relu_train(
      const at::Tensor& z, const at::Tensor& residual, const c10::optional<at::Tensor>& bn_weight,
      const c10::optional<at::Tensor>& bn_bias, double eps) {
    Guard guard(z);
    return bn_add_relu_train_op(BnRelu(), z, residual, bn_weight, bn_bias, eps);
  }

  static std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward(
      const at::Tensor& grad_out, const at::Tensor& z, const at::Tensor& mean,
      const at::Tensor& invstd, const c10::optional<at::Tensor>& bn_weight,
      const c10::optional<at::Tensor>& bn_bias, bool relu, c10::optional<double> relu_max) {
    Guard guard(grad_out);
    return bn_relu_backward_op(BnRelu(), grad_out, z, mean, invstd, bn_weight, bn_bias, relu,
                               relu_max);
  }
};

template <class Ops>
void register_backend_ops(torch::Library& m) {
  m.impl("conv2d", TORCH_FN(Ops::conv2d));
  m.impl("conv2d_relu", TORCH_FN(Ops::conv2d_relu));
  m.impl("conv2d_backward_input", TORCH_FN(Ops::conv2d_backward_input));
  m.impl("conv2d_backward_weight", TORCH_FN(Ops::conv2d_backward_weight));
  m.impl("max_pool2d_with_indices", TORCH_FN(Ops::max_pool2d_with_indices));
  m.impl("max_pool2d", TORCH_FN(Ops::max_pool2d));
  m.impl("max_pool2d_backward", TORCH_FN(Ops::max_pool2d_backward));
  m.impl("avg_pool2d", TORCH_FN(Ops::avg_pool2d));
  m.impl("avg_pool2d_backward", TORCH_FN(Ops::avg_pool2d_backward));
  m.impl("adaptive_avg_pool2d", TORCH_FN(Ops::adaptive_avg_pool2d));
  m.impl("adaptive_avg_pool2d_backward", TORCH_FN(Ops::adaptive_avg_pool2d_backward));
  m.impl("bn_relu_train", TORCH_FN(Ops::bn_relu_train));
  m.impl("bn_relu_backward", TORCH_FN(Ops::bn_relu_backward));
  m.impl("bn_add_relu_train", TORCH_FN(Ops::bn_add_relu_train));
}

}  // namespace cnnkern
