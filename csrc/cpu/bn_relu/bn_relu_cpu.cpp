// CPU kernels of the fused conv + BatchNorm + ReLU training op (ops/bn_relu_ops.h) and its
// table (cpu/register.cpp registers it). Each kernel is one pass over the conv output z.
//
// Determinism: a per-channel reduction is owned by one thread and runs over the images in
// order, each plane in 8 double lanes (position i goes to lane i % 8) added up at the end in
// a fixed order, so the sums do not depend on the thread count. The statistics are summed
// about a shift (the channel's first value): var = E[(z-s)^2] - E[z-s]^2 loses nothing to
// cancellation while s is near the mean, which one pass without the shift would.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>

#include "cpu/bn_relu/bn_relu_cpu.h"

namespace cnnkern {
namespace {

constexpr int kLanes = 8;

// The BN affine map and the ReLU, shared by the forward's apply pass and the backward's mask
// so that both round the same way (same expression, same translation unit and flags).
template <typename T>
inline T bn_affine(T z, T scale, T shift) {
  return z * scale + shift;
}
template <typename T>
inline bool relu_passes(T y) {
  return y > T(0);
}

// Lane sums over one plane: acc[l] += f(x[i]) for i % kLanes == l, then the tail.
template <typename F>
inline void lane_sums(int64_t n, double* acc, F f) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += f(i + l);
  for (int l = 0; i < n; ++i, ++l) acc[l] += f(i);
}

inline double fold(const double* acc) {
  // Fixed pairwise order.
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

template <typename T>
void stats_impl(const at::Tensor& z, double eps, at::Tensor& mean, at::Tensor& var,
                at::Tensor& invstd) {
  using S = T;  // the stats dtype: float for float, double for double
  const int64_t N = z.size(0), K = z.size(1), HW = z.size(2) * z.size(3);
  const T* zp = z.const_data_ptr<T>();
  S* mp = mean.mutable_data_ptr<S>();
  S* vp = var.mutable_data_ptr<S>();
  S* ip = invstd.mutable_data_ptr<S>();
  const double M = static_cast<double>(N * HW);
  at::parallel_for(0, K, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const double s = static_cast<double>(zp[k * HW]);
      double s1[kLanes] = {0}, s2[kLanes] = {0};
      for (int64_t n = 0; n < N; ++n) {
        const T* x = zp + (n * K + k) * HW;
        lane_sums(HW, s1, [&](int64_t i) { return static_cast<double>(x[i]) - s; });
        lane_sums(HW, s2, [&](int64_t i) {
          const double d = static_cast<double>(x[i]) - s;
          return d * d;
        });
      }
      const double d1 = fold(s1) / M;
      const double v = std::max(fold(s2) / M - d1 * d1, 0.0);
      mp[k] = static_cast<S>(s + d1);
      vp[k] = static_cast<S>(v);
      ip[k] = static_cast<S>(1.0 / std::sqrt(v + eps));
    }
  });
}

template <typename T>
void apply_impl(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift, bool relu,
                at::Tensor& out) {
  const int64_t N = z.size(0), K = z.size(1), HW = z.size(2) * z.size(3);
  const T* zp = z.const_data_ptr<T>();
  const T* a = scale.const_data_ptr<T>();
  const T* b = shift.const_data_ptr<T>();
  T* op = out.mutable_data_ptr<T>();
  at::parallel_for(0, N * K, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t k = p % K;
      const T sa = a[k], sb = b[k];
      const T* x = zp + p * HW;
      T* y = op + p * HW;
      if (relu) {
        for (int64_t i = 0; i < HW; ++i) {
          const T v = bn_affine(x[i], sa, sb);
          y[i] = v < T(0) ? T(0) : v;  // NaN stays NaN, as torch.relu
        }
      } else {
        for (int64_t i = 0; i < HW; ++i) y[i] = bn_affine(x[i], sa, sb);
      }
    }
  });
}

