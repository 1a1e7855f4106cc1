#pragma once
// The pooling op bodies, shared by the CPU and CUDA registrations. Each backend supplies a
// table of kernels; these functions check the arguments, build the problem, choose the
// layout (channels_last when the input's strides suggest it, as torch does; NCHW otherwise),
// allocate the outputs in that layout and call the backend's kernel on inputs made
// contiguous in it.

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

#include <tuple>

#include "core/pool2d_problem.h"

namespace cnnkern {

// Kernels see tensors of the problem's shapes, all contiguous in the problem's layout
// (p.channels_last: NHWC, else NCHW); outputs are preallocated in that layout.
struct Pool2dKernels {
  const char* backend;  // for messages
  c10::ArrayRef<at::ScalarType> dtypes;
  // Whether the backward kernels add into a zero-filled grad_input for this problem (true),
  // or write every element themselves (false: no zero-filling pass).
  bool (*needs_zeroed_grad_input)(const Pool2dProblem&);
  // indices: nullptr when the caller asked for the values only (max_pool2d, not
  // max_pool2d_with_indices); the kernel then neither writes nor tracks an index.
  void (*max_forward)(const Pool2dProblem&, const at::Tensor& input, at::Tensor& output,
                      at::Tensor* indices);
  void (*max_backward)(const Pool2dProblem&, const at::Tensor& grad_output,
                       const at::Tensor& indices, at::Tensor& grad_input);
  void (*avg_forward)(const Pool2dProblem&, const at::Tensor& input, at::Tensor& output);
  void (*avg_backward)(const Pool2dProblem&, const at::Tensor& grad_output,
                       at::Tensor& grad_input);
  void (*adaptive_avg_forward)(const Pool2dProblem&, const at::Tensor& input,
                               at::Tensor& output);
  void (*adaptive_avg_backward)(const Pool2dProblem&, const at::Tensor& grad_output,
                                at::Tensor& grad_input);
};

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices_op(
    const Pool2dKernels& k, const at::Tensor& input, c10::IntArrayRef kernel_size,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
    bool ceil_mode);

// The values alone: no int64 index tensor is allocated or written (eval, and the forward of
// a max pool whose input needs no gradient).
at::Tensor max_pool2d_op(const Pool2dKernels& k, const at::Tensor& input,
                         c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                         c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode);

at::Tensor max_pool2d_backward_op(const Pool2dKernels& k, const at::Tensor& grad_output,
                                  const at::Tensor& indices, c10::IntArrayRef input_size,
                                  c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                  c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                  bool ceil_mode);

at::Tensor avg_pool2d_op(const Pool2dKernels& k, const at::Tensor& input,
                         c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                         c10::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                         c10::optional<int64_t> divisor_override);

at::Tensor avg_pool2d_backward_op(const Pool2dKernels& k, const at::Tensor& grad_output,
                                  c10::IntArrayRef input_size, c10::IntArrayRef kernel_size,
                                  c10::IntArrayRef stride, c10::IntArrayRef padding,
                                  bool ceil_mode, bool count_include_pad,
                                  c10::optional<int64_t> divisor_override);

at::Tensor adaptive_avg_pool2d_op(const Pool2dKernels& k, const at::Tensor& input,
                                  c10::IntArrayRef output_size);

at::Tensor adaptive_avg_pool2d_backward_op(const Pool2dKernels& k,
                                           const at::Tensor& grad_output,
                                           c10::IntArrayRef input_size);

}  // namespace cnnkern
