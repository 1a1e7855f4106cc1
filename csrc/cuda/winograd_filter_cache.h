#pragma once
// The CUDA Winograd convolution's transformed filters U, cached per weight version when
// CNNKERN_WINOGRAD_FILTER_CACHE=1 (read at every call): a model's weights change only when
// trained, so the filter transform (a kernel launch and K x C x 36 floats written for F(4x4))
// need not run on every call. Off by default, because a write through `weight.data` does not
// move the weight's version counter: torch.autograd.gradcheck perturbs its inputs that way (the
// float64 gradcheck of tests/ops/test_cuda_gemm.py fails with the cache on), and so do older
// optimisers and init code. Glue side (touches at::Tensor).

#include <ATen/core/Tensor.h>

#include "core/conv2d_problem.h"

namespace cnnkern {

// U for `weight` (the problem's filters; grad_input: as the turned problem reads them) for
// launch_winograd, on weight's device and current stream. Reused while weight's storage is
// alive at the same offset and torch's version counter for it is unchanged (every in-place
// update through the tensor or a view of it moves the counter); computed afresh otherwise,
// and always for inference tensors, which have no version counter, and whenever the cache is
// off. Known limit with it on: a write through `weight.data` (another version counter) is not
// seen.
at::Tensor winograd_filter(const at::Tensor& weight, int m, const Conv2dProblem& p,
                           bool grad_input);

// Entries kept at most (least recently used dropped first): a ResNet-50 has 16 distinct 3x3
// weights; F(4x4) filters of a 512 x 512 layer take 38 MB.
constexpr int64_t kWinogradFilterCacheEntries = 32;

}  // namespace cnnkern
