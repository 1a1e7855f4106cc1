#pragma once
// Launchers for the CUDA pooling kernels (pool2d_kernels.cu). Torch-free: raw pointers to
// data of the problem's shapes, contiguous in its layout (NCHW, or NHWC when
// p.channels_last), the element type as a tag, and a stream.
// Each returns the launch's cudaError_t. Gradients are gathered (one thread per grad_input
// element, no atomics), so results are deterministic and every grad_input element is written.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/pool2d_problem.h"
#include "cuda/cuda_dtype.h"

namespace cnnkern {

// indices: nullptr for the values alone (nothing is written there then).
cudaError_t launch_max_pool2d_forward(CudaDType dt, const Pool2dProblem& p, const void* input,
                                      void* output, int64_t* indices, cudaStream_t stream);
cudaError_t launch_max_pool2d_backward(CudaDType dt, const Pool2dProblem& p,
                                       const void* grad_output, const int64_t* indices,
                                       void* grad_input, cudaStream_t stream);
cudaError_t launch_avg_pool2d_forward(CudaDType dt, const Pool2dProblem& p, const void* input,
                                      void* output, cudaStream_t stream);
cudaError_t launch_avg_pool2d_backward(CudaDType dt, const Pool2dProblem& p,
                                       const void* grad_output, void* grad_input,
                                       cudaStream_t stream);
cudaError_t launch_adaptive_avg_pool2d_forward(CudaDType dt, const Pool2dProblem& p,
                                               const void* input, void* output,
                                               cudaStream_t stream);
cudaError_t launch_adaptive_avg_pool2d_backward(CudaDType dt, const Pool2dProblem& p,
                                                const void* grad_output, void* grad_input,
                                                cudaStream_t stream);

}  // namespace cnnkern
