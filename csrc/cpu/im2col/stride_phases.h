#pragma once
// An image split into its column stride phases, so that a strided im2col packs contiguous runs.
//
// With column stride sw, tap offset off (= s * dil_w - pad_w) reads input columns
// q * sw + off: every sw-th value of a row. Packing those is a scalar gather per value
// (AVX-512 gathers are no faster), repeated for every tap that reads the value (49 times on a
// 7x7 stem). Split each row once into sw phases,
//   phase ph, column i  =  input column i * sw + ph     (i < Wp = ceil(W / sw)),
// and column q * sw + off is column q + floor(off / sw) of phase off mod sw: each tap's run
// is a contiguous copy (cpu/im2col/im2col_pack.h, ColumnPack::Phases). The split is one pass
// over the image. Torch-free.

#include <cstdint>

#include "core/conv2d_problem.h"
#include "core/int_math.h"
#include "core/pool2d_problem.h"  // floor_div

namespace cnnkern {
namespace cpu {

// Where the split puts each row: channel c, phase ph, row h starts at row(c, ph, h).
struct StridePhases {
  int64_t H = 0, W = 0, sw = 1, Wp = 0;
  int64_t row(int64_t c, int64_t ph, int64_t h) const { return ((c * sw + ph) * H + h) * Wp; }
  int64_t elems(int64_t channels) const { return channels * sw * H * Wp; }
  // Input column x = q * sw + off of a row, read from phase phase(off) at column q + shift(off).
  int64_t phase(int64_t off) const { return off - floor_div(off, sw) * sw; }
  int64_t shift(int64_t off) const { return floor_div(off, sw); }
};

inline StridePhases stride_phases_of(const Conv2dProblem& p) {
  return {p.H, p.W, p.stride_w, ceil_div(p.W, p.stride_w)};
}

// Channels [c0, c1) of `in` (H x W planes, one after another) split into dst (laid out as
// `sp` says, for channel 0 at dst). Phase columns past the row's end (W not a multiple of sw)
// are never read by a tap; they are written as zeros so the buffer holds no stale values.
template <typename S>
void split_stride_phases(const S* in, int64_t c0, int64_t c1, const StridePhases& sp, S* dst) {
  const int64_t H = sp.H, W = sp.W, sw = sp.sw, Wp = sp.Wp;
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t h = 0; h < H; ++h) {
      const S* src = in + (c * H + h) * W;
      if (sw == 2) {  // the common case, a loop the compiler vectorises as a deinterleave
        S* even = dst + sp.row(c, 0, h);
        S* odd = dst + sp.row(c, 1, h);
        const int64_t pairs = W / 2;
        for (int64_t i = 0; i < pairs; ++i) {
          even[i] = src[2 * i];
          odd[i] = src[2 * i + 1];
        }
        if (W % 2 != 0) {
          even[pairs] = src[W - 1];
          odd[pairs] = S(0);
        }
        continue;
      }
      for (int64_t ph = 0; ph < sw; ++ph) {
        S* out = dst + sp.row(c, ph, h);
        for (int64_t i = 0; i < Wp; ++i) {
          const int64_t x = i * sw + ph;
          out[i] = x < W ? src[x] : S(0);
        }
      }
    }
  }
}

// The inverse: channels [c0, c1) of `split` written back as H x W planes into out (grad-input
// accumulates its col2im in the split, contiguous adds, then merges once).
template <typename S>
void merge_stride_phases(const S* split, int64_t c0, int64_t c1, const StridePhases& sp, S* out) {
  const int64_t H = sp.H, W = sp.W, sw = sp.sw;
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t h = 0; h < H; ++h) {
      S* dst = out + (c * H + h) * W;
      for (int64_t ph = 0; ph < sw && ph < W; ++ph) {
        const S* src = split + sp.row(c, ph, h);
        const int64_t n = (W - ph + sw - 1) / sw;  // columns ph, ph + sw, ... below W
        for (int64_t i = 0; i < n; ++i) dst[i * sw + ph] = src[i];
      }
    }
  }
}

}  // namespace cpu
}  // namespace cnnkern
