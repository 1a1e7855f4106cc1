#pragma once
// Launchers for the CUDA direct convolution (conv2d_direct.cu). Torch-free: raw pointers to
// contiguous NCHW data (weights K x C/groups x R x S), the element type as a tag, a stream.
// Each returns the launch's cudaError_t. Every output element is written (no zero-fill needed);
// nothing uses atomics, so results are deterministic.

#include <cuda_runtime_api.h>

#include "core/conv2d_problem.h"
#include "cuda/cuda_dtype.h"

namespace cnnkern {

// bias: K elements, or nullptr. relu: store max(out, 0) (the fused ReLU epilogue).
cudaError_t launch_conv2d_direct_forward(CudaDType dt, const Conv2dProblem& p, const void* input,
                                         const void* weight, const void* bias, void* output,
                                         bool relu, cudaStream_t stream);
cudaError_t launch_conv2d_direct_backward_input(CudaDType dt, const Conv2dProblem& p,
                                                const void* grad_output, const void* weight,
                                                void* grad_input, cudaStream_t stream);
cudaError_t launch_conv2d_direct_backward_weight(CudaDType dt, const Conv2dProblem& p,
                                                 const void* grad_output, const void* input,
                                                 void* grad_weight, cudaStream_t stream);

}  // namespace cnnkern
