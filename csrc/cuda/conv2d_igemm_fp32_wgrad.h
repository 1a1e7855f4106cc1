#pragma once
// Launcher of the float32 grad-weight on the fp32 GEMM core (conv2d_igemm_fp32_wgrad.cu; plan
// and index math in core/igemm_fp32_bwd.h). Torch-free: raw pointers to contiguous NCHW
// float32 data, a stream. Exact fp32 FMAs (no TF32).

#include <cuda_runtime_api.h>

#include "core/conv2d_problem.h"
#include "core/igemm_fp32_bwd.h"

namespace cnnkern {

// grad_weight (K x C/groups x R x S) = the sum over the pixels of grad_output (N x K x P x Q)
// times the input's (N x C x H x W) windows, every element written once. plan:
// igemm32::make_wgrad_plan(p, ...); workspace: plan.workspace_elems(p) floats (nullptr when
// 0). cudaErrorInvalidValue for a problem igemm32::wgrad_why_not refuses or a missing
// workspace; else the first failing launch's error.
cudaError_t launch_igemm_fp32_wgrad(const Conv2dProblem& p, const igemm32::WgradPlan& plan,
                                    const float* grad_output, const float* input,
                                    float* grad_weight, float* workspace, cudaStream_t stream);

}  // namespace cnnkern
