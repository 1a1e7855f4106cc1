// Direct 2-D convolution on CUDA (NCHW, contiguous, any stride/padding/dilation/groups).
// Simple and exact rather than fast: one thread per output element (forward), one per
// input element (grad-input, a gather), one warp per weight element (grad-weight, a
// fixed-order reduction). No atomics anywhere, so results are deterministic.

#include "cuda/conv2d_direct.h"

#include "cuda/kernel_utils.cuh"

namespace cnnkern {
namespace {

using namespace cuda_detail;

// Consecutive threads take consecutive q, so a warp reads (mostly) one filter: the weight
// loads are broadcasts through the read-only cache and the input loads are coalesced.
template <class T>
__global__ void conv2d_direct_forward_kernel(const Conv2dProblem p, const T* __restrict__ input,
                                             const T* __restrict__ weight,
                                             const T* __restrict__ bias,
                                             T* __restrict__ output, bool relu) {
  using A = acc_t<T>;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group();
  const int64_t HW = p.H * p.W, RS = p.R * p.S;
  const int64_t total = p.output_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count()) {
    const int64_t q = i % p.Q;
    int64_t t = i / p.Q;
    const int64_t op = t % p.P;
    t /= p.P;
    const int64_t k = t % p.K;
    const int64_t n = t / p.K;
    const int64_t g = k / Kg;
    const T* x = input + (n * p.C + g * Cg) * HW;
    const T* wk = weight + k * Cg * RS;
    A acc = 0;
    for (int64_t c = 0; c < Cg; ++c) {
      const T* xc = x + c * HW;
      const T* wc = wk + c * RS;
      for (int64_t r = 0; r < p.R; ++r) {
        const int64_t h = p.in_h(op, r);
        if (h < 0 || h >= p.H) continue;
        for (int64_t s = 0; s < p.S; ++s) {
          const int64_t w = p.in_w(q, s);
          if (w < 0 || w >= p.W) continue;
          acc += to_acc(xc[h * p.W + w]) * ldg_acc(wc + r * p.S + s);
        }
      }
    }
    if (bias != nullptr) acc += ldg_acc(bias + k);
    if (relu && acc < A(0)) acc = A(0);  // the fused ReLU epilogue; NaN stays NaN
    output[i] = from_acc<T>(acc);
  }
}

// Input (h, w) meets output (op, q) through tap (r, s) iff h = op*stride - pad + r*dil,
// i.e. h + pad - r*dil is a non-negative multiple of stride whose quotient is < P.
template <class T>
__global__ void conv2d_direct_backward_input_kernel(const Conv2dProblem p,
                                                    const T* __restrict__ grad_output,
                                                    const T* __restrict__ weight,
                                                    T* __restrict__ grad_input) {
  using A = acc_t<T>;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group();
  const int64_t PQ = p.P * p.Q, CgRS = Cg * p.R * p.S;
  const int64_t total = p.input_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count()) {
    const int64_t w = i % p.W;
    int64_t t = i / p.W;
    const int64_t h = t % p.H;
    t /= p.H;
    const int64_t c = t % p.C;
    const int64_t n = t / p.C;
    const int64_t g = c / Cg;
    const int64_t cl = c - g * Cg;
    const T* go = grad_output + (n * p.K + g * Kg) * PQ;      // + kk*PQ + op*Q + q
    const T* wg = weight + (g * Kg * Cg + cl) * p.R * p.S;   // + kk*CgRS + r*S + s
    A acc = 0;
    for (int64_t r = 0; r < p.R; ++r) {
      const int64_t hh = h + p.pad_h - r * p.dil_h;
      if (hh < 0 || hh % p.stride_h != 0) continue;
      const int64_t op = hh / p.stride_h;
      if (op >= p.P) continue;
      for (int64_t s = 0; s < p.S; ++s) {
        const int64_t ww = w + p.pad_w - s * p.dil_w;
        if (ww < 0 || ww % p.stride_w != 0) continue;
        const int64_t q = ww / p.stride_w;
        if (q >= p.Q) continue;
        const T* gp = go + op * p.Q + q;
        const T* wp = wg + r * p.S + s;
        for (int64_t kk = 0; kk < Kg; ++kk) acc += to_acc(gp[kk * PQ]) * ldg_acc(wp + kk * CgRS);
      }
    }
    grad_input[i] = from_acc<T>(acc);
  }
}