template <typename T>
void grad_sums_impl(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
                    const at::Tensor& shift, const at::Tensor& mean, bool relu, at::Tensor& sum_g,
                    at::Tensor& sum_gx) {
  const int64_t N = z.size(0), K = z.size(1), HW = z.size(2) * z.size(3);
  const T* zp = z.const_data_ptr<T>();
  const T* gp = dy.const_data_ptr<T>();
  const T* a = scale.const_data_ptr<T>();
  const T* b = shift.const_data_ptr<T>();
  const T* mp = mean.const_data_ptr<T>();
  T* sg = sum_g.mutable_data_ptr<T>();
  T* sgx = sum_gx.mutable_data_ptr<T>();
  at::parallel_for(0, K, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const T sa = a[k], sb = b[k];
      const double m = static_cast<double>(mp[k]);
      double s1[kLanes] = {0}, s2[kLanes] = {0};
      for (int64_t n = 0; n < N; ++n) {
        const T* x = zp + (n * K + k) * HW;
        const T* g = gp + (n * K + k) * HW;
        auto gval = [&](int64_t i) -> double {
          if (relu && !relu_passes(bn_affine(x[i], sa, sb))) return 0.0;
          return static_cast<double>(g[i]);
        };
        lane_sums(HW, s1, gval);
        lane_sums(HW, s2, [&](int64_t i) { return gval(i) * (static_cast<double>(x[i]) - m); });
      }
      sg[k] = static_cast<T>(fold(s1));
      sgx[k] = static_cast<T>(fold(s2));
    }
  });
}

// The plane walk (one (image, channel) plane per step, its per-channel values read once) is
// apply_impl's, written out again on purpose: each loop reads its own per-channel tensors,
// and a shared walker would hide the one line that differs.
template <typename T>
void grad_z_impl(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
                 const at::Tensor& shift, const at::Tensor& mean, const at::Tensor& ca,
                 const at::Tensor& cb, const at::Tensor& cc, bool relu, at::Tensor& gz) {
  const int64_t N = z.size(0), K = z.size(1), HW = z.size(2) * z.size(3);
  const T* zp = z.const_data_ptr<T>();
  const T* gp = dy.const_data_ptr<T>();
  const T* a = scale.const_data_ptr<T>();
  const T* b = shift.const_data_ptr<T>();
  const T* mp = mean.const_data_ptr<T>();
  const T* pa = ca.const_data_ptr<T>();
  const T* pb = cb.const_data_ptr<T>();
  const T* pc = cc.const_data_ptr<T>();
  T* out = gz.mutable_data_ptr<T>();
  at::parallel_for(0, N * K, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t k = p % K;
      const T sa = a[k], sb = b[k], m = mp[k], A = pa[k], B = pb[k], C = pc[k];
      const T* x = zp + p * HW;
      const T* g = gp + p * HW;
      T* o = out + p * HW;
      for (int64_t i = 0; i < HW; ++i) {
        const T gi = (!relu || relu_passes(bn_affine(x[i], sa, sb))) ? g[i] : T(0);
        o[i] = gi * A + (x[i] - m) * B + C;
      }
    }
  });
}

void check_cpu_dtype(const at::Tensor& z) {
  TORCH_CHECK(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble,
              "cnnkern.conv_bn_relu: the CPU kernels support float32 and float64; got ",
              z.scalar_type());
}

void stats(const at::Tensor& z, double eps, at::Tensor& mean, at::Tensor& var,
           at::Tensor& invstd) {
  check_cpu_dtype(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "cnnkern_bn_stats_cpu",
                             [&] { stats_impl<scalar_t>(z, eps, mean, var, invstd); });
}

void apply(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift, bool relu,
           at::Tensor& out) {
  check_cpu_dtype(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "cnnkern_bn_apply_cpu",
                             [&] { apply_impl<scalar_t>(z, scale, shift, relu, out); });
}

void grad_sums(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
               const at::Tensor& shift, const at::Tensor& mean, bool relu, at::Tensor& sum_g,
               at::Tensor& sum_gx) {
  check_cpu_dtype(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "cnnkern_bn_grad_sums_cpu", [&] {
    grad_sums_impl<scalar_t>(dy, z, scale, shift, mean, relu, sum_g, sum_gx);
  });
}

void grad_z(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
            const at::Tensor& shift, const at::Tensor& mean, const at::Tensor& a,
            const at::Tensor& b, const at::Tensor& c, bool relu, at::Tensor& gz) {
  check_cpu_dtype(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "cnnkern_bn_grad_z_cpu", [&] {
    grad_z_impl<scalar_t>(dy, z, scale, shift, mean, a, b, c, relu, gz);
  });
}

}  // namespace

const BnReluKernels& bn_relu_cpu_kernels() {
  static const BnReluKernels k{stats, apply, grad_sums, grad_z};
  return k;
}

}  // namespace cnnkern
