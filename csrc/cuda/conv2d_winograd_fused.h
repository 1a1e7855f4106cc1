#pragma once
// Launcher of the fused CUDA Winograd convolution (conv2d_winograd_fused.cu): one kernel per
// call does the input transform (in its tile-loading stage), the a*a Winograd-domain GEMMs (in
// registers) and the output transform with bias and ReLU (in its epilogue), reading the
// precomputed transformed filters U of launch_winograd_filter (conv2d_winograd.h). No
// workspace: neither the transformed input V nor the products M touch DRAM. float32,
// float16 and bfloat16 (fp32 transforms and accumulation); float64 stays on the unfused path.
// Torch-free; contiguous NCHW.

#include <cuda_runtime_api.h>

#include "core/conv2d_problem.h"
#include "cuda/cuda_dtype.h"

namespace cnnkern {

// "" when the fused kernel runs this problem (3x3 / stride / dilation are the caller's
// check), else why not (float64, or the grid past CUDA's limits).
const char* winograd_fused_why_not(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input);

// As launch_winograd (same arguments, same U), without the workspace.
cudaError_t launch_winograd_fused(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input,
                                  const void* src, const void* U, const void* bias, bool relu,
                                  void* dst, cudaStream_t stream);

}  // namespace cnnkern
