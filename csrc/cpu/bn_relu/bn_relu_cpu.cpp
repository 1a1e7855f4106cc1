// CPU kernels of the fused conv + BatchNorm + ReLU training op (ops/bn_relu_ops.h) and its
// table (cpu/register.cpp registers it). Each kernel is one pass over the conv output z; the
// backward's run per plane in vector code per ISA (bn_relu_core.h).
//
// Determinism: the forward's per-channel statistics are owned by one thread and run over the
// images in order, each plane in 8 double lanes (position i goes to lane i % 8) added up at
// the end in a fixed order; the backward's sums are per plane (same lanes) and each channel
// adds its planes in image order. Neither depends on the thread count. The statistics are summed
// about a shift (the channel's first value): var = E[(z-s)^2] - E[z-s]^2 loses nothing to
// cancellation while s is near the mean, which one pass without the shift would.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/bn_relu/bn_relu_core.h"
#include "cpu/bn_relu/bn_relu_cpu.h"
#include "cpu/common/half_via_float32.h"

namespace cnnkern {
namespace {

constexpr int kLanes = 8;

// The BN affine map of the forward's apply pass: a product, then a sum (this file is
// baseline code, which has no FMA to contract them into). The backward's ReLU mask, in
// bn_relu_core_impl.h, relies on z * scale being rounded on its own: see there.
template <typename T>
inline T bn_affine(T z, T scale, T shift) {
  return z * scale + shift;
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

// The apply passes' walk: plane(p, sa, sb, x, y, HW) for each (image, channel) plane p of
// the contiguous NCHW z and out, with its channel's scale and shift, planes split over threads.
template <typename T, typename Plane>
void for_each_plane(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift,
                    at::Tensor& out, const Plane& plane) {
  const int64_t K = z.size(1), HW = z.size(2) * z.size(3);
  const T* zp = z.const_data_ptr<T>();
  const T* a = scale.const_data_ptr<T>();
  const T* b = shift.const_data_ptr<T>();
  T* op = out.mutable_data_ptr<T>();
  at::parallel_for(0, z.size(0) * K, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      plane(p, a[p % K], b[p % K], zp + p * HW, op + p * HW, HW);
  });
}

template <typename T>
void apply_impl(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift,
                const BnActivation& act, at::Tensor& out) {
  for_each_plane<T>(z, scale, shift, out,
                    [&](int64_t, const T sa, const T sb, const T* x, T* y, int64_t HW) {
      if (act.relu && act.has_max) {
        // The clamp branch is taken on p = z * sa >= hi = max - sb, the comparison the
        // backward's mask makes (bn_relu_core_impl.h); min(v, max) keeps y <= max where v
        // rounds past max just below hi.
        const T mx = static_cast<T>(act.max), hi = mx - sb;
        for (int64_t i = 0; i < HW; ++i) {
          const T p = x[i] * sa;
          const T v = p + sb;
          const T r = v < T(0) ? T(0) : v;  // NaN stays NaN, as torch.hardtanh
          y[i] = (p >= hi || r > mx) ? mx : r;
        }
      } else if (act.relu) {
        for (int64_t i = 0; i < HW; ++i) {
          const T v = bn_affine(x[i], sa, sb);
          y[i] = v < T(0) ? T(0) : v;  // NaN stays NaN, as torch.relu
        }
      } else {
        for (int64_t i = 0; i < HW; ++i) y[i] = bn_affine(x[i], sa, sb);
      }
  });
}

// The residual tail of a ResNet block: out = relu(z * scale + shift + residual), one pass
// instead of apply, then the block's `out += identity` and ReLU. The sum rounds as torch's
// unfused sequence does (the BN value first, then the residual added), so the output is
// bitwise torch's add + relu of the same BN output; its backward masks by out > 0.
template <typename T>
void apply_add_relu_impl(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift,
                         const at::Tensor& residual, at::Tensor& out) {
  const T* rp = residual.const_data_ptr<T>();
  for_each_plane<T>(z, scale, shift, out,
                    [&](int64_t p, const T sa, const T sb, const T* x, T* y, int64_t HW) {
    const T* r = rp + p * HW;
    for (int64_t i = 0; i < HW; ++i) {
      const T v = bn_affine(x[i], sa, sb) + r[i];
      y[i] = v < T(0) ? T(0) : v;  // NaN stays NaN, as torch.relu
    }
  });
}

// The backward's work unit is one (image, channel) plane (NCHW) or a block of rows of all
// channels (channels_last), whatever the shape: many channels of tiny planes (32x512x7x7)
// and few channels of big ones (1x64x112x112) both give enough units for every thread. Each
// unit's sums land in their own slot of a buffer, and each channel adds its slots in order,
// so the threading never changes a bit of the result: the units are a function of the
// shape alone.
int64_t units_per_task(int64_t unit_size) {
  constexpr int64_t kMinTask = 16384;  // values per task: less and the scheduling dominates
  return std::max<int64_t>(1, kMinTask / std::max<int64_t>(unit_size, 1));
}

template <typename T>
struct GradArgs {
  int64_t N, K, HW;
  int64_t dy_image;  // NCHW: elements between dy's images (K * HW, or more for a channel slice)
  const T *dy, *z, *scale, *shift, *mean;
  GradArgs(const at::Tensor& dy_, const at::Tensor& z_, const at::Tensor& scale_,
           const at::Tensor& shift_, const at::Tensor& mean_)
      : N(z_.size(0)), K(z_.size(1)), HW(z_.size(2) * z_.size(3)),
        dy_image(dy_.is_contiguous() || N == 1 ? K * HW : dy_.stride(0)),
        dy(dy_.const_data_ptr<T>()), z(z_.const_data_ptr<T>()),
        scale(scale_.const_data_ptr<T>()), shift(shift_.const_data_ptr<T>()),
        mean(mean_.const_data_ptr<T>()) {}
  // dy's plane p = n * K + k (NCHW); z's and gz's is at p * HW.
  const T* dy_plane(int64_t p) const { return dy + (p / K) * dy_image + (p % K) * HW; }
};

// z comes NCHW-contiguous or channels_last (the op keeps channels_last on the CPU); dy in
// z's layout, in NCHW possibly with images further apart (backward_reads_batch_strided).
bool is_channels_last(const at::Tensor& z) { return !z.is_contiguous(); }

// Per-channel sums in double, per plane (NCHW) or per block of rows (channels_last), each
// unit's into its own slot, the slots then added in image / row order.
template <typename T>
void grad_sums_impl(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
                    const at::Tensor& shift, const at::Tensor& mean, const BnActivation& act,
                    at::Tensor& sum_g, at::Tensor& sum_gx) {
  const auto& core = cpu::bn_relu_core<T>(cpu::active_isa(cpu::Family::bn_relu));
  const GradArgs<T> g(dy, z, scale, shift, mean);
  const int64_t K = g.K;
  std::vector<double> s1(K, 0.0), s2(K, 0.0);
  if (!is_channels_last(z)) {
    std::vector<double> part(static_cast<size_t>(2 * g.N * K));
    at::parallel_for(0, g.N * K, units_per_task(g.HW), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t k = p % K;
        core.grad_sums(g.HW, g.dy_plane(p), g.z + p * g.HW, g.scale[k], g.shift[k],
                       static_cast<double>(g.mean[k]), act, &part[2 * p]);
      }
    });
    for (int64_t p = 0; p < g.N * K; ++p) {
      s1[p % K] += part[2 * p];
      s2[p % K] += part[2 * p + 1];
    }
  } else {
    const std::vector<double> m(g.mean, g.mean + K);
    const int64_t rows = g.N * g.HW, per_block = units_per_task(K);
    const int64_t blocks = (rows + per_block - 1) / per_block;
    std::vector<double> part(static_cast<size_t>(blocks * 2 * K), 0.0);
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t r0 = blk * per_block, off = r0 * K;
        core.grad_sums_rows(std::min(per_block, rows - r0), K, g.dy + off, g.z + off, g.scale,
                            g.shift, m.data(), act, &part[blk * 2 * K], &part[blk * 2 * K + K]);
      }
    });
    for (int64_t blk = 0; blk < blocks; ++blk) {
      for (int64_t k = 0; k < K; ++k) {
        s1[k] += part[blk * 2 * K + k];
        s2[k] += part[blk * 2 * K + K + k];
      }
    }
  }
  T* sg = sum_g.mutable_data_ptr<T>();
  T* sgx = sum_gx.mutable_data_ptr<T>();
  for (int64_t k = 0; k < K; ++k) {
    sg[k] = static_cast<T>(s1[k]);
    sgx[k] = static_cast<T>(s2[k]);
  }
}

