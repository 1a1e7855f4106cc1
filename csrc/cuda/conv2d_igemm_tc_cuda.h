#pragma once
// The tensor-core forward inside algo "im2col" (CUDA): whether it takes a problem, what it
// costs in words (explain()), and the at::Tensor glue around launch_igemm_tc_forward.

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <string>

#include "core/conv2d_problem.h"
#include "ops/conv2d_algo.h"

namespace cnnkern {

// "" when im2col's forward runs on the tensor-core kernel (float16/bfloat16, groups 1,
// C % 8 == 0, 32-bit limits), else why it keeps the general implicit-GEMM kernel.
std::string igemm_tc_why_not(const Conv2dProblem& p, at::ScalarType dtype);

// The forward's workspace and, in `what`, which kernel runs and why, with the plan's tile and
// split and the layout copies an NCHW call pays. `channels_last`: the op's input already is.
Conv2dWorkspace igemm_tc_forward_workspace(const Conv2dProblem& p, at::ScalarType dtype);

// input/weight in either memory format (copied to channels_last when they are not: the
// kernel reads NHWC and KRSC); returns the output in channels_last memory format.
at::Tensor igemm_tc_forward(const at::Tensor& input, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias, const Conv2dProblem& p,
                            const Conv2dEpilogue& epi);

}  // namespace cnnkern
