#pragma once
// Launcher of the fp32 implicit-GEMM forward on the fp32 GEMM core (conv2d_igemm_fp32.cu;
// index math in core/igemm_fp32_plan.h). Torch-free: raw pointers to contiguous NCHW float32
// data (weights K x C/groups x R x S), a stream. Exact fp32 FMAs (no TF32).

#include <cuda_runtime_api.h>

#include "core/conv2d_problem.h"
#include "core/igemm_fp32_schedule.h"

namespace cnnkern {

// "" when this kernel takes the problem, else why not (the general kernel runs it then).
const char* igemm_fp32_why_not(const Conv2dProblem& p);

// output = conv(input, weight) (+ bias[k]) (clamped at 0 when relu), every element written,
// as schedule `s` of this problem says (igemm32::make_schedule); with s.splits > 1, `workspace` holds
// s.workspace_elems() floats (else it may be null). cudaErrorInvalidValue for a schedule of
// another problem or a missing workspace.
cudaError_t launch_igemm_fp32_forward(const Conv2dProblem& p, const igemm32::Schedule& s,
                                      const float* input, const float* weight, const float* bias,
                                      bool relu, float* output, float* workspace,
                                      cudaStream_t stream);

}  // namespace cnnkern
