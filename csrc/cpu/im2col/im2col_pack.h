#pragma once
// Implicit im2col: packs the column matrix of one image and group straight from the image
// into the GEMM's B panels (the GemmPackB layout of cpu/gemm/gemm.h), so no column matrix is ever
// stored and the forward pass reads the image once per k block instead of writing and
// re-reading a copy of it R*S times the size. Torch-free.
//
// B(k, j) = the input under filter tap k = (c * R + r) * S + s at output position
// j = p * Q + q, or 0 where the tap falls in the padding (the same matrix as im2col_tile).

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/conv2d_problem.h"
#include "core/row_range.h"

namespace cnnkern {
namespace cpu {

namespace im2col_pack_detail {

// n contiguous elements; a whole panel row (the common case: 64 or 128 bytes) as one
// fixed-size copy the compiler turns into a few vector moves.
template <typename T>
inline void copy_run(T* dst, const T* src, int64_t n) {
  switch (n * static_cast<int64_t>(sizeof(T))) {
    case 32: std::memcpy(dst, src, 32); return;
    case 64: std::memcpy(dst, src, 64); return;
    case 128: std::memcpy(dst, src, 128); return;
    case 256: std::memcpy(dst, src, 256); return;
    default:
      for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

// Group columns [t, t + n) of row k of a panel group (panels of nr columns, panel_stride
// apart): src[0, n) copied (stride sw), or zeros when src is null. Split at panel boundaries
// into runs of at most nr columns.
template <typename T>
inline void to_panels(const T* src, int64_t sw, int64_t n, int64_t t, T* group, int64_t k,
                      int64_t nr, int64_t panel_stride) {
  while (n > 0) {
    const int64_t lane = t % nr, len = nr - lane < n ? nr - lane : n;
    T* out = group + (t / nr) * panel_stride + k * nr + lane;
    if (src == nullptr) {
      for (int64_t i = 0; i < len; ++i) out[i] = T(0);
    } else if (sw == 1) {
      copy_run(out, src, len);
      src += len;
    } else {
      for (int64_t i = 0; i < len; ++i) out[i] = src[i * sw];
      src += len * sw;
    }
    t += len;
    n -= len;
  }
}

}  // namespace im2col_pack_detail

// Writes rows [k0, k0 + kc) and columns [j0, j0 + nc) as ceil(nc / nr) panels of kc x nr,
// k-major: dst[(j / nr) * kc * nr + k * nr + j % nr], zero past column nc. `in` points at the
// group's first input channel plane.
//
// Order: groups of kPanelGroup panels, and within a group tap by tap, so each tap reads one
// contiguous run of an input row (up to kPanelGroup * nr values) while it is in L1. Going
// panel by panel instead reads 16 values from each of kc rows in turn, and the planes of
// different channels (a multiple of 4 KiB apart for common sizes) evict each other from L1:
// measured 1.5x slower. The output row pieces a group spans are found once for all taps.
template <typename T>
void pack_columns(const T* in, const Conv2dProblem& p, int64_t k0, int64_t kc, int64_t j0,
                  int64_t nc, int64_t nr, T* dst) {
  constexpr int64_t kPanelGroup = 8;
  struct Tap {
    const T* plane;
    int64_t h_offset;  // input row = output row * stride_h + h_offset
    RowRange qr;       // in-bounds output columns, input column = q * stride_w + qr.offset
  };
  std::vector<Tap> taps(kc);
  for (int64_t k = 0; k < kc; ++k) {
    const int64_t tap = k0 + k, s = tap % p.S, r = (tap / p.S) % p.R, c = tap / (p.R * p.S);
    taps[k] = {in + c * p.H * p.W, r * p.dil_h - p.pad_h,
               row_range(p.Q, p.W, p.stride_w, p.pad_w, s * p.dil_w)};
  }
  struct Piece {
    int64_t row, q0, q1, t0;  // positions (row, q), q in [q0, q1), are group columns t0 + q - q0
  };
  const int64_t group = kPanelGroup * nr;
  std::vector<Piece> pieces(group < nc ? group : nc);
  const int64_t sw = p.stride_w, panel_stride = kc * nr;
  for (int64_t jg = 0; jg < nc; jg += group) {  // jg is a multiple of nr
    const int64_t width = nc - jg < group ? nc - jg : group;
    int64_t n_pieces = 0;
    for (int64_t t = 0; t < width;) {
      const int64_t pos = j0 + jg + t, row = pos / p.Q, q0 = pos % p.Q;
      const int64_t q1 = q0 + (width - t) < p.Q ? q0 + (width - t) : p.Q;
      pieces[n_pieces++] = {row, q0, q1, t};
      t += q1 - q0;
    }
    T* dg = dst + (jg / nr) * panel_stride;
    for (int64_t k = 0; k < kc; ++k) {
      const Tap& tap = taps[k];
      for (int64_t i = 0; i < n_pieces; ++i) {
        const Piece& pc = pieces[i];
        const int64_t h = pc.row * p.stride_h + tap.h_offset;
        const bool row_in_bounds = h >= 0 && h < p.H;
        // In-bounds columns [a, b) read row_in[q * stride_w + offset]; the rest is padding.
        int64_t a = pc.q1, b = pc.q1;
        if (row_in_bounds) {
          a = tap.qr.begin > pc.q0 ? tap.qr.begin : pc.q0;
          if (a > pc.q1) a = pc.q1;
          b = tap.qr.end < pc.q1 ? tap.qr.end : pc.q1;
          if (b < a) b = a;
        }
        using im2col_pack_detail::to_panels;
        const int64_t t0 = pc.t0 - pc.q0;  // group column of output column q is t0 + q
        to_panels<T>(nullptr, 1, a - pc.q0, pc.t0, dg, k, nr, panel_stride);
        if (b > a) {
          const T* src = tap.plane + h * p.W + a * sw + tap.qr.offset;
          to_panels(src, sw, b - a, t0 + a, dg, k, nr, panel_stride);
        }
        to_panels<T>(nullptr, 1, pc.q1 - b, t0 + b, dg, k, nr, panel_stride);
      }
    }
    if (width % nr != 0) {  // the last panel's columns past nc
      T* last = dg + (width / nr) * panel_stride;
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t lane = width % nr; lane < nr; ++lane) last[k * nr + lane] = T(0);
    }
  }
}

}  // namespace cpu
}  // namespace cnnkern
