#pragma once
// The fused BatchNorm (batch statistics) + ReLU training op that follows the conv in
// cnnkern.conv_bn_relu(training=True), and its backward, shared by the CPU and CUDA
// registrations. The conv is the registered conv2d op (any algorithm), called first as its own
// autograd node: in backward, this op's node runs first and frees z before the conv's
// backward runs, which keeps the step's peak memory below the unfused sequence's.
//
//   forward   z = conv(x)                      (cnnkern::conv2d; z is saved for backward)
//             stats:  ONE pass over z -> per-channel mean, biased var, invstd
//             apply:  ONE pass  y = act(z * scale + shift),  scale = gamma * invstd,
//                                                           shift = beta - mean * scale
//                     act: none, ReLU, or ReLU clamped above at relu_max (ReLU6), BnActivation
//   backward  sums:   ONE pass over (dy, z) -> per channel sum(g), sum(g * (z - mean)),
//                     g = dy where z * scale + shift > 0 (the ReLU mask, recomputed from z
//                     with the forward's own arithmetic, so no mask is saved)
//             grad_z: ONE pass  gz = g * a + (z - mean) * b + c   (per-channel a, b, c)
//
// The per-channel reductions run in a fixed order (double accumulators; the statistics with
// one owner per channel, the backward's sums per fixed unit of the tensor -- a plane, a block
// of rows -- added in order), so the results are bitwise the same for any thread count. The per-channel
// vectors (mean, var, invstd, scale, shift) are float32 for float32/16/bf16 data and float64
// for float64 data ("the stats dtype").

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <string>
#include <tuple>

#include "core/bn_activation.h"
#include "ops/conv2d_algo.h"

namespace cnnkern {

struct BnReluKernels {
  // z: N x K x P x Q contiguous; writes K values each.
  void (*stats)(const at::Tensor& z, double eps, at::Tensor& mean, at::Tensor& var,
                at::Tensor& invstd);
  // out = act(z * scale[k] + shift[k]).
  void (*apply)(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift,
                const BnActivation& act, at::Tensor& out);
  // sum_g[k] = sum g, sum_gx[k] = sum g * (z - mean[k]) (stats dtype, K values each).
  // The backward's two take dy and z both contiguous or, on the CPU, both channels_last.
  void (*grad_sums)(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
                    const at::Tensor& shift, const at::Tensor& mean, const BnActivation& act,
                    at::Tensor& sum_g, at::Tensor& sum_gx);
  // gz = g * a[k] + (z - mean[k]) * b[k] + c[k].
  void (*grad_z)(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
                 const at::Tensor& shift, const at::Tensor& mean, const at::Tensor& a,
                 const at::Tensor& b, const at::Tensor& c, const BnActivation& act,
                 at::Tensor& gz);
  // Whether grad_sums and grad_z take channels_last tensors as they are (else NCHW copies).
  // A property of the kernels, not of the tensors' device: under the CUDA emulator the CUDA
  // kernels get CPU tensors.
  bool backward_reads_channels_last;
  // Whether, in NCHW, grad_sums and grad_z take a dy whose (image, channel) planes are each
  // contiguous but whose images are further apart than K planes (dy.stride(0) > K * H * W: a
  // channel slice, which torch.cat's backward hands every branch of an inception module) as
  // it is, else a contiguous copy. False unless a backend's kernels say so.
  bool backward_reads_batch_strided = false;
  // out = relu(z * scale[k] + shift[k] + residual) (z, residual, out contiguous NCHW): the
  // ResNet block tail of bn_add_relu_train_op. Null where a backend has no such kernel (the
  // op then says so; cnnkern.functional runs the unfused sequence there).
  void (*apply_add_relu)(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift,
                         const at::Tensor& residual, at::Tensor& out) = nullptr;
};

// relu_max (with relu only): the upper clamp, y = min(max(v, 0), relu_max).
// Returns (out, mean, invstd, var): var is the biased batch variance (the caller turns it
// into the unbiased running estimate); mean/invstd/var in the stats dtype.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_train_op(
    const BnReluKernels& kern, const at::Tensor& z, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, double eps, bool relu,
    c10::optional<double> relu_max);

// y = relu(bn(z) + residual), a ResNet block's tail, the batch statistics as bn_relu_train_op
// (same return values). Its backward is bn_relu_backward_op (relu=false) on the gradient
// masked by y > 0, which is also the residual's gradient (cnnkern/_registrations/bn_relu.py).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_add_relu_train_op(
    const BnReluKernels& kern, const at::Tensor& z, const at::Tensor& residual,
    const c10::optional<at::Tensor>& bn_weight, const c10::optional<at::Tensor>& bn_bias,
    double eps);

// Returns (grad_z, grad_bn_weight, grad_bn_bias); the grads of absent gamma/beta are still
// returned (the sums are computed anyway) and ignored by the caller.
std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_op(
    const BnReluKernels& kern, const at::Tensor& grad_out, const at::Tensor& z,
    const at::Tensor& mean, const at::Tensor& invstd, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, bool relu, c10::optional<double> relu_max);

}  // namespace cnnkern
