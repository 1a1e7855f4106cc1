#include "ops/checks.h"

#include <c10/util/Exception.h>

#include <sstream>

namespace cnnkern {

std::string sizes_str(c10::IntArrayRef sizes) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < sizes.size(); ++i) os << (i ? ", " : "") << sizes[i];
  os << "]";
  return os.str();
}

namespace {

void check_pair(const char* op, const char* what, c10::IntArrayRef v) {
  TORCH_CHECK(v.size() == 2, op, ": expected ", what, " to have 2 elements; got ", sizes_str(v));
}

void check_positive(const char* op, const char* what, c10::IntArrayRef v) {
  check_pair(op, what, v);
  TORCH_CHECK(v[0] > 0 && v[1] > 0, op, ": ", what, " must be positive; got ", sizes_str(v));
}

void check_non_negative(const char* op, const char* what, c10::IntArrayRef v) {
  check_pair(op, what, v);
  TORCH_CHECK(v[0] >= 0 && v[1] >= 0, op, ": ", what, " must be non-negative; got ",
              sizes_str(v));
}

void check_input_sizes(const char* op, c10::IntArrayRef input_size) {
  TORCH_CHECK(input_size.size() == 4, op,
              ": expected a 4-D input (N, C, H, W); got a ", input_size.size(),
              "-D input of size ", sizes_str(input_size));
  for (int64_t s : input_size)
    TORCH_CHECK(s >= 0, op, ": input sizes must be non-negative; got ", sizes_str(input_size));
  TORCH_CHECK(input_size[1] > 0 && input_size[2] > 0 && input_size[3] > 0, op,
              ": input must have non-zero channels, height and width; got size ",
              sizes_str(input_size));
}

}  // namespace

void check_rank(const char* op, const char* what, const at::Tensor& t, int64_t rank) {
  TORCH_CHECK(t.dim() == rank, op, ": expected ", what, " to be ", rank, "-D; got a ", t.dim(),
              "-D tensor of size ", sizes_str(t.sizes()));
}

void check_floating_dtype(const char* op, const char* what, const at::Tensor& t,
                          c10::ArrayRef<at::ScalarType> allowed) {
  for (at::ScalarType s : allowed)
    if (t.scalar_type() == s) return;
  std::ostringstream os;
  for (size_t i = 0; i < allowed.size(); ++i) os << (i ? ", " : "") << allowed[i];
  TORCH_CHECK(false, op, ": ", what, " has dtype ", t.scalar_type(), ", but the ",
              t.device().type(), " kernels support ", os.str());
}

void check_same_device_dtype(const char* op, const char* what_a, const at::Tensor& a,
                             const char* what_b, const at::Tensor& b) {
  TORCH_CHECK(a.device() == b.device(), op, ": ", what_a, " and ", what_b,
              " must be on the same device; got ", what_a, " on ", a.device(), " and ", what_b,
              " on ", b.device());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), op, ": ", what_a, " and ", what_b,
              " must have the same dtype; got ", what_a, " ", a.scalar_type(), " and ", what_b,
              " ", b.scalar_type());
}

namespace {

// The input size (checked by the caller) into a problem struct: Conv2dProblem and
// Pool2dProblem name these fields alike.
template <class Problem>
void set_input_size(Problem& p, c10::IntArrayRef input_size) {
  p.N = input_size[0];
  p.C = input_size[1];
  p.H = input_size[2];
  p.W = input_size[3];
}

// ... and the window's stride, padding and dilation, checked here.
template <class Problem>
void set_window(const char* op, Problem& p, c10::IntArrayRef input_size, c10::IntArrayRef stride,
                c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  check_positive(op, "stride", stride);
  check_non_negative(op, "padding", padding);
  check_positive(op, "dilation", dilation);
  set_input_size(p, input_size);
  p.stride_h = stride[0];
  p.stride_w = stride[1];
  p.pad_h = padding[0];
  p.pad_w = padding[1];
  p.dil_h = dilation[0];
  p.dil_w = dilation[1];
}

}  // namespace

Conv2dProblem make_conv2d_problem(const char* op, c10::IntArrayRef input_size,
                                  c10::IntArrayRef weight_size, c10::IntArrayRef stride,
                                  c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                  int64_t groups) {
  check_input_sizes(op, input_size);
  TORCH_CHECK(weight_size.size() == 4, op,
              ": expected a 4-D weight (out_channels, in_channels/groups, kH, kW); got a ",
              weight_size.size(), "-D weight of size ", sizes_str(weight_size));
  for (int64_t s : weight_size)
    TORCH_CHECK(s > 0, op, ": weight sizes must be positive; got ", sizes_str(weight_size));
  Conv2dProblem p;
  set_window(op, p, input_size, stride, padding, dilation);
  TORCH_CHECK(groups > 0, op, ": groups must be positive; got ", groups);
  p.K = weight_size[0];
  p.R = weight_size[2];
  p.S = weight_size[3];
  p.groups = groups;

  TORCH_CHECK(p.C == weight_size[1] * groups, op, ": input has ", p.C,
              " channels but weight expects ", weight_size[1] * groups,
              " channels (weight.size(1)=", weight_size[1], " x groups=", groups, ")");
  TORCH_CHECK(p.K % groups == 0, op, ": out_channels=", p.K, " (weight.size(0)) must be divisible by groups=",
              groups);

  const int64_t padded_h = p.H + 2 * p.pad_h, padded_w = p.W + 2 * p.pad_w;
  const int64_t kernel_h = p.dil_h * (p.R - 1) + 1, kernel_w = p.dil_w * (p.S - 1) + 1;
  TORCH_CHECK(padded_h >= kernel_h && padded_w >= kernel_w, op, ": the (dilated) kernel size (",
              kernel_h, " x ", kernel_w, ") is larger than the padded input size (", padded_h,
              " x ", padded_w, ")");
  p.P = conv_output_size(p.H, p.R, p.pad_h, p.stride_h, p.dil_h);
  p.Q = conv_output_size(p.W, p.S, p.pad_w, p.stride_w, p.dil_w);
  return p;
}

