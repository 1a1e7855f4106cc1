#include "ops/bn_relu_ops.h"

#include <cmath>

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include "ops/checks.h"
#include "ops/layout.h"

namespace cnnkern {

namespace {

constexpr const char* kOp = "cnnkern.conv_bn_relu";

at::ScalarType stats_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// gamma / beta: absent, or K values of the input's dtype on its device (the conv output z
// is called "input" in messages: it has the conv input's dtype and device).
void check_affine(const char* what, const c10::optional<at::Tensor>& t, const at::Tensor& input,
                  int64_t K) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK(t->dim() == 1 && t->numel() == K, kOp, ": ", what, " must have ", K,
              " elements (the conv's out_channels); got size ", sizes_str(t->sizes()));
  check_same_device_dtype(kOp, "input", input, what, *t);
}

// The affine parameters in the stats dtype: gamma (1 when absent) and beta (0 when absent).
std::pair<at::Tensor, at::Tensor> affine(const c10::optional<at::Tensor>& w,
                                         const c10::optional<at::Tensor>& b, int64_t K,
                                         const at::TensorOptions& opts) {
  at::Tensor g = (w.has_value() && w->defined()) ? w->to(opts) : at::ones({K}, opts);
  at::Tensor be = (b.has_value() && b->defined()) ? b->to(opts) : at::zeros({K}, opts);
  return {g, be};
}

// The BN affine map's per-channel scale = gamma * invstd, shift = beta - mean * scale (gamma 1
// and beta 0 when absent), for forward and backward alike: the backward recomputes the ReLU
// mask from z with these values, so both passes must round them the same way. On the CPU a
// plain loop (this file is baseline code: a product, then a difference, never an FMA)
// rounds each step as the at:: ops elsewhere do, without their dispatch, which costs more
// than the loop on small layers.
std::pair<at::Tensor, at::Tensor> scale_shift(const c10::optional<at::Tensor>& w,
                                              const c10::optional<at::Tensor>& b,
                                              const at::Tensor& mean, const at::Tensor& invstd,
                                              const at::TensorOptions& opts) {
  const int64_t K = mean.numel();
  if (!mean.is_cpu()) {
    auto [gamma, beta] = affine(w, b, K, opts);
    at::Tensor scale = gamma.mul(invstd);
    at::Tensor shift = beta.sub(mean.mul(scale));
    return {scale, shift};
  }
  const bool has_w = w.has_value() && w->defined(), has_b = b.has_value() && b->defined();
  const at::Tensor gamma = has_w ? w->to(opts).contiguous() : at::Tensor();
  const at::Tensor beta = has_b ? b->to(opts).contiguous() : at::Tensor();
  const at::Tensor m = mean.contiguous(), iv = invstd.contiguous();
  at::Tensor scale = at::empty({K}, opts), shift = at::empty({K}, opts);
  AT_DISPATCH_FLOATING_TYPES(opts.dtype().toScalarType(), "cnnkern_bn_scale_shift", [&] {
    const scalar_t* g = has_w ? gamma.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* be = has_b ? beta.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    const scalar_t* ip = iv.const_data_ptr<scalar_t>();
    scalar_t* sc = scale.mutable_data_ptr<scalar_t>();
    scalar_t* sh = shift.mutable_data_ptr<scalar_t>();
    for (int64_t k = 0; k < K; ++k) {
      sc[k] = (g ? g[k] : scalar_t(1)) * ip[k];
      sh[k] = (be ? be[k] : scalar_t(0)) - mp[k] * sc[k];
    }
  });
  return {scale, shift};
}

// grad_z's per-channel coefficients (bn_relu_ops.h): a = scale, b = -scale * invstd^2 *
// sum_gx / M, c = -scale * sum_g / M; on the CPU as one loop, for the reason above.
std::tuple<at::Tensor, at::Tensor> grad_z_coefficients(const at::Tensor& scale,
                                                       const at::Tensor& invstd,
                                                       const at::Tensor& sum_g,
                                                       const at::Tensor& sum_gx, double M) {
  if (!scale.is_cpu()) {
    return {scale.neg().mul(invstd).mul(invstd).mul(sum_gx).div(M), scale.neg().mul(sum_g).div(M)};
  }
  const int64_t K = scale.numel();
  at::Tensor b = at::empty({K}, scale.options()), c = at::empty({K}, scale.options());
  const at::Tensor iv = invstd.contiguous();
  AT_DISPATCH_FLOATING_TYPES(scale.scalar_type(), "cnnkern_bn_grad_z_coefficients", [&] {
    const scalar_t* sc = scale.const_data_ptr<scalar_t>();
    const scalar_t* ip = iv.const_data_ptr<scalar_t>();
    const scalar_t* sg = sum_g.const_data_ptr<scalar_t>();
    const scalar_t* sgx = sum_gx.const_data_ptr<scalar_t>();
    scalar_t* bp = b.mutable_data_ptr<scalar_t>();
    scalar_t* cp = c.mutable_data_ptr<scalar_t>();
    const scalar_t m = static_cast<scalar_t>(M);
    for (int64_t k = 0; k < K; ++k) {
      bp[k] = -sc[k] * ip[k] * ip[k] * sgx[k] / m;
      cp[k] = -sc[k] * sg[k] / m;
    }
  });
  return {b, c};
}

// The activation from the ops' (relu, relu_max) arguments, checked: an upper clamp needs the
// ReLU (a clamp-max-only activation has no fused kernel) and a positive, finite bound.
BnActivation activation(const char* op, bool relu, c10::optional<double> relu_max) {
  BnActivation act;
  act.relu = relu;
  if (relu_max.has_value()) {
    TORCH_CHECK(relu, op, ": relu_max needs relu=True (it clamps the ReLU's output); got "
                "relu=False and relu_max=", *relu_max);
    TORCH_CHECK(*relu_max > 0 && std::isfinite(*relu_max), op,
                ": relu_max must be positive and finite; got ", *relu_max);
    act.has_max = true;
    act.max = *relu_max;
  }
  return act;
}

// Whether t (N, K, H, W) is NCHW but for the batch stride: each (image, channel) plane
// contiguous, the planes of an image K in a row, images any distance apart (at least one
// image's worth, so that none overlap). A channel slice of a contiguous tensor is one.
bool contiguous_planes(const at::Tensor& t) {
  const int64_t K = t.size(1), H = t.size(2), W = t.size(3);
  return t.stride(3) == 1 && t.stride(2) == W && t.stride(1) == H * W &&
         t.stride(0) >= K * H * W;
}

}  // namespace

