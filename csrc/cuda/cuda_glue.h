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

// The bias as a forward kernel reads it: contiguous, or undefined when there is none. Checked
// against the input's dtype and the K filters (`algo` names the algorithm in the message).
inline at::Tensor checked_bias(const c10::optional<at::Tensor>& bias, const at::Tensor& input,
                               int64_t K, const char* algo) {
  if (!bias.has_value() || !bias->defined()) return at::Tensor();
  TORCH_CHECK(bias->scalar_type() == input.scalar_type() && bias->numel() == K, "conv2d (",
              algo, ", CUDA): bias must have ", K, " elements of dtype ", input.scalar_type(),
              "; got ", bias->numel(), " of ", bias->scalar_type());
  return bias->contiguous();
}

}  // namespace cnnkern
