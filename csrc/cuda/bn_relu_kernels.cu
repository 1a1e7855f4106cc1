// CUDA kernels of the fused conv + BN + ReLU training op (see bn_relu_kernels.h).

#include "cuda/bn_relu_kernels.h"

#include "cuda/kernel_utils.cuh"

namespace cnnkern {
namespace {

using namespace cuda_detail;

// The per-channel vectors: double for double data, float otherwise.
template <class T> struct Stats { using type = float; };
template <> struct Stats<double> { using type = double; };
template <class T> using stats_t = typename Stats<T>::type;

constexpr int kReduceThreads = 256;

// Fixed-order tree over the block: thread 0 ends with the sums of all threads' values.
__device__ __forceinline__ void block_sum2(double* sh1, double* sh2, double& a, double& b) {
  const int t = threadIdx.x;
  sh1[t] = a;
  sh2[t] = b;
  __syncthreads();
  for (int w = kReduceThreads / 2; w > 0; w /= 2) {
    if (t < w) {
      sh1[t] += sh1[t + w];
      sh2[t] += sh2[t + w];
    }
    __syncthreads();
  }
  a = sh1[0];
  b = sh2[0];
}

// One thread's walk over a channel's positions (image n, pixel i), kReduceThreads apart. The
// position advances by a quotient and remainder worked once in 32 bits: a 64-bit j / HW in the
// loop compiles to a division call whose saved registers spilled (bench/sass_report.py).
struct ChannelWalk {
  int64_t n, i, dn, di;
  __device__ ChannelWalk(const BnShape& s, int start, int step) {
    if (s.HW <= 0) {  // no positions: the walk starts past the end
      n = s.N, i = 0, dn = 1, di = 0;
    } else if (s.HW > step) {  // start < step < HW: stays in image 0, one image per wrap
      n = 0, i = start, dn = 0, di = step;
    } else {
      const unsigned hw = static_cast<unsigned>(s.HW);
      n = start / hw, i = start % hw, dn = step / hw, di = step % hw;
    }
  }
  __device__ bool more(const BnShape& s) const { return n < s.N; }
  __device__ int64_t offset(const BnShape& s, int64_t k) const { return (n * s.K + k) * s.HW + i; }
  __device__ void next(const BnShape& s) {
    n += dn;
    i += di;
    if (i >= s.HW) i -= s.HW, ++n;  // i, di < HW: one wrap at most
  }
};

// The forward's affine map (and the backward's mask from it): one expression, no contraction
// differences between the two passes (__fmaf_rn-free on purpose: plain mul then add).
template <class S>
__device__ __forceinline__ S bn_affine(S z, S scale, S shift) {
  return __fadd_rn(__fmul_rn(z, scale), shift);
}
__device__ __forceinline__ double bn_affine(double z, double scale, double shift) {
  return __dadd_rn(__dmul_rn(z, scale), shift);
}

template <class T>
__global__ void __launch_bounds__(kReduceThreads)
    bn_stats_kernel(BnShape s, const T* __restrict__ z, double eps, stats_t<T>* mean,
                    stats_t<T>* var, stats_t<T>* invstd) {
  __shared__ double sh1[kReduceThreads], sh2[kReduceThreads];
  const int64_t M = s.N * s.HW;
  for (int64_t k = blockIdx.x; k < s.K; k += gridDim.x) {
    // Shifted sums (about the channel's first value): no cancellation in E[d^2] - E[d]^2.
    const double shift = static_cast<double>(to_acc(z[k * s.HW]));
    double a = 0, b = 0;
    for (ChannelWalk w(s, threadIdx.x, kReduceThreads); w.more(s); w.next(s)) {
      const double d = static_cast<double>(to_acc(z[w.offset(s, k)])) - shift;
      a += d;
      b += d * d;
    }
    block_sum2(sh1, sh2, a, b);
    if (threadIdx.x == 0) {
      const double d1 = a / M;
      double v = b / M - d1 * d1;
      v = v > 0 ? v : 0;
      mean[k] = static_cast<stats_t<T>>(shift + d1);
      var[k] = static_cast<stats_t<T>>(v);
      invstd[k] = static_cast<stats_t<T>>(1.0 / sqrt(v + eps));
    }
    __syncthreads();
  }
}

// The activation's gradient mask on v = bn_affine(z, scale, shift), computed by the same
// inline function as the forward's v (so the same contraction into an FMA, if any): the ReLU
// passes v > 0, the upper clamp v < max (the forward clamps v >= max to max).
template <class S>
__device__ __forceinline__ bool act_passes(S v, const BnActivation& act) {
  if (!act.relu) return true;
  return v > S(0) && (!act.has_max || v < static_cast<S>(act.max));
}

template <class T>
__global__ void bn_apply_kernel(BnShape s, const T* __restrict__ z,
                                const stats_t<T>* __restrict__ scale,
                                const stats_t<T>* __restrict__ shift, BnActivation act,
                                T* __restrict__ out) {
  using S = stats_t<T>;
  const int64_t total = s.N * s.K * s.HW;
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count()) {
    const int64_t k = (i / s.HW) % s.K;
    S y = bn_affine(static_cast<S>(to_acc(z[i])), scale[k], shift[k]);
    if (act.relu && y < S(0)) y = S(0);  // NaN stays NaN, as torch.relu
    if (act.has_max && y >= static_cast<S>(act.max)) y = static_cast<S>(act.max);
    out[i] = from_acc<T>(static_cast<acc_t<T>>(y));
  }
}

template <class T>
__global__ void __launch_bounds__(kReduceThreads)
    bn_grad_sums_kernel(BnShape s, const T* __restrict__ dy, const T* __restrict__ z,
                        const stats_t<T>* __restrict__ scale,
                        const stats_t<T>* __restrict__ shift,
                        const stats_t<T>* __restrict__ mean, BnActivation act, stats_t<T>* sum_g,
                        stats_t<T>* sum_gx) {
  using S = stats_t<T>;
  __shared__ double sh1[kReduceThreads], sh2[kReduceThreads];
  for (int64_t k = blockIdx.x; k < s.K; k += gridDim.x) {
    const S sa = scale[k], sb = shift[k];
    const double m = static_cast<double>(mean[k]);
    double a = 0, b = 0;
    for (ChannelWalk w(s, threadIdx.x, kReduceThreads); w.more(s); w.next(s)) {
      const int64_t e = w.offset(s, k);
      const S zv = static_cast<S>(to_acc(z[e]));
      if (!act_passes(bn_affine(zv, sa, sb), act)) continue;
      const double g = static_cast<double>(to_acc(dy[e]));
      a += g;
      b += g * (static_cast<double>(zv) - m);
    }
    block_sum2(sh1, sh2, a, b);
    if (threadIdx.x == 0) {
      sum_g[k] = static_cast<S>(a);
      sum_gx[k] = static_cast<S>(b);
    }
    __syncthreads();
  }
}

template <class T>
__global__ void bn_grad_z_kernel(BnShape s, const T* __restrict__ dy, const T* __restrict__ z,
                                 const stats_t<T>* __restrict__ scale,
                                 const stats_t<T>* __restrict__ shift,
                                 const stats_t<T>* __restrict__ mean,
                                 const stats_t<T>* __restrict__ ca,
                                 const stats_t<T>* __restrict__ cb,
                                 const stats_t<T>* __restrict__ cc, BnActivation act,
                                 T* __restrict__ gz) {
  using S = stats_t<T>;
  const int64_t total = s.N * s.K * s.HW;
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count()) {
    const int64_t k = (i / s.HW) % s.K;
    const S zv = static_cast<S>(to_acc(z[i]));
    const bool pass = act_passes(bn_affine(zv, scale[k], shift[k]), act);
    const S g = pass ? static_cast<S>(to_acc(dy[i])) : S(0);
    gz[i] = from_acc<T>(static_cast<acc_t<T>>(g * ca[k] + (zv - mean[k]) * cb[k] + cc[k]));
  }
}