template <typename T>
void grad_z_impl(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
                 const at::Tensor& shift, const at::Tensor& mean, const at::Tensor& ca,
                 const at::Tensor& cb, const at::Tensor& cc, const BnActivation& act,
                 at::Tensor& gz) {
  const auto& core = cpu::bn_relu_core<T>(cpu::active_isa(cpu::Family::bn_relu));
  const GradArgs<T> g(dy, z, scale, shift, mean);
  const int64_t K = g.K;
  const T* pa = ca.const_data_ptr<T>();
  const T* pb = cb.const_data_ptr<T>();
  const T* pc = cc.const_data_ptr<T>();
  T* out = gz.mutable_data_ptr<T>();
  if (!is_channels_last(z)) {
    at::parallel_for(0, g.N * K, units_per_task(g.HW), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t k = p % K, off = p * g.HW;
        core.grad_z(g.HW, g.dy_plane(p), g.z + off, g.scale[k], g.shift[k], g.mean[k], pa[k], pb[k],
                    pc[k], act, out + off);
      }
    });
  } else {
    at::parallel_for(0, g.N * g.HW, units_per_task(K), [&](int64_t r0, int64_t r1) {
      core.grad_z_rows(r1 - r0, K, g.dy + r0 * K, g.z + r0 * K, g.scale, g.shift, g.mean, pa, pb,
                       pc, act, out + r0 * K);
    });
  }
}

