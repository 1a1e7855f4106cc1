// Thin glue from the shared pooling op bodies to the torch-free CUDA launchers: the op bodies
// have already checked the arguments, chosen the layout (p.channels_last), made the inputs
// contiguous in it and allocated the outputs in it on the current (guarded) device. The
// backward kernels write every grad_input element (a gather), so it is not zero-filled.

#include "cuda/pool2d_cuda.h"


#include "cuda/cuda_glue.h"
#include "cuda/device_context.h"
#include "cuda/pool2d_kernels.h"

namespace cnnkern {
namespace {

void max_forward(const Pool2dProblem& p, const at::Tensor& input, at::Tensor& output,
                 at::Tensor* indices) {
  if (output.numel() == 0) return;
  CNNKERN_CUDA_CHECK(launch_max_pool2d_forward(
      cuda_dtype_of(input), p, input.const_data_ptr(), output.mutable_data_ptr(),
      indices != nullptr ? indices->mutable_data_ptr<int64_t>() : nullptr,
      current_cuda_stream()));
}

void max_backward(const Pool2dProblem& p, const at::Tensor& grad_output,
                  const at::Tensor& indices, at::Tensor& grad_input) {
  // With no grad_output elements the op body zero-fills grad_input.
  if (grad_input.numel() == 0 || grad_output.numel() == 0) return;
  CNNKERN_CUDA_CHECK(launch_max_pool2d_backward(cuda_dtype_of(grad_output), p,
                                                grad_output.const_data_ptr(),
                                                indices.const_data_ptr<int64_t>(),
                                                grad_input.mutable_data_ptr(),
                                                current_cuda_stream()));
}

void avg_forward(const Pool2dProblem& p, const at::Tensor& input, at::Tensor& output) {
  if (output.numel() == 0) return;
  CNNKERN_CUDA_CHECK(launch_avg_pool2d_forward(cuda_dtype_of(input), p, input.const_data_ptr(),
                                               output.mutable_data_ptr(),
                                               current_cuda_stream()));
}

void avg_backward(const Pool2dProblem& p, const at::Tensor& grad_output,
                  at::Tensor& grad_input) {
  if (grad_input.numel() == 0 || grad_output.numel() == 0) return;
  CNNKERN_CUDA_CHECK(launch_avg_pool2d_backward(cuda_dtype_of(grad_output), p,
                                                grad_output.const_data_ptr(),
                                                grad_input.mutable_data_ptr(),
                                                current_cuda_stream()));
}

void adaptive_avg_forward(const Pool2dProblem& p, const at::Tensor& input, at::Tensor& output) {
  if (output.numel() == 0) return;
  CNNKERN_CUDA_CHECK(launch_adaptive_avg_pool2d_forward(cuda_dtype_of(input), p,
                                                        input.const_data_ptr(),
                                                        output.mutable_data_ptr(),
                                                        current_cuda_stream()));
}

void adaptive_avg_backward(const Pool2dProblem& p, const at::Tensor& grad_output,
                           at::Tensor& grad_input) {
  if (grad_input.numel() == 0 || grad_output.numel() == 0) return;
  CNNKERN_CUDA_CHECK(launch_adaptive_avg_pool2d_backward(cuda_dtype_of(grad_output), p,
                                                         grad_output.const_data_ptr(),
                                                         grad_input.mutable_data_ptr(),
                                                         current_cuda_stream()));
}

// The backward kernels are gathers: no zero-filled grad_input needed.
bool writes_every_grad_input_element(const Pool2dProblem&) { return false; }

}  // namespace

const Pool2dKernels& pool2d_cuda_kernels() {
  static const Pool2dKernels kernels{
      "cuda",
      cuda_kernel_dtypes(),
      &writes_every_grad_input_element,
      &max_forward,
      &max_backward,
      &avg_forward,
      &avg_backward,
      &adaptive_avg_forward,
      &adaptive_avg_backward,
  };
  return kernels;
}

}  // namespace cnnkern
