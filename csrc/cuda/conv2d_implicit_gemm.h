#pragma once
// Launchers for the CUDA implicit-GEMM convolution (conv2d_implicit_gemm.cu). Torch-free: raw
// pointers to contiguous NCHW data (weights K x C/groups x R x S), the element type as a tag, a
// stream. Each returns the first failing launch's cudaError_t. Every output element is written
// once (no zero-fill needed); nothing uses atomics, so results are deterministic.
//
// The index math and the tile loop live in core/implicit_gemm.h, which the CPU tests run
// through an emulation of the same loop (tests/internals/test_implicit_gemm_cpu.py).
//
// float32 on the CUDA cores with exact fp32 FMAs, or, when the call allows TF32 (allow_tf32,
// from cnnkern.backends; ignored for other dtypes), on the tensor cores
// (mma.sync.m16n8k8.tf32, operands rounded by cvt.rna.tf32.f32, fp32 accumulators); float64 in
// fp64; float16/bfloat16 on the tensor cores (mma.sync.m16n8k16, fp32 accumulators). The
// environment's CNNKERN_IGEMM_SIMT=1 (a diagnostic switch) keeps every dtype on the SIMT path.

#include <cuda_runtime_api.h>

#include <cstddef>

#include "core/conv2d_problem.h"
#include "cuda/cuda_dtype.h"

namespace cnnkern {

// "" when the implicit-GEMM grids fit this problem, else the reason.
const char* igemm_cuda_why_not(const Conv2dProblem& p);

// bias: K elements or nullptr; relu: clamp the result (after the bias) at 0.
cudaError_t launch_igemm_forward(CudaDType dt, const Conv2dProblem& p, const void* input,
                                 const void* weight, const void* bias, bool relu, void* output,
                                 bool allow_tf32, cudaStream_t stream);
cudaError_t launch_igemm_backward_input(CudaDType dt, const Conv2dProblem& p,
                                        const void* grad_output, const void* weight,
                                        void* grad_input, bool allow_tf32, cudaStream_t stream);
// Bytes of device workspace launch_igemm_backward_weight needs (0: none, pass nullptr).
size_t igemm_backward_weight_workspace_bytes(CudaDType dt, const Conv2dProblem& p);
cudaError_t launch_igemm_backward_weight(CudaDType dt, const Conv2dProblem& p,
                                         const void* grad_output, const void* input,
                                         void* grad_weight, void* workspace, bool allow_tf32,
                                         cudaStream_t stream);

}  // namespace cnnkern
