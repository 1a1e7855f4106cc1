// CUDA pooling kernels (NCHW, contiguous). One thread per output element for the forward
// passes, one thread per grad_input element for the backward passes (a gather over the
// outputs whose windows can contain it: deterministic, no atomics). Window math comes from
// common/pool2d_problem.h, the same functions the CPU kernels use, so both mirror ATen.

#include "cuda/pool2d_kernels.h"

#include "cuda/kernel_utils.cuh"

namespace cnnkern {
namespace {

using namespace cuda_detail;

// Outputs o in [0, out) whose window [o*stride - pad, o*stride - pad + span) contains input
// position i (ATen's p_start / p_end). i + pad >= 0 always.
__device__ __forceinline__ Window outputs_covering(int64_t i, int64_t pad, int64_t span,
                                                   int64_t stride, int64_t out) {
  const int64_t x = i + pad;
  const int64_t begin = x < span ? 0 : (x - span) / stride + 1;
  const int64_t end = x / stride + 1;
  return {begin, end < out ? end : out};
}

template <class T>
__global__ void max_pool2d_forward_kernel(const Pool2dProblem p, const T* __restrict__ input,
                                          T* __restrict__ output, int64_t* __restrict__ indices) {
  using A = acc_t<T>;
  const int64_t total = p.output_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count()) {
    const int64_t q = i % p.Q;
    const int64_t oh = (i / p.Q) % p.P;
    const int64_t plane = i / (p.Q * p.P);
    const T* x = input + plane * p.H * p.W;
    const Window wh = max_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h, p.dil_h);
    const Window ww = max_pool_window(q, p.W, p.kw, p.stride_w, p.pad_w, p.dil_w);
    // ATen's rule: start at -inf with the first tap's index; a NaN always wins (the last one).
    A maxval = neg_inf(A{});
    int64_t maxidx = wh.begin * p.W + ww.begin;
    for (int64_t h = wh.begin; h < wh.end; h += p.dil_h) {
      for (int64_t w = ww.begin; w < ww.end; w += p.dil_w) {
        const A v = to_acc(x[h * p.W + w]);
        if (v > maxval || isnan(v)) {
          maxval = v;
          maxidx = h * p.W + w;
        }
      }
    }
    output[i] = from_acc<T>(maxval);
    indices[i] = maxidx;
  }
}

template <class T>
__global__ void max_pool2d_backward_kernel(const Pool2dProblem p,
                                           const T* __restrict__ grad_output,
                                           const int64_t* __restrict__ indices,
                                           T* __restrict__ grad_input) {
  using A = acc_t<T>;
  const int64_t total = p.input_numel();
  const int64_t span_h = (p.kh - 1) * p.dil_h + 1;
  const int64_t span_w = (p.kw - 1) * p.dil_w + 1;
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count()) {
    const int64_t w = i % p.W;
    const int64_t h = (i / p.W) % p.H;
    const int64_t plane = i / (p.W * p.H);
    const int64_t target = h * p.W + w;
    const int64_t plane_off = plane * p.P * p.Q;
    const Window rp = outputs_covering(h, p.pad_h, span_h, p.stride_h, p.P);
    const Window rq = outputs_covering(w, p.pad_w, span_w, p.stride_w, p.Q);
    A acc = 0;
    // The stored index decides, so dilation gaps need no special case.
    for (int64_t oh = rp.begin; oh < rp.end; ++oh) {
      for (int64_t q = rq.begin; q < rq.end; ++q) {
        const int64_t o = plane_off + oh * p.Q + q;
        if (indices[o] == target) acc += to_acc(grad_output[o]);
      }
    }
    grad_input[i] = from_acc<T>(acc);
  }
}

template <class T>
__global__ void avg_pool2d_forward_kernel(const Pool2dProblem p, const T* __restrict__ input,
                                          T* __restrict__ output) {
  using A = acc_t<T>;
  const int64_t total = p.output_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count()) {
    const int64_t q = i % p.Q;
    const int64_t oh = (i / p.Q) % p.P;
    const int64_t plane = i / (p.Q * p.P);
    const T* x = input + plane * p.H * p.W;
    const AvgWindow wh = avg_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h);
    const AvgWindow ww = avg_pool_window(q, p.W, p.kw, p.stride_w, p.pad_w);
    if (wh.begin >= wh.end || ww.begin >= ww.end) {  // window entirely in padding: ATen gives 0
      output[i] = from_acc<T>(A(0));
      continue;
    }
    A sum = 0;
    for (int64_t h = wh.begin; h < wh.end; ++h)
      for (int64_t w = ww.begin; w < ww.end; ++w) sum += to_acc(x[h * p.W + w]);
    output[i] = from_acc<T>(sum / static_cast<A>(avg_pool_divisor(p, wh, ww)));
  }
}

template <class T>
__global__ void avg_pool2d_backward_kernel(const Pool2dProblem p,
                                           const T* __restrict__ grad_output,
                                           T* __restrict__ grad_input) {
  using A = acc_t<T>;
  const int64_t total = p.input_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count()) {
    const int64_t w = i % p.W;
    const int64_t h = (i / p.W) % p.H;
    const int64_t plane = i / (p.W * p.H);
    const T* go = grad_output + plane * p.P * p.Q;
    const Window rp = outputs_covering(h, p.pad_h, p.kh, p.stride_h, p.P);
    const Window rq = outputs_covering(w, p.pad_w, p.kw, p.stride_w, p.Q);
    A acc = 0;
    for (int64_t oh = rp.begin; oh < rp.end; ++oh) {
      const AvgWindow wh = avg_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h);
      if (h < wh.begin || h >= wh.end) continue;
      for (int64_t q = rq.begin; q < rq.end; ++q) {
        const AvgWindow ww = avg_pool_window(q, p.W, p.kw, p.stride_w, p.pad_w);
        if (w < ww.begin || w >= ww.end) continue;
        acc += to_acc(go[oh * p.Q + q]) / static_cast<A>(avg_pool_divisor(p, wh, ww));
      }
    }
    grad_input[i] = from_acc<T>(acc);
  }
}