constexpr int kWarp = 32;

// One warp per weight element (k, c, r, s): lane l sums positions j = l, l+32, ... of the
// N*P*Q (n, op, q) positions, then a fixed shuffle tree adds the 32 partial sums.
template <class T>
__global__ void conv2d_direct_backward_weight_kernel(const Conv2dProblem p,
                                                     const T* __restrict__ grad_output,
                                                     const T* __restrict__ input,
                                                     T* __restrict__ grad_weight) {
  using A = acc_t<T>;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group();
  const int64_t PQ = p.P * p.Q, HW = p.H * p.W;
  const int64_t NPQ = p.N * PQ;
  const int64_t total = p.weight_numel();
  const int lane = threadIdx.x % kWarp;
  const int64_t warps_per_block = blockDim.x / kWarp;
  const int64_t warp_id = static_cast<int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / kWarp;
  const int64_t warp_count = static_cast<int64_t>(gridDim.x) * warps_per_block;
  // e depends only on the warp, so the whole warp stays together for the shuffles.
  for (int64_t e = warp_id; e < total; e += warp_count) {
    const int64_t s = e % p.S;
    int64_t t = e / p.S;
    const int64_t r = t % p.R;
    t /= p.R;
    const int64_t cl = t % Cg;
    const int64_t k = t / Cg;
    const int64_t c = (k / Kg) * Cg + cl;
    A acc = 0;
    for (int64_t j = lane; j < NPQ; j += kWarp) {
      const int64_t q = j % p.Q;
      const int64_t op = (j / p.Q) % p.P;
      const int64_t n = j / PQ;
      const int64_t h = p.in_h(op, r);
      const int64_t w = p.in_w(q, s);
      if (h < 0 || h >= p.H || w < 0 || w >= p.W) continue;
      acc += to_acc(grad_output[(n * p.K + k) * PQ + op * p.Q + q]) *
             to_acc(input[(n * p.C + c) * HW + h * p.W + w]);
    }
    for (int off = kWarp / 2; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if (lane == 0) grad_weight[e] = from_acc<T>(acc);
  }
}

}  // namespace

cudaError_t launch_conv2d_direct_forward(CudaDType dt, const Conv2dProblem& p, const void* input,
                                         const void* weight, const void* bias, void* output,
                                         bool relu, cudaStream_t stream) {
  const int64_t n = p.output_numel();
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv2d_direct_forward_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        p, static_cast<const T*>(input), static_cast<const T*>(weight),
        static_cast<const T*>(bias), static_cast<T*>(output), relu);
    return cudaGetLastError();
  });
}

cudaError_t launch_conv2d_direct_backward_input(CudaDType dt, const Conv2dProblem& p,
                                                const void* grad_output, const void* weight,
                                                void* grad_input, cudaStream_t stream) {
  const int64_t n = p.input_numel();
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv2d_direct_backward_input_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        p, static_cast<const T*>(grad_output), static_cast<const T*>(weight),
        static_cast<T*>(grad_input));
    return cudaGetLastError();
  });
}

cudaError_t launch_conv2d_direct_backward_weight(CudaDType dt, const Conv2dProblem& p,
                                                 const void* grad_output, const void* input,
                                                 void* grad_weight, cudaStream_t stream) {
  const int64_t n = p.weight_numel();
  if (n == 0) return cudaSuccess;
  static_assert(kThreads % kWarp == 0, "whole warps per block");
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv2d_direct_backward_weight_kernel<T><<<blocks_for(n, kThreads / kWarp), kThreads, 0, stream>>>(
        p, static_cast<const T*>(grad_output), static_cast<const T*>(input),
        static_cast<T*>(grad_weight));
    return cudaGetLastError();
  });
}

}  // namespace cnnkern
