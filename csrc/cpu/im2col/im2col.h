#pragma once
// im2col / col2im for a tile of output positions (torch-free).
//
// The column matrix of one image and group has a row per filter tap (c, r, s), in weight
// order (c * R + r) * S + s, and a column per output position j = p * Q + q. A tile holds the
// columns j in [j0, j1) of `channels` consecutive input channels; its row stride is j1 - j0.
// Tiles may start and end mid output row, so their size is free of the image width.
//
// For each (c, r, s) and output row, the in-bounds columns are a contiguous q range
// (row_range), so the inner loops are a copy (stride 1) or a strided gather with no
// branches, and the padding is written as zeros around them.

#include <cstdint>
#include <cstring>

#include "core/conv2d_problem.h"
#include "core/row_range.h"
#include "cpu/im2col/stride_phases.h"

namespace cnnkern {
namespace cpu {

namespace im2col_detail {

inline int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Calls f(p, q0, q1, t0) for each output row piece of the tile [j0, j1): positions (p, q)
// for q in [q0, q1) are tile columns t0 + (q - q0).
template <typename F>
void for_each_row_piece(const Conv2dProblem& p, int64_t j0, int64_t j1, const F& f) {
  int64_t j = j0;
  while (j < j1) {
    const int64_t row = j / p.Q, q0 = j % p.Q;
    const int64_t q1 = q0 + (j1 - j) < p.Q ? q0 + (j1 - j) : p.Q;
    f(row, q0, q1, j - j0);
    j += q1 - q0;
  }
}

}  // namespace im2col_detail

// col[((c * R + r) * S + s) * (j1 - j0) + (j - j0)] = input value under tap (r, s) of output
// position j in channel c (0 where the tap falls in the padding), c in [0, channels).
// `in` points at the first channel's H x W plane; planes follow each other. phased: `in` is
// instead their split into column stride phases (split_stride_phases with stride_phases_of(p),
// cpu/im2col/stride_phases.h), so strided rows are copied as contiguous runs.
template <typename T>
void im2col_tile(const T* in, int64_t channels, const Conv2dProblem& p, int64_t j0, int64_t j1,
                 T* col, bool phased = false) {
  using im2col_detail::clamp;
  const int64_t tile = j1 - j0;
  const StridePhases sp = stride_phases_of(p);
  for (int64_t c = 0; c < channels; ++c) {
    const T* plane = in + c * p.H * p.W;
    for (int64_t r = 0; r < p.R; ++r) {
      for (int64_t s = 0; s < p.S; ++s) {
        T* dst = col + ((c * p.R + r) * p.S + s) * tile;
        const RowRange qr = row_range(p.Q, p.W, p.stride_w, p.pad_w, s * p.dil_w);
        im2col_detail::for_each_row_piece(p, j0, j1, [&](int64_t row, int64_t q0, int64_t q1,
                                                         int64_t t0) {
          T* d = dst + t0;  // d[q - q0] is position (row, q), q in [q0, q1)
          const int64_t h = p.in_h(row, r);
          if (h < 0 || h >= p.H) {
            std::memset(d, 0, sizeof(T) * (q1 - q0));
            return;
          }
          // In-bounds columns [a, b) read src[q * step]; the rest is padding.
          const int64_t a = clamp(qr.begin, q0, q1), b = clamp(qr.end, a, q1);
          const int64_t off = qr.offset;
          const T* src = phased ? in + sp.row(c, sp.phase(off), h) + sp.shift(off)
                                : plane + h * p.W + off;
          const int64_t step = phased ? 1 : p.stride_w;
          std::memset(d, 0, sizeof(T) * (a - q0));
          if (step == 1) {
            if (b > a) std::memcpy(d + (a - q0), src + a, sizeof(T) * (b - a));
          } else {
            for (int64_t q = a; q < b; ++q) d[q - q0] = src[q * step];
          }
          std::memset(d + (b - q0), 0, sizeof(T) * (q1 - b));
        });
      }
    }
  }
}

// The adjoint of im2col_tile: grad_in[c] += the tile's columns scattered back to the input
// positions they were read from (padding taps dropped). Taps are added in (r, s, position)
// order, so the result depends only on the tile boundaries, never on threads. phased:
// grad_in is the split of the planes into column stride phases (as im2col_tile's `in`), so
// strided rows are added as contiguous runs; each element gets the same adds in the same order.
template <typename T>
void col2im_tile(const T* col, int64_t channels, const Conv2dProblem& p, int64_t j0,
                 int64_t j1, T* grad_in, bool phased = false) {
  using im2col_detail::clamp;
  const int64_t tile = j1 - j0;
  const StridePhases sp = stride_phases_of(p);
  for (int64_t c = 0; c < channels; ++c) {
    T* plane = grad_in + c * p.H * p.W;
    for (int64_t r = 0; r < p.R; ++r) {
      for (int64_t s = 0; s < p.S; ++s) {
        const T* src = col + ((c * p.R + r) * p.S + s) * tile;
        const RowRange qr = row_range(p.Q, p.W, p.stride_w, p.pad_w, s * p.dil_w);
        im2col_detail::for_each_row_piece(p, j0, j1, [&](int64_t row, int64_t q0, int64_t q1,
                                                         int64_t t0) {
          const int64_t h = p.in_h(row, r);
          if (h < 0 || h >= p.H) return;
          const int64_t a = clamp(qr.begin, q0, q1), b = clamp(qr.end, a, q1);
          const T* sv = src + t0;  // sv[q - q0] is position (row, q), q in [q0, q1)
          const int64_t off = qr.offset;
          // which was read from d[q * step]
          T* d = phased ? grad_in + sp.row(c, sp.phase(off), h) + sp.shift(off)
                        : plane + h * p.W + off;
          const int64_t step = phased ? 1 : p.stride_w;
          if (step == 1) {
            for (int64_t q = a; q < b; ++q) d[q] += sv[q - q0];
          } else {
            for (int64_t q = a; q < b; ++q) d[q * step] += sv[q - q0];
          }
        });
      }
    }
  }
}

}  // namespace cpu
}  // namespace cnnkern