template <class T>
__global__ void adaptive_avg_pool2d_forward_kernel(const Pool2dProblem p,
                                                   const T* __restrict__ input,
                                                   T* __restrict__ output) {
  using A = acc_t<T>;
  const int64_t total = p.output_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count()) {
    const int64_t q = i % p.Q;
    const int64_t oh = (i / p.Q) % p.P;
    const int64_t plane = i / (p.Q * p.P);
    const T* x = input + plane * p.H * p.W;
    const Window wh = adaptive_window(oh, p.H, p.P);
    const Window ww = adaptive_window(q, p.W, p.Q);
    A sum = 0;
    for (int64_t h = wh.begin; h < wh.end; ++h)
      for (int64_t w = ww.begin; w < ww.end; ++w) sum += to_acc(x[h * p.W + w]);
    // Two divisions, in ATen's order.
    output[i] = from_acc<T>(sum / static_cast<A>(wh.end - wh.begin) /
                            static_cast<A>(ww.end - ww.begin));
  }
}

template <class T>
__global__ void adaptive_avg_pool2d_backward_kernel(const Pool2dProblem p,
                                                    const T* __restrict__ grad_output,
                                                    T* __restrict__ grad_input) {
  using A = acc_t<T>;
  const int64_t total = p.input_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count()) {
    const int64_t w = i % p.W;
    const int64_t h = (i / p.W) % p.H;
    const int64_t plane = i / (p.W * p.H);
    const T* go = grad_output + plane * p.P * p.Q;
    // The outputs whose adaptive windows contain h are [floor(h*P/H), ceil((h+1)*P/H)):
    // the same formula with the roles of input and output swapped.
    const Window rp = adaptive_window(h, p.P, p.H);
    const Window rq = adaptive_window(w, p.Q, p.W);
    A acc = 0;
    for (int64_t oh = rp.begin; oh < rp.end && oh < p.P; ++oh) {
      const Window wh = adaptive_window(oh, p.H, p.P);
      if (h < wh.begin || h >= wh.end) continue;
      for (int64_t q = rq.begin; q < rq.end && q < p.Q; ++q) {
        const Window ww = adaptive_window(q, p.W, p.Q);
        if (w < ww.begin || w >= ww.end) continue;
        acc += to_acc(go[oh * p.Q + q]) / static_cast<A>(wh.end - wh.begin) /
               static_cast<A>(ww.end - ww.begin);
      }
    }
    grad_input[i] = from_acc<T>(acc);
  }
}

}  // namespace

cudaError_t launch_max_pool2d_forward(CudaDType dt, const Pool2dProblem& p, const void* input,
                                      void* output, int64_t* indices, cudaStream_t stream) {
  const int64_t n = p.output_numel();
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool2d_forward_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        p, static_cast<const T*>(input), static_cast<T*>(output), indices);
    return cudaGetLastError();
  });
}

cudaError_t launch_max_pool2d_backward(CudaDType dt, const Pool2dProblem& p,
                                       const void* grad_output, const int64_t* indices,
                                       void* grad_input, cudaStream_t stream) {
  const int64_t n = p.input_numel();
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool2d_backward_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        p, static_cast<const T*>(grad_output), indices, static_cast<T*>(grad_input));
    return cudaGetLastError();
  });
}

cudaError_t launch_avg_pool2d_forward(CudaDType dt, const Pool2dProblem& p, const void* input,
                                      void* output, cudaStream_t stream) {
  const int64_t n = p.output_numel();
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    avg_pool2d_forward_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        p, static_cast<const T*>(input), static_cast<T*>(output));
    return cudaGetLastError();
  });
}

cudaError_t launch_avg_pool2d_backward(CudaDType dt, const Pool2dProblem& p,
                                       const void* grad_output, void* grad_input,
                                       cudaStream_t stream) {
  const int64_t n = p.input_numel();
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    avg_pool2d_backward_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        p, static_cast<const T*>(grad_output), static_cast<T*>(grad_input));
    return cudaGetLastError();
  });
}

cudaError_t launch_adaptive_avg_pool2d_forward(CudaDType dt, const Pool2dProblem& p,
                                               const void* input, void* output,
                                               cudaStream_t stream) {
  const int64_t n = p.output_numel();
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    adaptive_avg_pool2d_forward_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        p, static_cast<const T*>(input), static_cast<T*>(output));
    return cudaGetLastError();
  });
}

cudaError_t launch_adaptive_avg_pool2d_backward(CudaDType dt, const Pool2dProblem& p,
                                                const void* grad_output, void* grad_input,
                                                cudaStream_t stream) {
  const int64_t n = p.input_numel();
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    adaptive_avg_pool2d_backward_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        p, static_cast<const T*>(grad_output), static_cast<T*>(grad_input));
    return cudaGetLastError();
  });
}

}  // namespace cnnkern
