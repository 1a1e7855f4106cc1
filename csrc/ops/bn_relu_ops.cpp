#include "ops/bn_relu_ops.h"

#include <cmath>

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

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_train_op(
    const BnReluKernels& kern, const at::Tensor& z_, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, double eps, bool relu) {
  check_rank(kOp, "z (the conv output)", z_, 4);
  const int64_t K = z_.size(1);
  check_affine("bn_weight", bn_weight, z_, K);
  check_affine("bn_bias", bn_bias, z_, K);
  TORCH_CHECK(eps > 0, kOp, ": eps must be positive; got ", eps);
  // The kernels run on NCHW; the output keeps z's layout, as F.batch_norm's does.
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
  auto [gamma, beta] = affine(bn_weight, bn_bias, K, opts);
  const at::Tensor scale = gamma.mul(invstd);
  const at::Tensor shift = beta.sub(mean.mul(scale));
  at::Tensor out = at::empty_like(z);
  kern.apply(z, scale, shift, relu, out);
  return {in_memory_format(out, fmt), mean, invstd, var};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_op(
    const BnReluKernels& kern, const at::Tensor& grad_out_, const at::Tensor& z,
    const at::Tensor& mean, const at::Tensor& invstd, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, bool relu) {
  constexpr const char* op = "cnnkern.conv_bn_relu (backward)";
  check_rank(op, "z", z, 4);
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
  const at::Tensor grad_out = grad_out_.contiguous();
  const at::Tensor zc = z.contiguous();
  auto [gamma, beta] = affine(bn_weight, bn_bias, K, opts);
  const at::Tensor scale = gamma.mul(invstd);
  const at::Tensor shift = beta.sub(mean.mul(scale));
  at::Tensor sum_g = at::empty({K}, opts), sum_gx = at::empty({K}, opts);
  at::Tensor gz = at::empty_like(zc);
  if (zc.numel() == 0) {
    sum_g.zero_();
    sum_gx.zero_();
  } else {
    kern.grad_sums(grad_out, zc, scale, shift, mean, relu, sum_g, sum_gx);
    const double M = static_cast<double>(zc.numel() / K);
    // gz = gamma * invstd * (g - sum_g / M - (z - mean) * invstd^2 * sum_gx / M)
    const at::Tensor a = scale;
    const at::Tensor b = scale.neg().mul(invstd).mul(invstd).mul(sum_gx).div(M);
    const at::Tensor c = scale.neg().mul(sum_g).div(M);
    kern.grad_z(grad_out, zc, scale, shift, mean, a, b, c, relu, gz);
  }
  const auto wdtype = (bn_weight.has_value() && bn_weight->defined()) ? bn_weight->scalar_type()
                                                                      : z.scalar_type();
  return {in_memory_format(gz, z.suggest_memory_format()), sum_gx.mul(invstd).to(wdtype),
          sum_g.to(wdtype)};
}

}  // namespace cnnkern
