#pragma once
// Implicit im2col: packs the column matrix of one image and group straight from the image
// into the GEMM's B panels (the GemmPackB layout of cpu/gemm/gemm.h), so no column matrix is ever
// stored and the forward pass reads the image once per k block instead of writing and
// re-reading a copy of it R*S times the size. Torch-free.
//
// B(k, j) = the input under filter tap k = (c * R + r) * S + s at output position
// j = p * Q + q, or 0 where the tap falls in the padding (the same matrix as im2col_tile).
//
// The image may be stored in another type than the panels (Read, below): float16 / bfloat16
// images are converted to float32 here, a panel row at a time in registers, so a half
// forward makes no float32 copy of its input (the values are exact in float32, so the GEMM
// gives the bits it gives on a float32 copy).

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/conv2d_problem.h"
#include "core/row_range.h"
#include "cpu/half/half_convert.h"
#include "cpu/im2col/stride_phases.h"

namespace cnnkern {
namespace cpu {

// How the packing reads the image into panel values of type T: as they are (Copy), or as
// 16-bit float16 / bfloat16 patterns converted to float32 (HalfRead). run(dst, src, n)
// converts n contiguous values.
template <typename T>
struct CopyRead {
  using S = T;
  void run(T* dst, const T* src, int64_t n) const;
};
struct HalfRead {
  using S = uint16_t;
  void (*to_float)(const uint16_t* src, float* dst, int64_t n);
  void run(float* dst, const uint16_t* src, int64_t n) const { to_float(src, dst, n); }
};

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
// A strided run of a converted type is gathered into a panel-row buffer (at most
// kMaxPanelRow values), then converted in one go.
constexpr int64_t kMaxPanelRow = 64;

template <typename T, class Read>
inline void to_panels(const typename Read::S* src, int64_t sw, int64_t n, int64_t t, T* group,
                      int64_t k, int64_t nr, int64_t panel_stride, const Read& read) {
  using S = typename Read::S;
  while (n > 0) {
    const int64_t lane = t % nr, len = nr - lane < n ? nr - lane : n;
    T* out = group + (t / nr) * panel_stride + k * nr + lane;
    if (src == nullptr) {
      for (int64_t i = 0; i < len; ++i) out[i] = T(0);
    } else if (sw == 1) {
      read.run(out, src, len);
      src += len;
    } else if constexpr (std::is_same_v<S, T>) {
      for (int64_t i = 0; i < len; ++i) out[i] = src[i * sw];
      src += len * sw;
    } else {
      S row[kMaxPanelRow];
      for (int64_t i = 0; i < len; ++i) row[i] = src[i * sw];
      read.run(out, row, len);
      src += len * sw;
    }
    t += len;
    n -= len;
  }
}

// The unsigned integer of T's width: padding is a bitwise AND with an all-zero mask.
template <typename T>
using Bits = std::conditional_t<sizeof(T) == 8, uint64_t,
                                std::conditional_t<sizeof(T) == 4, uint32_t, uint16_t>>;

// One panel row: out[l] = plane[off[l]] & mask[l] for l < nr. NR > 0: nr known at compile
// time (the GEMM's 16 or 32), so the loop unrolls.
template <typename T, int NR>
inline void gather_row(const T* plane, const int64_t* off, const Bits<T>* mask, int64_t nr,
                       T* out) {
  const int64_t n = NR > 0 ? NR : nr;
  for (int64_t l = 0; l < n; ++l) {
    Bits<T> v;
    std::memcpy(&v, plane + off[l], sizeof(T));
    v &= mask[l];
    std::memcpy(out + l, &v, sizeof(T));
  }
}

}  // namespace im2col_pack_detail

template <typename T>
void CopyRead<T>::run(T* dst, const T* src, int64_t n) const {
  im2col_pack_detail::copy_run(dst, src, n);
}

// How pack_columns reads the image: runs (copies along input rows), phases (the same runs
// read from the image split into its column stride phases, cpu/im2col/stride_phases.h, so a
// strided run is a contiguous copy too), or gather (a per-column offset table, which also
// crosses from one image into the next: the batched small-plane forward,
// cpu/im2col/conv2d_im2col.cpp). All write the same values, so the GEMM's bits do not depend
// on the method.
enum class ColumnPack { Runs, Phases, Gather };

// pack_columns by ColumnPack::Gather. Each column j = (image n, row, q) (n = j / (P*Q): the
// columns may run on into the next images, which follow at C*H*W elements) reads, through tap
// (c, r, s), plane c of image n at offset
// (row * stride_h + r * dil_h - pad_h) * W + q * stride_w + s * dil_w - pad_w
// when that lies inside the plane, else is padding. Offsets and in-bounds masks depend on
// (r, s) and j, not on c: one table of each per (r, s) serves every channel. A padding column
// reads offset 0 (in bounds) and ANDs it with a zero mask (+0.0 whatever the input holds, NaN
// included, with no branch); columns past nc are padding too.
template <typename T, class Read = CopyRead<T>>
void pack_columns_gather(const typename Read::S* in, const Conv2dProblem& p, int64_t k0,
                         int64_t kc, int64_t j0, int64_t nc, int64_t nr, T* dst,
                         const Read& read = {}) {
  using S = typename Read::S;
  using B = im2col_pack_detail::Bits<S>;
  const int64_t RS = p.R * p.S, width = (nc + nr - 1) / nr * nr;
  thread_local std::vector<int64_t> offsets;
  thread_local std::vector<B> masks;
  offsets.resize(RS * width);
  masks.resize(RS * width);
  const int64_t PQ = p.P * p.Q, image = p.C * p.H * p.W;
  for (int64_t rs = 0; rs < RS; ++rs) {
    const int64_t dy = (rs / p.S) * p.dil_h - p.pad_h, dx = (rs % p.S) * p.dil_w - p.pad_w;
    for (int64_t j = 0; j < width; ++j) {
      const int64_t n = (j0 + j) / PQ, pos = (j0 + j) % PQ;
      const int64_t y = pos / p.Q * p.stride_h + dy, x = pos % p.Q * p.stride_w + dx;
      const bool inside = j < nc && y >= 0 && y < p.H && x >= 0 && x < p.W;
      offsets[rs * width + j] = inside ? n * image + y * p.W + x : 0;
      masks[rs * width + j] = inside ? ~B(0) : B(0);
    }
  }
  const int64_t HW = p.H * p.W;
  auto rows = [&](auto row) {
    for (int64_t j = 0; j < width; j += nr) {
      T* panel = dst + (j / nr) * kc * nr;
      for (int64_t k = 0; k < kc; ++k) {
        const int64_t tap = k0 + k, rs = tap % RS;
        row(in + (tap / RS) * HW, offsets.data() + rs * width + j, masks.data() + rs * width + j,
            nr, panel + k * nr);
      }
    }
  };
  if constexpr (!std::is_same_v<S, T>) {  // gather the 16-bit patterns, then convert the row
    rows([&](const S* plane, const int64_t* off, const B* mask, int64_t n, T* out) {
      S row[im2col_pack_detail::kMaxPanelRow];
      im2col_pack_detail::gather_row<S, 0>(plane, off, mask, n, row);
      read.run(out, row, n);
    });
  } else if (nr == 32) {
    rows(im2col_pack_detail::gather_row<T, 32>);
  } else if (nr == 16) {
    rows(im2col_pack_detail::gather_row<T, 16>);
  } else {
    rows(im2col_pack_detail::gather_row<T, 0>);
  }
}

// Writes rows [k0, k0 + kc) and columns [j0, j0 + nc) as ceil(nc / nr) panels of kc x nr,
// k-major: dst[(j / nr) * kc * nr + k * nr + j % nr], zero past column nc. `in` points at the
// group's first input channel plane, or by Phases at the split of the group's channels
// (split_stride_phases with stride_phases_of(p)). Columns past P*Q (the next images') by
// Gather only.
//
// Order: groups of kPanelGroup panels, and within a group tap by tap, so each tap reads one
// contiguous run of an input row (up to kPanelGroup * nr values) while it is in L1. Going
// panel by panel instead reads 16 values from each of kc rows in turn, and the planes of
// different channels (a multiple of 4 KiB apart for common sizes) evict each other from L1:
// measured 1.5x slower. The output row pieces a group spans are found once for all taps.
template <typename T, class Read = CopyRead<T>>
void pack_columns(const typename Read::S* in, const Conv2dProblem& p, int64_t k0, int64_t kc,
                  int64_t j0, int64_t nc, int64_t nr, T* dst,
                  ColumnPack method = ColumnPack::Runs, const Read& read = {}) {
  using S = typename Read::S;
  if (method == ColumnPack::Gather) {
    pack_columns_gather(in, p, k0, kc, j0, nc, nr, dst, read);
    return;
  }
  constexpr int64_t kPanelGroup = 8;
  struct Tap {
    const S* plane;    // output column q of input row h reads plane[h * row + q * step + shift]
    int64_t row, step, shift;
    int64_t h_offset;  // input row = output row * stride_h + h_offset
    RowRange qr;       // in-bounds output columns
  };
  const bool phased = method == ColumnPack::Phases;
  const StridePhases sp = stride_phases_of(p);
  std::vector<Tap> taps(kc);
  for (int64_t k = 0; k < kc; ++k) {
    const int64_t tap = k0 + k, s = tap % p.S, r = (tap / p.S) % p.R, c = tap / (p.R * p.S);
    const RowRange qr = row_range(p.Q, p.W, p.stride_w, p.pad_w, s * p.dil_w);
    const int64_t h_offset = r * p.dil_h - p.pad_h;
    if (phased) {
      taps[k] = {in + sp.row(c, sp.phase(qr.offset), 0), sp.Wp, 1, sp.shift(qr.offset), h_offset,
                 qr};
    } else {
      taps[k] = {in + c * p.H * p.W, p.W, p.stride_w, qr.offset, h_offset, qr};
    }
  }
  struct Piece {
    int64_t row, q0, q1, t0;  // positions (row, q), q in [q0, q1), are group columns t0 + q - q0
  };
  const int64_t group = kPanelGroup * nr;
  std::vector<Piece> pieces(group < nc ? group : nc);
  const int64_t panel_stride = kc * nr;
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
        to_panels<T>(nullptr, 1, a - pc.q0, pc.t0, dg, k, nr, panel_stride, read);
        if (b > a) {
          const S* src = tap.plane + h * tap.row + a * tap.step + tap.shift;
          to_panels(src, tap.step, b - a, t0 + a, dg, k, nr, panel_stride, read);
        }
        to_panels<T>(nullptr, 1, pc.q1 - b, t0 + b, dg, k, nr, panel_stride, read);
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
