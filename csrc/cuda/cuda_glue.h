#pragma once
// Host-side glue between at::Tensor and the torch-free CUDA launchers (used by the .cpp files).

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "cuda/cuda_dtype.h"

namespace cnnkern {

// The dtypes every CUDA kernel here is instantiated for (what CudaDType can name).
inline c10::ArrayRef<at::ScalarType> cuda_kernel_dtypes() {
  static const at::ScalarType kDtypes[] = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16};
  return kDtypes;
}

inline CudaDType cuda_dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return CudaDType::Float;
    case at::kDouble: return CudaDType::Double;
    case at::kHalf: return CudaDType::Half;
    case at::kBFloat16: return CudaDType::BFloat16;
    default:
      TORCH_CHECK(false, "cnnkern CUDA kernels support float32, float64, float16 and bfloat16; got ",
                  t.scalar_type());
  }
}

// The bias's data as a forward kernel reads it, or nullptr when there is none. The op body
// (ops/conv2d_ops.cpp) has checked its size, dtype and device and made it contiguous.
inline const void* bias_data(const c10::optional<at::Tensor>& bias) {
  return bias.has_value() && bias->defined() ? bias->const_data_ptr() : nullptr;
}

}  // namespace cnnkern
