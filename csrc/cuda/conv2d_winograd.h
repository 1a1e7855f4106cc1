#pragma once
// Launchers for the CUDA Winograd convolution (conv2d_winograd.cu), F(2x2,3x3) and
// F(4x4,3x3): forward, and grad-input as the forward of the turned problem. Torch-free; the
// stages are in core/winograd_gemm.h (emulated on the CPU by the tests). Contiguous NCHW.
// grad-weight is the implicit GEMM's (conv2d_implicit_gemm.h).

#include <cuda_runtime_api.h>

#include <cstddef>

#include "core/conv2d_problem.h"
#include "cuda/cuda_dtype.h"

namespace cnnkern {

// "" when the Winograd grids fit (3x3 / stride / dilation are the caller's check).
const char* winograd_cuda_why_not(int m, const Conv2dProblem& p);

// Device bytes of the transformed filters U (a*a x K x C/groups accumulator elements).
size_t winograd_filter_bytes(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input);

// U from the problem's weight (K x C/groups x 3 x 3), for launch_winograd: the filter transform,
// which depends on the weight alone (cuda/winograd_filter_cache.h keeps it across calls).
cudaError_t launch_winograd_filter(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input,
                                   const void* weight, void* U, cudaStream_t stream);

// Device workspace (input tiles and GEMM results for one batch chunk).
size_t winograd_workspace_bytes(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input);

// grad_input = false: src = input, dst = output (N x K x P x Q), bias K elements or nullptr.
// grad_input = true: src = grad_output, dst = grad_input (N x C x H x W); bias must be nullptr.
// U: launch_winograd_filter's, for the same m, problem and grad_input.
cudaError_t launch_winograd(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input,
                            const void* src, const void* U, const void* bias, bool relu,
                            void* dst, void* workspace, cudaStream_t stream);

}  // namespace cnnkern
