// Registers the direct convolution for CUDA and glues at::Tensor to the torch-free launchers
// in conv2d_direct.cu. Inputs arrive contiguous NCHW on the current (guarded) device.

#include <ATen/ops/empty.h>

#include <algorithm>
#include <string>

#include "core/direct_tile.h"
#include "ops/conv2d_algo.h"
#include "cuda/conv2d_direct.h"
#include "cuda/cuda_glue.h"
#include "cuda/device_context.h"

namespace cnnkern {
namespace {

std::string direct_why_not(const Conv2dProblem& p, at::ScalarType dtype) {
  const auto dtypes = cuda_kernel_dtypes();
  if (std::find(dtypes.begin(), dtypes.end(), dtype) == dtypes.end())
    return std::string("direct (CUDA) supports float32, float64, float16 and bfloat16; got ") +
           c10::toString(dtype);
  const char* too_big = direct_tile::int32_why_not(p);
  if (too_big[0] != '\0')
    return std::string("direct (CUDA) indexes within a channel plane in 32 bits; got ") + too_big;
  return "";
}

at::Tensor direct_forward(const at::Tensor& input, const at::Tensor& weight,
                          const c10::optional<at::Tensor>& bias, const Conv2dProblem& p,
                          const Conv2dEpilogue& epi, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor output = at::empty({p.N, p.K, p.P, p.Q}, input.options());
  if (output.numel() == 0) return output;
  CNNKERN_CUDA_CHECK(launch_conv2d_direct_forward(
      cuda_dtype_of(input), p, input.const_data_ptr(), weight.const_data_ptr(),
      bias_data(bias), output.mutable_data_ptr(), epi.relu,
      current_cuda_stream()));
  return output;
}

at::Tensor direct_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                 const Conv2dProblem& p, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor grad_input = at::empty({p.N, p.C, p.H, p.W}, grad_output.options());
  if (grad_input.numel() == 0) return grad_input;
  CNNKERN_CUDA_CHECK(launch_conv2d_direct_backward_input(
      cuda_dtype_of(grad_output), p, grad_output.const_data_ptr(), weight.const_data_ptr(),
      grad_input.mutable_data_ptr(), current_cuda_stream()));
  return grad_input;
}

at::Tensor direct_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                  const Conv2dProblem& p,
                                  const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor grad_weight =
      at::empty({p.K, p.C_per_group(), p.R, p.S}, grad_output.options());
  if (grad_weight.numel() == 0) return grad_weight;
  CNNKERN_CUDA_CHECK(launch_conv2d_direct_backward_weight(
      cuda_dtype_of(grad_output), p, grad_output.const_data_ptr(), input.const_data_ptr(),
      grad_weight.mutable_data_ptr(), current_cuda_stream()));
  return grad_weight;
}

Conv2dWorkspace direct_workspace(const Conv2dProblem& p, at::ScalarType dtype, ConvPass pass) {
  Conv2dWorkspace ws;
  if (pass != ConvPass::Forward) {
    ws.what = "none: each thread sums its outputs straight from the inputs";
    return ws;
  }
  // The plan depends on the accumulator's size (what fits in shared memory).
  const direct_tile::DirectPlan pl = direct_tile::make_plan(p, dtype == at::kDouble ? 8 : 4);
  ws.what = std::string("none: tiles in shared memory, kernel ") +
            direct_tile::variant_name(pl.variant);
  return ws;
}

}  // namespace

CONV2D_REGISTER_ALGO(Backend::CUDA, Conv2dAlgo{"direct", 10, direct_why_not, direct_forward,
                                               direct_backward_input, direct_backward_weight,
                                               direct_workspace});

}  // namespace cnnkern