Conv2dProblem make_conv2d_problem(const char* op, const at::Tensor& input,
                                  const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                  c10::IntArrayRef stride, c10::IntArrayRef padding,
                                  c10::IntArrayRef dilation, int64_t groups) {
  check_same_device_dtype(op, "input", input, "weight", weight);
  if (bias.has_value()) {
    check_same_device_dtype(op, "input", input, "bias", *bias);
    TORCH_CHECK(bias->dim() == 1 && (weight.dim() < 1 || bias->size(0) == weight.size(0)), op,
                ": expected bias to be 1-D with out_channels=",
                weight.dim() >= 1 ? weight.size(0) : -1, " elements; got bias of size ",
                sizes_str(bias->sizes()));
  }
  return make_conv2d_problem(op, input.sizes(), weight.sizes(), stride, padding, dilation,
                             groups);
}

void check_grad_output(const char* op, const at::Tensor& grad_output, int64_t N, int64_t C,
                       int64_t P, int64_t Q) {
  const std::vector<int64_t> expected = {N, C, P, Q};
  TORCH_CHECK(grad_output.sizes() == c10::IntArrayRef(expected), op,
              ": expected grad_output of size ", sizes_str(expected), "; got ",
              sizes_str(grad_output.sizes()));
}

namespace {

Pool2dProblem make_pool2d_geometry(const char* op, c10::IntArrayRef input_size,
                                   c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                   c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                   bool ceil_mode) {
  check_input_sizes(op, input_size);
  check_positive(op, "kernel_size", kernel_size);
  Pool2dProblem p;
  set_window(op, p, input_size, stride, padding, dilation);
  p.kh = kernel_size[0];
  p.kw = kernel_size[1];
  p.ceil_mode = ceil_mode;
  // ATen's rule (pool2d_shape_check): padding at most half the kernel size, whatever the
  // dilation.
  TORCH_CHECK(2 * p.pad_h <= p.kh && 2 * p.pad_w <= p.kw, op,
              ": padding must be at most half of the kernel size; got padding=",
              sizes_str(padding), ", kernel_size=", sizes_str(kernel_size));
  p.P = pool_output_size(p.H, p.kh, p.pad_h, p.stride_h, p.dil_h, ceil_mode);
  p.Q = pool_output_size(p.W, p.kw, p.pad_w, p.stride_w, p.dil_w, ceil_mode);
  TORCH_CHECK(p.P >= 1 && p.Q >= 1, op, ": output size is too small: input ", p.H, " x ", p.W,
              " gives output ", p.P, " x ", p.Q, " with kernel_size=", sizes_str(kernel_size),
              ", stride=", sizes_str(stride), ", padding=", sizes_str(padding),
              ", dilation=", sizes_str(dilation));
  return p;
}

}  // namespace

Pool2dProblem make_max_pool2d_problem(const char* op, c10::IntArrayRef input_size,
                                      c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                      c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                      bool ceil_mode) {
  return make_pool2d_geometry(op, input_size, kernel_size, stride, padding, dilation, ceil_mode);
}

Pool2dProblem make_max_pool2d_problem(const char* op, const at::Tensor& input,
                                      c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                      c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                      bool ceil_mode) {
  return make_max_pool2d_problem(op, input.sizes(), kernel_size, stride, padding, dilation,
                                 ceil_mode);
}

Pool2dProblem make_avg_pool2d_problem(const char* op, c10::IntArrayRef input_size,
                                      c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                      c10::IntArrayRef padding, bool ceil_mode,
                                      bool count_include_pad,
                                      c10::optional<int64_t> divisor_override) {
  const int64_t one[2] = {1, 1};
  Pool2dProblem p = make_pool2d_geometry(op, input_size, kernel_size, stride, padding,
                                         c10::IntArrayRef(one, 2), ceil_mode);
  if (divisor_override.has_value()) {
    TORCH_CHECK(*divisor_override != 0, op, ": divisor_override must be non-zero; got ",
                *divisor_override);
    p.divisor_override = *divisor_override;
  }
  p.count_include_pad = count_include_pad;
  return p;
}

Pool2dProblem make_adaptive_avg_pool2d_problem(const char* op, c10::IntArrayRef input_size,
                                               c10::IntArrayRef output_size) {
  check_input_sizes(op, input_size);
  check_non_negative(op, "output_size", output_size);  // torch allows 0: an empty output
  Pool2dProblem p;
  set_input_size(p, input_size);
  p.P = output_size[0];
  p.Q = output_size[1];
  return p;
}

}  // namespace cnnkern