namespace {

// The training forward of both ops: checks, the statistics pass, then `apply_pass(z, scale,
// shift, out)` on the contiguous z. The output keeps z's layout, as F.batch_norm's does.
template <typename ApplyPass>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> train_forward(
    const BnReluKernels& kern, const at::Tensor& z_, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, double eps, const ApplyPass& apply_pass) {
  check_rank(kOp, "z (the conv output)", z_, 4);
  const int64_t K = z_.size(1);
  check_affine("bn_weight", bn_weight, z_, K);
  check_affine("bn_bias", bn_bias, z_, K);
  TORCH_CHECK(eps > 0, kOp, ": eps must be positive; got ", eps);
  const at::MemoryFormat fmt = z_.suggest_memory_format();
  const at::Tensor z = z_.contiguous();
  const int64_t M = z.size(0) * z.size(2) * z.size(3);
  // As F.batch_norm: one value per channel has no variance (an error); an empty batch gives
  // an empty output (mean and variance 0 here, and the caller leaves running stats alone).
  TORCH_CHECK(M != 1, kOp, ": expected more than 1 value per channel when training; got conv "
              "output size ", sizes_str(z.sizes()));
  const auto opts = z.options().dtype(stats_dtype(z.scalar_type()));
  at::Tensor mean = at::empty({K}, opts), var = at::empty({K}, opts);
  at::Tensor invstd = at::empty({K}, opts);
  if (M == 0) {
    mean.zero_();
    var.zero_();
    invstd.fill_(1.0 / std::sqrt(eps));
    return {at::empty(z.sizes(), z.options().memory_format(fmt)), mean, invstd, var};
  }
  kern.stats(z, eps, mean, var, invstd);
  const auto [scale, shift] = scale_shift(bn_weight, bn_bias, mean, invstd, opts);
  at::Tensor out = at::empty_like(z);
  apply_pass(z, scale, shift, out);
  return {in_memory_format(out, fmt), mean, invstd, var};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_train_op(
    const BnReluKernels& kern, const at::Tensor& z, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, double eps, bool relu,
    c10::optional<double> relu_max) {
  const BnActivation act = activation(kOp, relu, relu_max);
  return train_forward(kern, z, bn_weight, bn_bias, eps,
                       [&](const at::Tensor& zc, const at::Tensor& scale, const at::Tensor& shift,
                           at::Tensor& out) { kern.apply(zc, scale, shift, act, out); });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_add_relu_train_op(
    const BnReluKernels& kern, const at::Tensor& z, const at::Tensor& residual,
    const c10::optional<at::Tensor>& bn_weight, const c10::optional<at::Tensor>& bn_bias,
    double eps) {
  constexpr const char* op = "cnnkern.bn_add_relu_train";
  TORCH_CHECK(kern.apply_add_relu != nullptr, op, ": no kernel for ", z.device().type(),
              " tensors (cnnkern.conv_bn_relu with a residual runs bn, add and relu there)");
  check_same_device_dtype(op, "z", z, "residual", residual);
  TORCH_CHECK(residual.sizes() == z.sizes(), op, ": residual must have the size of z (the "
              "conv output) ", sizes_str(z.sizes()), "; got ", sizes_str(residual.sizes()));
  return train_forward(kern, z, bn_weight, bn_bias, eps,
                       [&](const at::Tensor& zc, const at::Tensor& scale, const at::Tensor& shift,
                           at::Tensor& out) {
                         kern.apply_add_relu(zc, scale, shift, residual.contiguous(), out);
                       });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_op(
    const BnReluKernels& kern, const at::Tensor& grad_out_, const at::Tensor& z,
    const at::Tensor& mean, const at::Tensor& invstd, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, bool relu, c10::optional<double> relu_max) {
  constexpr const char* op = "cnnkern.conv_bn_relu (backward)";
  check_rank(op, "z", z, 4);
  const BnActivation act = activation(op, relu, relu_max);
  check_same_device_dtype(op, "grad_out", grad_out_, "z", z);
  TORCH_CHECK(grad_out_.sizes() == z.sizes(), op, ": grad_out must have the size of z ",
              sizes_str(z.sizes()), "; got ", sizes_str(grad_out_.sizes()));
  const int64_t K = z.size(1);
  const auto opts = z.options().dtype(stats_dtype(z.scalar_type()));
  TORCH_CHECK(mean.numel() == K && invstd.numel() == K && mean.scalar_type() == opts.dtype() &&
                  invstd.scalar_type() == opts.dtype(),
              op, ": mean and invstd must have ", K, " elements of ", opts.dtype(), "; got ",
              sizes_str(mean.sizes()), " ", mean.scalar_type(), " and ",
              sizes_str(invstd.sizes()), " ", invstd.scalar_type());
  check_affine("bn_weight", bn_weight, z, K);
  check_affine("bn_bias", bn_bias, z, K);
  // The CPU kernels read channels_last as it is (copying z and grad_out to NCHW and grad_z
  // back would triple the pass's memory traffic); the CUDA ones take NCHW.
  const at::MemoryFormat fmt = z.suggest_memory_format();
  const at::MemoryFormat kernel_fmt =
      kern.backward_reads_channels_last && fmt == at::MemoryFormat::ChannelsLast
          ? fmt
          : at::MemoryFormat::Contiguous;
  const at::Tensor zc = z.contiguous(kernel_fmt);
  const at::Tensor grad_out =
      kern.backward_reads_batch_strided && kernel_fmt == at::MemoryFormat::Contiguous &&
              contiguous_planes(grad_out_)
          ? grad_out_
          : grad_out_.contiguous(kernel_fmt);
  const auto [scale, shift] = scale_shift(bn_weight, bn_bias, mean, invstd, opts);
  at::Tensor sum_g = at::empty({K}, opts), sum_gx = at::empty({K}, opts);
  at::Tensor gz = at::empty_like(zc);
  if (zc.numel() == 0) {
    sum_g.zero_();
    sum_gx.zero_();
  } else {
    kern.grad_sums(grad_out, zc, scale, shift, mean, act, sum_g, sum_gx);
    const double M = static_cast<double>(zc.numel() / K);
    // gz = gamma * invstd * (g - sum_g / M - (z - mean) * invstd^2 * sum_gx / M)
    const auto [b, c] = grad_z_coefficients(scale, invstd, sum_g, sum_gx, M);
    kern.grad_z(grad_out, zc, scale, shift, mean, scale, b, c, act, gz);
  }
  const auto wdtype = (bn_weight.has_value() && bn_weight->defined()) ? bn_weight->scalar_type()
                                                                      : z.scalar_type();
  return {in_memory_format(gz, fmt), sum_gx.mul(invstd).to(wdtype),
          sum_g.to(wdtype)};
}

}  // namespace cnnkern
