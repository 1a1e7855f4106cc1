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

// Device workspace (transformed filters, input tiles and GEMM results for one batch chunk).
size_t winograd_workspace_bytes(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input);

// grad_input = false: src = input, dst = output (N x K x P x Q), bias K elements or nullptr.
// grad_input = true: src = grad_output, dst = grad_input (N x C x H x W); bias must be nullptr.
cudaError_t launch_winograd(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input,
                            const void* src, const void* weight, const void* bias, bool relu,
                            void* dst, void* workspace, cudaStream_t stream);

}  // namespace cnnkern
