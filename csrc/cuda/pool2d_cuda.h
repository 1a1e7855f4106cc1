#pragma once
#include "ops/pool2d_ops.h"

namespace cnnkern {
// The CUDA pooling kernels (float32, float64, float16, bfloat16), defined in pool2d_cuda.cpp.
const Pool2dKernels& pool2d_cuda_kernels();
}  // namespace cnnkern
