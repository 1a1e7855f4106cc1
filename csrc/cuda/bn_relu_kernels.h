#pragma once
// Launchers for the CUDA kernels of the fused conv + BN + ReLU training op (ops/bn_relu_ops.h
// describes the passes). Torch-free: raw pointers to contiguous N x K x HW data of element type
// `dt`; the per-channel vectors are in the stats type (double for Double, float otherwise).
// Reductions: one block per channel, each thread a fixed strided subset, then a fixed-order
// shared-memory tree: no atomics, bitwise deterministic.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/bn_activation.h"
#include "cuda/cuda_dtype.h"

namespace cnnkern {

struct BnShape {
  int64_t N, K, HW;
};

cudaError_t launch_bn_stats(CudaDType dt, BnShape s, const void* z, double eps, void* mean,
                            void* var, void* invstd, cudaStream_t stream);
cudaError_t launch_bn_apply(CudaDType dt, BnShape s, const void* z, const void* scale,
                            const void* shift, BnActivation act, void* out, cudaStream_t stream);
cudaError_t launch_bn_grad_sums(CudaDType dt, BnShape s, const void* dy, const void* z,
                                const void* scale, const void* shift, const void* mean,
                                BnActivation act, void* sum_g, void* sum_gx, cudaStream_t stream);
cudaError_t launch_bn_grad_z(CudaDType dt, BnShape s, const void* dy, const void* z,
                             const void* scale, const void* shift, const void* mean,
                             const void* a, const void* b, const void* c, BnActivation act,
                             void* gz, cudaStream_t stream);

}  // namespace cnnkern
