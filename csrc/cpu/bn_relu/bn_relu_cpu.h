#pragma once
#include "ops/bn_relu_ops.h"

namespace cnnkern {
// The CPU kernels of the fused BN+ReLU training op (float32, float64; float16/bfloat16 through
// float32 copies), in bn_relu_cpu.cpp.
const BnReluKernels& bn_relu_cpu_kernels();
}  // namespace cnnkern
