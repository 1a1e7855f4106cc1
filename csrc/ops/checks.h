#pragma once
// Argument checks shared by both backends' op entry points (host only: uses at::Tensor).
// Each builds a problem struct from the arguments, or fails with a message that names the op,
// the argument and the value. These are the only argument checks: the Python fake kernels
// (cnnkern/_registrations) compute output sizes only, and a compiled call meets these checks
// when it runs (tests/ops/test_errors.py runs every case eagerly and compiled).

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

#include <string>

#include "core/conv2d_problem.h"
#include "core/pool2d_problem.h"

namespace cnnkern {

// `what` is a tensor argument's name; `allowed` the dtypes the backend has kernels for.
void check_floating_dtype(const char* op, const char* what, const at::Tensor& t,
                          c10::ArrayRef<at::ScalarType> allowed);
void check_same_device_dtype(const char* op, const char* what_a, const at::Tensor& a,
                             const char* what_b, const at::Tensor& b);
void check_rank(const char* op, const char* what, const at::Tensor& t, int64_t rank);

// Convolution from sizes (also used by the introspection ops, which take no tensors).
Conv2dProblem make_conv2d_problem(const char* op, c10::IntArrayRef input_size,
                                  c10::IntArrayRef weight_size, c10::IntArrayRef stride,
                                  c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                  int64_t groups);

// Convolution forward: ranks, devices, dtypes, bias shape, then the sizes as above.
Conv2dProblem make_conv2d_problem(const char* op, const at::Tensor& input,
                                  const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                  c10::IntArrayRef stride, c10::IntArrayRef padding,
                                  c10::IntArrayRef dilation, int64_t groups);

// Checks that `grad_output` has the output shape of `problem`.
void check_grad_output(const char* op, const at::Tensor& grad_output, int64_t N, int64_t C,
                       int64_t P, int64_t Q);

Pool2dProblem make_max_pool2d_problem(const char* op, const at::Tensor& input,
                                      c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                      c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                      bool ceil_mode);
Pool2dProblem make_max_pool2d_problem(const char* op, c10::IntArrayRef input_size,
                                      c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                      c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                      bool ceil_mode);

Pool2dProblem make_avg_pool2d_problem(const char* op, c10::IntArrayRef input_size,
                                      c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                      c10::IntArrayRef padding, bool ceil_mode,
                                      bool count_include_pad,
                                      c10::optional<int64_t> divisor_override);

Pool2dProblem make_adaptive_avg_pool2d_problem(const char* op, c10::IntArrayRef input_size,
                                               c10::IntArrayRef output_size);

std::string sizes_str(c10::IntArrayRef sizes);

}  // namespace cnnkern
