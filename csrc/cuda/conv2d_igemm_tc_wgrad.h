#pragma once
// Launcher of the tensor-core grad-weight (conv2d_igemm_tc_wgrad.cu): float16/bfloat16,
// channels_last input and grad_output, KRSC result, C % 8 == 0, K % 8 == 0, groups == 1
// (core/igemm_tc_bwd.h). Torch-free: raw pointers, the dtype as a tag, a stream.

#include <cuda_runtime_api.h>

#include "core/conv2d_problem.h"
#include "core/igemm_tc_plan.h"
#include "cuda/cuda_dtype.h"

namespace cnnkern {

// grad_output: N x P x Q x K; x: N x H x W x C; grad_weight: K x R x S x C, every element
// written once. plan: igemm_tc::make_wgrad_plan(p, ...); workspace: plan.workspace_elems()
// floats (nullptr when 0). Returns the first failing launch's error; cudaErrorInvalidValue
// for a dtype other than Half/BFloat16 or a problem igemm_tc::wgrad_why_not refuses.
cudaError_t launch_igemm_tc_wgrad(CudaDType dt, const Conv2dProblem& p,
                                  const igemm_tc::Plan& plan, const void* grad_output,
                                  const void* x, void* grad_weight, float* workspace,
                                  cudaStream_t stream);

}  // namespace cnnkern
