#pragma once
// The fused conv + BatchNorm (batch statistics) + ReLU training op and its backward, shared by
// the CPU and CUDA registrations. The op body checks the arguments, runs the registered conv
// (any algorithm, conv2d_op), then the backend's kernels:
//
//   forward   z = conv(x)                      (the conv's own output, kept for backward)
//             stats:  ONE pass over z -> per-channel mean, biased var, invstd
//             apply:  ONE pass  y = act(z * scale + shift),  scale = gamma * invstd,
//                                                           shift = beta - mean * scale
//   backward  sums:   ONE pass over (dy, z) -> per channel sum(g), sum(g * (z - mean)),
//                     g = dy where z * scale + shift > 0 (the ReLU mask, recomputed from z
//                     with the forward's own arithmetic, so no mask is saved)
//             grad_z: ONE pass  gz = g * a + (z - mean) * b + c   (per-channel a, b, c)
//
// The per-channel reductions run in a fixed order (one owner per channel, double
// accumulators), so the results are bitwise the same for any thread count. The per-channel
// vectors (mean, var, invstd, scale, shift) are float32 for float32/16/bf16 data and float64
// for float64 data ("the stats dtype").

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <string>
#include <tuple>

#include "common/conv2d_algo.h"

namespace cnnkern {

struct BnReluKernels {
  // z: N x K x P x Q contiguous; writes K values each.
  void (*stats)(const at::Tensor& z, double eps, at::Tensor& mean, at::Tensor& var,
                at::Tensor& invstd);
  // out = z * scale[k] + shift[k], then max(., 0) when relu.
  void (*apply)(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift,
                bool relu, at::Tensor& out);
  // sum_g[k] = sum g, sum_gx[k] = sum g * (z - mean[k]) (stats dtype, K values each).
  void (*grad_sums)(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
                    const at::Tensor& shift, const at::Tensor& mean, bool relu,
                    at::Tensor& sum_g, at::Tensor& sum_gx);
  // gz = g * a[k] + (z - mean[k]) * b[k] + c[k].
  void (*grad_z)(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
                 const at::Tensor& shift, const at::Tensor& mean, const at::Tensor& a,
                 const at::Tensor& b, const at::Tensor& c, bool relu, at::Tensor& gz);
};

// Returns (out, z, mean, invstd, var): var is the biased batch variance (the caller turns it
// into the unbiased running estimate); mean/invstd/var in the stats dtype.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> conv_bn_relu_train_op(
    Backend backend, const BnReluKernels& kern, const at::Tensor& input,
    const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& bn_weight, const c10::optional<at::Tensor>& bn_bias,
    double eps, bool relu, c10::IntArrayRef stride, c10::IntArrayRef padding,
    c10::IntArrayRef dilation, int64_t groups, const std::string& algo);

// Returns (grad_z, grad_bn_weight, grad_bn_bias); the grads of absent gamma/beta are still
// returned (the sums are computed anyway) and ignored by the caller.
std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_op(
    const BnReluKernels& kern, const at::Tensor& grad_out, const at::Tensor& z,
    const at::Tensor& mean, const at::Tensor& invstd, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, bool relu);

// Registers conv_bn_relu_train and bn_relu_backward for a dispatch key.
template <Backend B, const BnReluKernels& (*Kernels)(), class Guard>
struct BnReluOps {
  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> train(
      const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
      const c10::optional<at::Tensor>& bn_weight, const c10::optional<at::Tensor>& bn_bias,
      double eps, bool relu, c10::IntArrayRef stride, c10::IntArrayRef padding,
      c10::IntArrayRef dilation, int64_t groups, c10::string_view algo) {
    Guard guard(input);
    return conv_bn_relu_train_op(B, Kernels(), input, weight, bias, bn_weight, bn_bias, eps, relu,
                                 stride, padding, dilation, groups, std::string(algo));
  }
  static std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
      const at::Tensor& grad_out, const at::Tensor& z, const at::Tensor& mean,
      const at::Tensor& invstd, const c10::optional<at::Tensor>& bn_weight,
      const c10::optional<at::Tensor>& bn_bias, bool relu) {
    Guard guard(grad_out);
    return bn_relu_backward_op(Kernels(), grad_out, z, mean, invstd, bn_weight, bn_bias, relu);
  }
};

}  // namespace cnnkern
