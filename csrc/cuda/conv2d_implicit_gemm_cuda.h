#pragma once
// The implicit GEMM's grad-weight pass as an algorithm kernel (ops/conv2d_algo.h), which the
// CUDA Winograd algorithms register as theirs too.

#include <ATen/core/Tensor.h>

#include "core/conv2d_problem.h"
#include "ops/conv2d_algo.h"

namespace cnnkern {

at::Tensor igemm_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                 const Conv2dProblem& p, const Conv2dMath& math);

}  // namespace cnnkern
