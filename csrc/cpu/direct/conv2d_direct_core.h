#pragma once
// The register-blocked inner kernels of the CPU direct convolution (torch-free).
//
// Every pass is reduced to a "flat correlation" on repacked planes. The repacking (done by
// conv2d_direct.cpp) zero-pads each input plane and, for strides > 1, splits it into its
// stride phases, all planes of one virtual row length `row_len`. Output position (u, v) of a
// virtual output plane then reads element u * row_len + v + off[t] of its channel's packed
// plane through tap t, whatever the padding, stride or dilation: one flat index i and one
// offset per tap. Along i the kernels run whole vectors; the few positions whose column v is
// past the real output width are computed and dropped (forward, grad-input) or masked to
// zero (grad-weight, which sums over positions).
//
// The variants for each instruction set live in conv2d_direct_core_<isa>.cpp (one template,
// conv2d_direct_core_impl.h, compiled per ISA); direct_kernels() picks one at run time.

#include <cstdint>

#include "cpu/common/cpu_isa.h"

namespace cnnkern {
namespace cpu {

// Forward / grad-input: for k < kbn and flat positions i in [i_begin, i_end),
//   out(k, i) = sum_{c < cin} sum_{t < ntaps} w[k * w_kstride + c * w_cstride + woff[t]] * x[c * x_cstride + i + off[t]]
// summed in that order (c outer, t inner, one fused multiply-add each, from zero), so the
// value does not depend on how positions are grouped into tiles, jobs or threads. Position
// i is virtual row u = i / row_len, column v = i % row_len; it is stored, plus bias[k] when
// bias is not null, only when u_lo <= u < u_hi and v_lo <= v < v_hi, at
//   dst[k * dst_kstride + dst_base + u * dst_row + v * dst_col].
// x must be readable (any values) up to tile-width + max(off) elements past the last
// position read for a stored output.
template <typename T>
struct FlatConvJob {
  const T* x;
  int64_t x_cstride;
  int64_t cin;
  const int64_t* off;
  int64_t ntaps;
  const T* w;
  int64_t w_kstride, w_cstride;
  const int64_t* woff;
  int64_t kbn;  // 1 .. DirectKernels::kb
  int64_t i_begin, i_end;
  int64_t row_len;
  int64_t u_lo, u_hi, v_lo, v_hi;
  T* dst;
  int64_t dst_base, dst_kstride, dst_row, dst_col;
  const T* bias;
  bool relu;  // store max(value, 0) (the fused ReLU epilogue; NaN stays NaN)
};

// Grad-weight: for k < kbn, c < cn, t < ntaps,
//   gw[k * gw_kstride + c * gw_cstride + t] =
//     sum_{n < batch} sum_{i < len} go[n * go_nstride + k * go_kstride + i] *
//                                   (x[n * x_nstride + c * x_cstride + i + off[t]] & mask[i])
// over flat positions i of the virtual output plane: grad_output repacked to the row length
// of x, zero in the columns past the real output width, and `mask` (all bits set or zero per
// position) zeroes the input there too, so that an inf or NaN read by a dropped position
// cannot turn 0 * x into NaN. len is a multiple of the vector width.
// The sum runs in vector lanes (i modulo the vector width) in the input precision, in a
// fixed order over n and i, folded into double lanes every 64K positions, and the lanes are
// added at the end. `scratch` and `wide` hold cn * ntaps * kbw * 16 elements each.
template <typename T>
struct FlatWeightGradJob {
  const T* go;
  int64_t go_nstride, go_kstride;
  int64_t kbn;  // 1 .. DirectKernels::kbw
  const T* x;
  int64_t x_nstride, x_cstride;
  int64_t cn;
  const T* mask;
  const int64_t* off;
  int64_t ntaps;
  int64_t batch, len;
  T* gw;
  int64_t gw_kstride, gw_cstride;
  T* scratch;
  double* wide;
};

template <typename T>
struct DirectKernels {
  int64_t kb;       // most output channels one job computes (kbn <= kb)
  int64_t tile;     // flat positions per register tile at kbn == kb (a good job-size unit)
  int64_t vec;      // vector width in elements (x slack must cover it)
  int64_t kbw;      // most output channels one grad-weight job computes
  void (*conv)(const FlatConvJob<T>&);
  void (*weight_grad)(const FlatWeightGradJob<T>&);
};

template <typename T>
const DirectKernels<T>& direct_kernels(Isa isa);

// The per-ISA tables (conv2d_direct_core_<isa>.cpp).
#define CNNKERN_DECLARE_DIRECT_KERNELS(ns)            \
  namespace ns {                                      \
  const DirectKernels<float>& direct_kernels_f32();   \
  const DirectKernels<double>& direct_kernels_f64();  \
  }
CNNKERN_DECLARE_DIRECT_KERNELS(generic)
CNNKERN_DECLARE_DIRECT_KERNELS(avx2)
CNNKERN_DECLARE_DIRECT_KERNELS(avx512)
CNNKERN_DECLARE_DIRECT_KERNELS(avx512_emulated)
#undef CNNKERN_DECLARE_DIRECT_KERNELS

template <>
inline const DirectKernels<float>& direct_kernels<float>(Isa isa) {
  return pick_variant(isa, generic::direct_kernels_f32(), avx2::direct_kernels_f32(),
                      avx512::direct_kernels_f32(), avx512_emulated::direct_kernels_f32());
}
template <>
inline const DirectKernels<double>& direct_kernels<double>(Isa isa) {
  return pick_variant(isa, generic::direct_kernels_f64(), avx2::direct_kernels_f64(),
                      avx512::direct_kernels_f64(), avx512_emulated::direct_kernels_f64());
}

}  // namespace cpu
}  // namespace cnnkern
