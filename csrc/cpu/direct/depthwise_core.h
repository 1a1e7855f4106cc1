#pragma once
// The inner kernels of the CPU direct algorithm's depthwise path (torch-free); the passes
// that call them are in depthwise.cpp.
//
// A depthwise convolution (groups == in_channels) is one small 2-D correlation per
// (image, channel) plane. Each plane is first copied into a thread's scratch, zero-padded
// and, for a column stride sw > 1, split into its sw column phases (phase b holds padded
// columns b, b + sw, ...). Output (u, v) then reads, through tap t, the packed element
//   x[u * row_step + v + off[t]]
// whatever the padding, stride or dilation: the padding is real zeros in the copy (no
// per-tap bounds test anywhere, and an infinite weight meets a padded zero as NaN, as in the
// rest of the direct algorithm), and consecutive v are consecutive elements, so the kernels
// run vectors along the output row. The 3x3 and 5x5 tap counts are compile-time
// specialisations (weights held in registers); other kernel sizes take a runtime tap loop.
//
// The variants per instruction set are depthwise_core_<isa>.cpp (one template,
// depthwise_core_impl.h); depthwise_kernels() picks one at run time, as direct_kernels().

#include <cstdint>

#include "cpu/common/cpu_isa.h"

namespace cnnkern {
namespace cpu {

// Copies one source plane (Hs x Ws, contiguous) into dst as sw phase planes of rows x cols:
// phase b, row y, column x holds the padded element (y, x * sw + b), which is source element
// ((y - top) / uh, (x * sw + b - left) / uw) when both divisions are exact and inside the
// source, zero otherwise. uh, uw > 1 is grad-input's zero insertion between grad_output
// elements (the transposed convolution of a strided one; sw is 1 then); top / left may be
// negative (a crop). Writes only the elements that come from the source: the others are
// zero for every plane of a layout, and the caller zeroes dst once per layout.
template <typename T>
struct DwPackJob {
  const T* src;
  int64_t Hs, Ws;
  T* dst;
  int64_t rows, cols, sw;
  int64_t top, left, uh, uw;
};

// out[u * Q + v] = sum_{t < ntaps} w[t] * x[u * row_step + v + off[t]] for u < P, v < Q,
// summed in tap order from zero (one fused multiply-add per tap), then + bias and the ReLU
// (max(y, 0), NaN stays NaN) when asked. x must be readable up to
// (P - 1) * row_step + max(off) + Q + 4 * vector width elements.
template <typename T>
struct DwConvJob {
  const T* x;
  int64_t row_step;
  const int64_t* off;
  const T* w;
  int64_t ntaps;
  int64_t P, Q;
  T* out;
  bool has_bias;
  T bias;
  bool relu;
};

// sums[t] = sum_{u < P, v < Q} go[u * Q + v] * x[u * row_step + v + off[t]], per tap: in
// vector lanes (v modulo the vector width) in T, lanes past Q masked to zero on both
// operands (so an inf or NaN there cannot leak in), the lanes then added in a fixed order
// (the caller adds the planes' sums in double). x must be readable as for DwConvJob.
template <typename T>
struct DwWeightJob {
  const T* x;
  int64_t row_step;
  const int64_t* off;
  int64_t ntaps;
  const T* go;
  int64_t P, Q;
  double* sums;
};

template <typename T>
struct DepthwiseKernels {
  int64_t vec;  // vector width in elements
  void (*pack)(const DwPackJob<T>&);
  void (*conv)(const DwConvJob<T>&);
  void (*weight_grad)(const DwWeightJob<T>&);
};

// Elements x must hold past the last packed plane for the kernels' vector over-reads.
constexpr int64_t kDepthwiseSlack = 64;

#define CNNKERN_DECLARE_DEPTHWISE_KERNELS(ns)              \
  namespace ns {                                           \
  const DepthwiseKernels<float>& depthwise_kernels_f32();  \
  const DepthwiseKernels<double>& depthwise_kernels_f64(); \
  }
CNNKERN_DECLARE_DEPTHWISE_KERNELS(generic)
CNNKERN_DECLARE_DEPTHWISE_KERNELS(avx2)
#undef CNNKERN_DECLARE_DEPTHWISE_KERNELS

template <typename T>
const DepthwiseKernels<T>& depthwise_kernels(Isa isa);

template <>
inline const DepthwiseKernels<float>& depthwise_kernels<float>(Isa isa) {
  // No AVX-512 variant: one built from the same template measured no faster than this on
  // MobileNetV2's layers (bench/isa_variants.py, issue 16), so it was not kept.
  return uses_avx2(isa) ? avx2::depthwise_kernels_f32() : generic::depthwise_kernels_f32();
}
template <>
inline const DepthwiseKernels<double>& depthwise_kernels<double>(Isa isa) {
  // No AVX-512 variant: one built from the same template measured no faster than this on
  // MobileNetV2's layers (bench/isa_variants.py, issue 16), so it was not kept.
  return uses_avx2(isa) ? avx2::depthwise_kernels_f64() : generic::depthwise_kernels_f64();
}

}  // namespace cpu
}  // namespace cnnkern
