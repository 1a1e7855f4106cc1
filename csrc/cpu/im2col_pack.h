#pragma once
// Implicit im2col: packs the column matrix of one image and group straight from the image
// into the GEMM's B panels (the GemmPackB layout of cpu/gemm.h), so no column matrix is ever
// stored and the forward pass reads the image once per k block instead of writing and
// re-reading a copy of it R*S times the size. Torch-free.
//
// B(k, j) = the input under filter tap k = (c * R + r) * S + s at output position
// j = p * Q + q, or 0 where the tap falls in the padding (the same matrix as im2col_tile).

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/conv2d_problem.h"
#include "common/row_range.h"

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

}  // namespace im2col_pack_detail

// Writes rows [k0, k0 + kc) and columns [j0, j0 + nc) as ceil(nc / nr) panels of kc x nr,
// k-major: dst[(j / nr) * kc * nr + k * nr + j % nr], zero past column nc. `in` points at the
// group's first input channel plane. Panel by panel, so the writes are sequential: the
// output row pieces a panel spans are found once and reused for all kc taps.
template <typename T>
void pack_columns(const T* in, const Conv2dProblem& p, int64_t k0, int64_t kc, int64_t j0,
                  int64_t nc, int64_t nr, T* dst) {
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
    int64_t row, q0, q1, lane;  // positions (row, q), q in [q0, q1), go to lanes lane + q - q0
  };
  std::vector<Piece> pieces(nr);
  const int64_t sw = p.stride_w;
  for (int64_t j = 0, panel = 0; j < nc; j += nr, ++panel) {
    const int64_t width = nc - j < nr ? nc - j : nr;
    int64_t n_pieces = 0;
    for (int64_t t = 0; t < width;) {
      const int64_t pos = j0 + j + t, row = pos / p.Q, q0 = pos % p.Q;
      const int64_t q1 = q0 + (width - t) < p.Q ? q0 + (width - t) : p.Q;
      pieces[n_pieces++] = {row, q0, q1, t};
      t += q1 - q0;
    }
    T* d = dst + panel * kc * nr;
    for (int64_t k = 0; k < kc; ++k, d += nr) {
      const Tap& tap = taps[k];
      for (int64_t i = 0; i < n_pieces; ++i) {
        const Piece& pc = pieces[i];
        T* out = d + pc.lane;  // out[q - q0] for q in [q0, q1)
        const int64_t h = pc.row * p.stride_h + tap.h_offset;
        if (h < 0 || h >= p.H) {
          for (int64_t q = pc.q0; q < pc.q1; ++q) out[q - pc.q0] = T(0);
          continue;
        }
        // In-bounds columns [a, b) read row_in[q * stride_w + offset]; the rest is padding.
        int64_t a = tap.qr.begin > pc.q0 ? tap.qr.begin : pc.q0;
        if (a > pc.q1) a = pc.q1;
        int64_t b = tap.qr.end < pc.q1 ? tap.qr.end : pc.q1;
        if (b < a) b = a;
        const T* row_in = tap.plane + h * p.W;
        const int64_t off = tap.qr.offset;
        for (int64_t q = pc.q0; q < a; ++q) out[q - pc.q0] = T(0);
        if (sw == 1) {
          im2col_pack_detail::copy_run(out + (a - pc.q0), row_in + a + off, b - a);
        } else {
          for (int64_t q = a; q < b; ++q) out[q - pc.q0] = row_in[q * sw + off];
        }
        for (int64_t q = b; q < pc.q1; ++q) out[q - pc.q0] = T(0);
      }
      for (int64_t lane = width; lane < nr; ++lane) d[lane] = T(0);
    }
  }
}

}  // namespace cpu
}  // namespace cnnkern
