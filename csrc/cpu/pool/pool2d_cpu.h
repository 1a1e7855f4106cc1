#pragma once
#include "ops/pool2d_ops.h"

namespace cnnkern {
// The CPU pooling kernels (float32, float64; float16/bfloat16 through float32 copies), defined
// in pool2d_cpu.cpp.
const Pool2dKernels& pool2d_cpu_kernels();
}  // namespace cnnkern
