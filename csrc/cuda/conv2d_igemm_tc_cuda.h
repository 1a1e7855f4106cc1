#pragma once
// The tensor-core kernels inside algo "im2col" (CUDA): whether they take a problem, what
// they cost in words (explain()), and the at::Tensor glue around their launchers (forward:
// conv2d_igemm_tc_cuda.cpp; grad-input and grad-weight: conv2d_igemm_tc_bwd_cuda.cpp).

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <string>

#include "core/conv2d_problem.h"
#include "ops/conv2d_algo.h"

namespace cnnkern {

// cp.async's 16-byte alignment: t in channels_last memory format, copied if it is not, and
// copied again if its data does not start 16-byte aligned.
at::Tensor channels_last_aligned(const at::Tensor& t);

// "" for float16/bfloat16, and float32 when allow_tf32 (the forward's TF32 variant; the
// backward passes keep allow_tf32 false), with tensor cores on (CNNKERN_IGEMM_SIMT unset),
// else why not.
std::string igemm_tc_dtype_why_not(at::ScalarType dtype, bool allow_tf32 = false);

// "" when im2col's forward runs on the tensor-core kernel (float16/bfloat16 with C % 8 == 0,
// or float32 with TF32 allowed and C % 4 == 0; groups 1, 32-bit limits), else why it keeps
// the general implicit-GEMM kernel.
std::string igemm_tc_why_not(const Conv2dProblem& p, at::ScalarType dtype,
                             bool allow_tf32 = false);

// The forward's workspace and, in `what`, which kernel runs and why, with the plan's tile and
// split and the layout copies an NCHW call pays.
Conv2dWorkspace igemm_tc_forward_workspace(const Conv2dProblem& p, at::ScalarType dtype,
                                           bool allow_tf32 = false);

// input/weight in either memory format (copied to channels_last when they are not: the
// kernel reads NHWC and KRSC); returns the output in channels_last memory format.
at::Tensor igemm_tc_forward(const at::Tensor& input, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias, const Conv2dProblem& p,
                            const Conv2dEpilogue& epi);

// "" when im2col's grad-input (grad-weight) runs on the tensor cores, else why it keeps the
// general implicit-GEMM kernel (core/igemm_tc_bwd.h has the conditions).
std::string igemm_tc_dgrad_why_not(const Conv2dProblem& p, at::ScalarType dtype);
std::string igemm_tc_wgrad_why_not(const Conv2dProblem& p, at::ScalarType dtype);

// The backward pass's workspace and, in `what`, which kernel runs and why (for a problem the
// tensor cores do not take: grad-input's general kernel, which needs none).
Conv2dWorkspace igemm_tc_backward_workspace(const Conv2dProblem& p, at::ScalarType dtype,
                                            ConvPass pass);

// Either memory format in; the result (N x C x H x W, resp. K x C x R x S) channels_last.
at::Tensor igemm_tc_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                   const Conv2dProblem& p);
at::Tensor igemm_tc_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                    const Conv2dProblem& p);

}  // namespace cnnkern
