#pragma once
// The conv2d op bodies, shared by the CPU and CUDA registrations: argument checks, algorithm
// selection, layout normalisation, then the selected algorithm's kernel. The backend files
// only add what is backend-specific (a device guard on CUDA) and register these for their
// dispatch key.

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <string>

#include "ops/conv2d_algo.h"

namespace cnnkern {

at::Tensor conv2d_op(Backend backend, const at::Tensor& input, const at::Tensor& weight,
                     const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                     c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups,
                     const std::string& algo, bool relu, const Conv2dMath& math);

at::Tensor conv2d_backward_input_op(Backend backend, const at::Tensor& grad_output,
                                    const at::Tensor& weight, c10::IntArrayRef input_size,
                                    c10::IntArrayRef stride, c10::IntArrayRef padding,
                                    c10::IntArrayRef dilation, int64_t groups,
                                    const std::string& algo, const Conv2dMath& math);

at::Tensor conv2d_backward_weight_op(Backend backend, const at::Tensor& grad_output,
                                     const at::Tensor& input, c10::IntArrayRef weight_size,
                                     c10::IntArrayRef stride, c10::IntArrayRef padding,
                                     c10::IntArrayRef dilation, int64_t groups,
                                     const std::string& algo, const Conv2dMath& math);

}  // namespace cnnkern
