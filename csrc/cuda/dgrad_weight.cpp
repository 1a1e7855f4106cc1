// The weight of grad-input as a forward convolution (dgrad_weight.h).

#include "cuda/dgrad_weight.h"

#include <ATen/ops/flip.h>

namespace cnnkern {

at::Tensor dgrad_weight(const at::Tensor& weight, int64_t groups) {
  const at::Tensor flipped = at::flip(weight, {2, 3});  // contiguous
  if (groups == 1) return flipped.transpose(0, 1);
  const int64_t K = weight.size(0), Cg = weight.size(1), R = weight.size(2), S = weight.size(3);
  return flipped.view({groups, K / groups, Cg, R, S})
      .transpose(1, 2)
      .reshape({groups * Cg, K / groups, R, S});
}

}  // namespace cnnkern
