#pragma once
// The float32 backward passes on the fp32 GEMM core inside algo "im2col" (CUDA): whether they
// take a problem, what they cost in words (explain()), and the at::Tensor glue
// (conv2d_igemm_fp32_bwd_cuda.cpp). Conditions: core/igemm_fp32_bwd.h.

#include <ATen/core/Tensor.h>

#include <string>

#include "core/conv2d_problem.h"
#include "ops/conv2d_algo.h"

namespace cnnkern {

// "" when im2col's float32 grad-input (grad-weight) runs on the fp32 core: float32, TF32 not
// allowed (TF32 keeps the general kernel's mma path), CNNKERN_IGEMM_SIMT unset (it forces the
// general kernel, for comparison), and the problem mapped; else why not.
std::string igemm_fp32_dgrad_why_not(const Conv2dProblem& p, at::ScalarType dtype,
                                     bool allow_tf32);
std::string igemm_fp32_wgrad_why_not(const Conv2dProblem& p, at::ScalarType dtype,
                                     bool allow_tf32);

// The pass's workspace and, in `what`, which kernel runs (TF32 off) for a float32 problem the
// fp32 core takes; nullopt-like (what == "") otherwise.
Conv2dWorkspace igemm_fp32_backward_workspace(const Conv2dProblem& p, ConvPass pass);

// Contiguous NCHW results (N x C x H x W, resp. K x C/groups x R x S); either memory format in.
at::Tensor igemm_fp32_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                     const Conv2dProblem& p);
at::Tensor igemm_fp32_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                      const Conv2dProblem& p);

}  // namespace cnnkern
