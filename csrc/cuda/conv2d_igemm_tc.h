#pragma once
// Launcher of the tensor-core implicit-GEMM forward (conv2d_igemm_tc.cu): float16/bfloat16
// (C % 8 == 0), or float32 on the TF32 tensor cores (C % 4 == 0; the caller decides that TF32
// is allowed); channels_last activations, KRSC weights, groups == 1 (core/igemm_tc_plan.h).
// Torch-free: raw pointers, the dtype as a tag, a stream.

#include <cuda_runtime_api.h>

#include "core/conv2d_problem.h"
#include "core/igemm_tc_plan.h"
#include "cuda/cuda_dtype.h"

namespace cnnkern {

// x: N x H x W x C; w: K x R x S x C; bias: K elements or nullptr; out: N x P x Q x K, every
// element written once; relu clamps after the bias. workspace: plan.workspace_elems() floats
// (nullptr when 0). plan: igemm_tc::make_plan with the dtype's element size (4 for Float).
// Returns the first failing launch's error; cudaErrorInvalidValue for a dtype other than
// Half/BFloat16/Float, a problem igemm_tc::why_not refuses, or a plan of the wrong k-tiles.
cudaError_t launch_igemm_tc_forward(CudaDType dt, const Conv2dProblem& p,
                                    const igemm_tc::Plan& plan, const void* x, const void* w,
                                    const void* bias, bool relu, void* out, float* workspace,
                                    cudaStream_t stream);

// The SM count of the current device (the plan's wave size); 132 (H100) if it cannot be read.
int igemm_tc_sm_count();

}  // namespace cnnkern
