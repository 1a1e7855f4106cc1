#pragma once
// 2-D pooling problems and their window math, shared by the CPU and CUDA kernels.
// Every formula mirrors ATen's (Pool.h, AvgPoolKernel.cpp, AdaptivePooling.h) so results and
// indices match torch exactly.

#include <cstdint>

#include "core/macros.h"

namespace cnnkern {

CNNKERN_HD int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return ((a % b != 0) && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// ATen's pooling_output_shape: with ceil_mode the last window must start inside the input
// or the left padding, never entirely in the right padding.
CNNKERN_HD int64_t pool_output_size(int64_t in, int64_t k, int64_t pad, int64_t stride,
                                    int64_t dil, bool ceil_mode) {
  const int64_t num = in + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = floor_div(num, stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

struct Pool2dProblem {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t P = 0, Q = 0;                // output height/width
  int64_t kh = 1, kw = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;
  bool ceil_mode = false;
  // avg_pool2d only
  bool count_include_pad = true;
  int64_t divisor_override = 0;  // 0: none
  // Memory layout of every tensor of the call (input, output, indices, gradients): NCHW
  // contiguous, or channels_last (NHWC). Chosen by the op bodies from the input
  // (ops/pool2d_ops.cpp); the per-element functions of core/pool2d_element.h read it.
  bool channels_last = false;

  CNNKERN_HD int64_t planes() const { return N * C; }
  CNNKERN_HD int64_t input_numel() const { return N * C * H * W; }
  CNNKERN_HD int64_t output_numel() const { return N * C * P * Q; }
};

// A half-open window [begin, end) along one axis. The window functions are templates over
// the index type: int64_t everywhere, and int32_t in the CUDA kernels' 32-bit paths (taken
// only when every index fits: cuda/pool2d_kernels.cu), where 64-bit math costs two or more
// instructions per operation.
template <class I>
struct WindowOf {
  I begin;
  I end;
};
using Window = WindowOf<int64_t>;

// Max pooling along one axis: the first in-bounds tap of output o's window (the start moves
// forward by whole dilation steps past the padding, as ATen does) and one past the last tap.
// Taps are begin, begin + dil, ... < end.
template <class I>
CNNKERN_HD WindowOf<I> max_pool_window(I o, I in, I k, I stride, I pad, I dil) {
  I begin = o * stride - pad;
  const I last = begin + (k - 1) * dil + 1;
  const I end = last < in ? last : in;
  while (begin < 0) begin += dil;
  return {begin, end};
}

// Average pooling along one axis: the window clipped to the input, plus the window's size
// clipped only to the padded input (what count_include_pad divides by).
template <class I>
struct AvgWindowOf {
  I begin;
  I end;
  I padded_size;
};
using AvgWindow = AvgWindowOf<int64_t>;

template <class I>
CNNKERN_HD AvgWindowOf<I> avg_pool_window(I o, I in, I k, I stride, I pad) {
  I begin = o * stride - pad;
  I end = begin + k;
  if (end > in + pad) end = in + pad;
  const I padded_size = end - begin;
  if (begin < 0) begin = 0;
  if (end > in) end = in;
  return {begin, end, padded_size};
}

// The divisor of one avg-pool output, from its two clipped windows (ATen's rule).
template <class I>
CNNKERN_HD I avg_pool_divisor(const Pool2dProblem& p, const AvgWindowOf<I>& h,
                              const AvgWindowOf<I>& w) {
  if (p.divisor_override != 0) return static_cast<I>(p.divisor_override);
  if (p.count_include_pad) return h.padded_size * w.padded_size;
  return (h.end - h.begin) * (w.end - w.begin);
}

// Adaptive average pooling: output o of out covers input [floor(o*in/out), ceil((o+1)*in/out)).
CNNKERN_HD Window adaptive_window(int64_t o, int64_t in, int64_t out) {
  const int64_t begin = (o * in) / out;
  const int64_t end = ((o + 1) * in + out - 1) / out;
  return {begin, end};
}

}  // namespace cnnkern