unsigned int channel_blocks(int64_t K) {
  return static_cast<unsigned int>(K < kMaxBlocks ? (K > 0 ? K : 1) : kMaxBlocks);
}

}  // namespace

cudaError_t launch_bn_stats(CudaDType dt, BnShape s, const void* z, double eps, void* mean,
                            void* var, void* invstd, cudaStream_t stream) {
  if (s.K == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = stats_t<T>;
    bn_stats_kernel<T><<<channel_blocks(s.K), kReduceThreads, 0, stream>>>(
        s, static_cast<const T*>(z), eps, static_cast<S*>(mean), static_cast<S*>(var),
        static_cast<S*>(invstd));
    return cudaGetLastError();
  });
}

cudaError_t launch_bn_apply(CudaDType dt, BnShape s, const void* z, const void* scale,
                            const void* shift, BnActivation act, void* out, cudaStream_t stream) {
  const int64_t n = s.N * s.K * s.HW;
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = stats_t<T>;
    bn_apply_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        s, static_cast<const T*>(z), static_cast<const S*>(scale), static_cast<const S*>(shift),
        act, static_cast<T*>(out));
    return cudaGetLastError();
  });
}

cudaError_t launch_bn_grad_sums(CudaDType dt, BnShape s, const void* dy, const void* z,
                                const void* scale, const void* shift, const void* mean,
                                BnActivation act, void* sum_g, void* sum_gx, cudaStream_t stream) {
  if (s.K == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = stats_t<T>;
    bn_grad_sums_kernel<T><<<channel_blocks(s.K), kReduceThreads, 0, stream>>>(
        s, static_cast<const T*>(dy), static_cast<const T*>(z), static_cast<const S*>(scale),
        static_cast<const S*>(shift), static_cast<const S*>(mean), act, static_cast<S*>(sum_g),
        static_cast<S*>(sum_gx));
    return cudaGetLastError();
  });
}

cudaError_t launch_bn_grad_z(CudaDType dt, BnShape s, const void* dy, const void* z,
                             const void* scale, const void* shift, const void* mean,
                             const void* a, const void* b, const void* c, BnActivation act,
                             void* gz, cudaStream_t stream) {
  const int64_t n = s.N * s.K * s.HW;
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = stats_t<T>;
    bn_grad_z_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        s, static_cast<const T*>(dy), static_cast<const T*>(z), static_cast<const S*>(scale),
        static_cast<const S*>(shift), static_cast<const S*>(mean), static_cast<const S*>(a),
        static_cast<const S*>(b), static_cast<const S*>(c), act, static_cast<T*>(gz));
    return cudaGetLastError();
  });
}

}  // namespace cnnkern
