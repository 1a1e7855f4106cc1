// CUDA pooling kernels, NCHW or channels_last (NHWC) as the problem says (p.channels_last),
// every tensor contiguous in that layout.
//
// Max and average forward (the eval hot path) run pool2d_forward.cuh's kernels: several
// outputs per thread, 16-byte loads and stores where the layout allows, 32-bit index math
// with magic-number division (64-bit when a size does not fit), and no index written when
// none is asked for. The adaptive forward and every backward pass run one thread per output
// element (forward) or grad_input element (backward: a gather over the outputs whose windows
// can contain it: deterministic, no atomics, every element written); thread i takes element
// i in memory order, so in NHWC a warp reads and writes contiguous channels. Their
// per-element work is core/pool2d_element.h, which the tests-only CPU op
// (testing/ops/pool2d_test_ops.cpp) runs against torch on machines without a GPU.

#include "cuda/pool2d_kernels.h"

#include "core/pool2d_element.h"
#include "cuda/kernel_utils.cuh"
#include "cuda/pool2d_forward.cuh"

namespace cnnkern {
namespace {

using namespace cuda_detail;

// Reads through the read-only cache, converted to the accumulator type.
template <class T>
struct GpuLoad {
  __device__ static acc_t<T> load(const T* base, int64_t off) { return ldg_acc(base + off); }
  __device__ static int64_t index(const int64_t* base, int64_t off) { return __ldg(base + off); }
};

template <class T>
__global__ void max_pool2d_backward_kernel(const Pool2dProblem p,
                                           const T* __restrict__ grad_output,
                                           const int64_t* __restrict__ indices,
                                           T* __restrict__ grad_input) {
  const int64_t total = p.input_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count())
    grad_input[i] =
        from_acc<T>(max_pool2d_grad_at<acc_t<T>, GpuLoad<T>>(p, grad_output, indices, i));
}

template <class T>
__global__ void avg_pool2d_backward_kernel(const Pool2dProblem p,
                                           const T* __restrict__ grad_output,
                                           T* __restrict__ grad_input) {
  const int64_t total = p.input_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count())
    grad_input[i] = from_acc<T>(avg_pool2d_grad_at<acc_t<T>, GpuLoad<T>>(p, grad_output, i));
}

template <class T>
__global__ void adaptive_avg_pool2d_forward_kernel(const Pool2dProblem p,
                                                   const T* __restrict__ input,
                                                   T* __restrict__ output) {
  const int64_t total = p.output_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count())
    output[i] = from_acc<T>(adaptive_avg_pool2d_output_at<acc_t<T>, GpuLoad<T>>(p, input, i));
}

template <class T>
__global__ void adaptive_avg_pool2d_backward_kernel(const Pool2dProblem p,
                                                    const T* __restrict__ grad_output,
                                                    T* __restrict__ grad_input) {
  const int64_t total = p.input_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count())
    grad_input[i] =
        from_acc<T>(adaptive_avg_pool2d_grad_at<acc_t<T>, GpuLoad<T>>(p, grad_output, i));
}

// Launches one thread per element of an n-element result (the kernels above loop with a grid
// stride) for the dtype `dt`: launch(tag, blocks) issues the kernel for tag's type.
template <class Launch>
cudaError_t launch_per_element(CudaDType dt, int64_t n, Launch launch) {
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    launch(tag, blocks_for(n));
    return cudaGetLastError();
  });
}

}  // namespace

cudaError_t launch_max_pool2d_forward(CudaDType dt, const Pool2dProblem& p, const void* input,
                                      void* output, int64_t* indices, cudaStream_t stream) {
  if (p.output_numel() == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto* x = static_cast<const T*>(input);
    auto* y = static_cast<T*>(output);
    if (indices == nullptr)  // values only: the kernel that carries no index
      return pool2d_forward::launch<pool2d_forward::MaxPoolValues<T>>(p, x, y, nullptr, stream);
    return pool2d_forward::launch<pool2d_forward::MaxPool<T>>(p, x, y, indices, stream);
  });
}

cudaError_t launch_max_pool2d_backward(CudaDType dt, const Pool2dProblem& p,
                                       const void* grad_output, const int64_t* indices,
                                       void* grad_input, cudaStream_t stream) {
  return launch_per_element(dt, p.input_numel(), [&](auto tag, unsigned blocks) {
    using T = typename decltype(tag)::type;
    max_pool2d_backward_kernel<T><<<blocks, kThreads, 0, stream>>>(
        p, static_cast<const T*>(grad_output), indices, static_cast<T*>(grad_input));
  });
}

cudaError_t launch_avg_pool2d_forward(CudaDType dt, const Pool2dProblem& p, const void* input,
                                      void* output, cudaStream_t stream) {
  if (p.output_numel() == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return pool2d_forward::launch<pool2d_forward::AvgPool<T>>(p, static_cast<const T*>(input),
                                             static_cast<T*>(output), nullptr, stream);
  });
}

cudaError_t launch_avg_pool2d_backward(CudaDType dt, const Pool2dProblem& p,
                                       const void* grad_output, void* grad_input,
                                       cudaStream_t stream) {
  return launch_per_element(dt, p.input_numel(), [&](auto tag, unsigned blocks) {
    using T = typename decltype(tag)::type;
    avg_pool2d_backward_kernel<T><<<blocks, kThreads, 0, stream>>>(
        p, static_cast<const T*>(grad_output), static_cast<T*>(grad_input));
  });
}

cudaError_t launch_adaptive_avg_pool2d_forward(CudaDType dt, const Pool2dProblem& p,
                                               const void* input, void* output,
                                               cudaStream_t stream) {
  return launch_per_element(dt, p.output_numel(), [&](auto tag, unsigned blocks) {
    using T = typename decltype(tag)::type;
    adaptive_avg_pool2d_forward_kernel<T><<<blocks, kThreads, 0, stream>>>(
        p, static_cast<const T*>(input), static_cast<T*>(output));
  });
}

cudaError_t launch_adaptive_avg_pool2d_backward(CudaDType dt, const Pool2dProblem& p,
                                                const void* grad_output, void* grad_input,
                                                cudaStream_t stream) {
  return launch_per_element(dt, p.input_numel(), [&](auto tag, unsigned blocks) {
    using T = typename decltype(tag)::type;
    adaptive_avg_pool2d_backward_kernel<T><<<blocks, kThreads, 0, stream>>>(
        p, static_cast<const T*>(grad_output), static_cast<T*>(grad_input));
  });
}

}  // namespace cnnkern