// float16/bfloat16 arrive here as float32 copies (bn_relu_cpu_kernels: via_float32).
void check_cpu_dtype(const at::Tensor& z) {
  TORCH_CHECK(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble,
              "cnnkern.conv_bn_relu: the CPU kernels support float32, float64, float16 and "
              "bfloat16; got ", z.scalar_type());
}

void stats(const at::Tensor& z, double eps, at::Tensor& mean, at::Tensor& var,
           at::Tensor& invstd) {
  check_cpu_dtype(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "cnnkern_bn_stats_cpu",
                             [&] { stats_impl<scalar_t>(z, eps, mean, var, invstd); });
}

void apply(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift,
           const BnActivation& act, at::Tensor& out) {
  check_cpu_dtype(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "cnnkern_bn_apply_cpu",
                             [&] { apply_impl<scalar_t>(z, scale, shift, act, out); });
}

void apply_add_relu(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift,
                    const at::Tensor& residual, at::Tensor& out) {
  // float16/bfloat16 would round the BN value before the add, unlike the float32 fallback of
  // the other kernels; the Python caller runs them unfused instead.
  TORCH_CHECK(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble,
              "cnnkern.bn_add_relu_train: the CPU kernel supports float32 and float64; got ",
              z.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "cnnkern_bn_apply_add_relu_cpu",
                             [&] { apply_add_relu_impl<scalar_t>(z, scale, shift, residual, out); });
}

void grad_sums(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
               const at::Tensor& shift, const at::Tensor& mean, const BnActivation& act,
               at::Tensor& sum_g, at::Tensor& sum_gx) {
  check_cpu_dtype(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "cnnkern_bn_grad_sums_cpu", [&] {
    grad_sums_impl<scalar_t>(dy, z, scale, shift, mean, act, sum_g, sum_gx);
  });
}

void grad_z(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
            const at::Tensor& shift, const at::Tensor& mean, const at::Tensor& a,
            const at::Tensor& b, const at::Tensor& c, const BnActivation& act, at::Tensor& gz) {
  check_cpu_dtype(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "cnnkern_bn_grad_z_cpu", [&] {
    grad_z_impl<scalar_t>(dy, z, scale, shift, mean, a, b, c, act, gz);
  });
}

}  // namespace

const BnReluKernels& bn_relu_cpu_kernels() {
  // float16/bfloat16: statistics and sums from float32 copies of z and dy (the statistics are
  // float32 for them anyway), out and grad_z rounded once (cpu/common/half_via_float32.h).
  using cpu::via_float32;
  static const BnReluKernels k{via_float32<stats>, via_float32<apply>, via_float32<grad_sums>,
                               via_float32<grad_z>, /*backward_reads_channels_last=*/true,
                               /*backward_reads_batch_strided=*/true, apply_add_relu};
  return k;
}

}  // namespace cnnkern
