#pragma once
// The implicit GEMM's grad-weight pass as an algorithm kernel (ops/conv2d_algo.h), which the
// CUDA Winograd algorithms register as theirs too.

#include <ATen/core/Tensor.h>

#include "core/conv2d_problem.h"
#include "cuda/cuda_dtype.h"
#include "ops/conv2d_algo.h"

namespace cnnkern {

// The CudaDType of a dtype the CUDA kernels take (an error naming it otherwise).
CudaDType cuda_dtype_for(at::ScalarType dtype);

// The implicit GEMM's workspace (registered with it, and for the Winograd grad-weight): the
// split-K partial sums of grad-weight, none in the other passes.
Conv2dWorkspace igemm_workspace(const Conv2dProblem& p, at::ScalarType dtype, ConvPass pass);

at::Tensor igemm_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                 const Conv2dProblem& p, const Conv2dMath& math);

}  // namespace cnnkern
