#pragma once
#include "ops/bn_relu_ops.h"

namespace cnnkern {
// The CUDA kernels of the fused BN+ReLU training op (float32, float64, float16, bfloat16), in
// bn_relu_cuda.cpp.
const BnReluKernels& bn_relu_cuda_kernels();
}  // namespace cnnkern
