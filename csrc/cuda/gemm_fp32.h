#pragma once
// Launcher of the fp32 GEMM core (gemm_fp32_core.cuh): a strided batched C[z] = A[z] B[z] in
// float32, every operand described by its strides (core/gemm_fp32_tile.h: GemmDesc). Used by
// the Winograd convolution's Winograd-domain GEMMs. Torch-free.

#include <cuda_runtime_api.h>

#include "core/gemm_fp32_tile.h"

namespace cnnkern {

// "" when the GEMM's grid fits CUDA's limits, else why not.
const char* gemm_fp32_why_not(const gemm32::GemmDesc& d);

// C = A B for every batch, C written in full (zeros where K = 0). The pointers are device
// memory, 4-byte aligned; the operands are read with 16-byte copies where gemm32::vec_ok.
cudaError_t launch_gemm_fp32(const gemm32::GemmDesc& d, const float* a, const float* b, float* c,
                             cudaStream_t stream);

}  // namespace cnnkern
