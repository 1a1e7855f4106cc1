// The depthwise kernels (see depthwise_core.h), written once over Vec<T> and compiled per
// instruction set: an ISA translation unit includes its headers, sets its target, defines
// CNNKERN_ISA_NS and includes this file. No include guard on purpose; everything is in
// namespace cnnkern::cpu::CNNKERN_ISA_NS.

#include "cpu/common/simd.h"

namespace cnnkern {
namespace cpu {
namespace CNNKERN_ISA_NS {
namespace dw {

inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Copies n elements, in vectors where there are enough (the last one overlapping the one
// before rather than a scalar tail: rows here are short, and a memcpy call costs more).
template <typename T>
inline void copy_n(const T* s, T* d, int64_t n) {
  using V = Vec<T>;
  constexpr int N = V::N;
  if (n < N) {
    const auto m = V::first(static_cast<int>(n));
    V::store_first(d, m, V::load_first(s, m));
    return;
  }
  int64_t i = 0;
  for (; i + N <= n; i += N) V::store(d + i, V::load(s + i));
  if (i < n) V::store(d + n - N, V::load(s + n - N));
}

// The source elements of one packed row of phase b when uw == 1: columns x whose source
// column x * sw + b - left lies in [0, Ws). The other columns are left as they are (zero).
template <typename T>
void pack_row(const T* s, int64_t Ws, T* d, int64_t cols, int64_t sw, int64_t b, int64_t left) {
  using V = Vec<T>;
  constexpr int N = V::N;
  const int64_t x0 = clamp64(-floor_div(b - left, sw), 0, cols);
  const int64_t x1 = clamp64(floor_div(Ws - 1 + left - b, sw) + 1, x0, cols);
  const T* first = s + (x0 * sw + b - left);  // source column of x0
  if (sw == 1) return copy_n(first, d + x0, x1 - x0);
  int64_t x = x0;
  if (sw == 2) {
    // Vectors of even-offset elements; only while the 2N elements read stay in the row.
    for (; x + N <= x1 && (x + N) * 2 + b - left <= Ws; x += N)
      V::store(d + x, V::load_s2(first + (x - x0) * 2));
  }
  for (; x < x1; ++x) d[x] = first[(x - x0) * sw];
}

// Writes only the packed elements that come from the source: every other element of a
// layout is zero whatever the plane, so the caller zeroes the buffer once per layout and
// planes after the first cost a copy of their own elements only.
template <typename T>
void pack(const DwPackJob<T>& j) {
  for (int64_t b = 0; b < j.sw; ++b) {
    T* d = j.dst + b * j.rows * j.cols;
    for (int64_t y = 0; y < j.rows; ++y, d += j.cols) {
      const int64_t ry = y - j.top;
      if (ry < 0 || ry % j.uh != 0 || ry / j.uh >= j.Hs) continue;
      const T* s = j.src + (ry / j.uh) * j.Ws;
      if (j.uw == 1) {
        pack_row(s, j.Ws, d, j.cols, j.sw, b, j.left);
        continue;
      }
      // Zero insertion (grad-input, sw == 1): source column i lands on column i * uw + left.
      const int64_t i0 = clamp64(-floor_div(j.left, j.uw), 0, j.Ws);
      for (int64_t i = i0; i < j.Ws && i * j.uw + j.left < j.cols; ++i) d[i * j.uw + j.left] = s[i];
    }
  }
}

// The epilogue of one output vector: bias, then max(y, 0) keeping NaN (takes(0, y) is 0 > y).
template <typename T>
inline typename Vec<T>::reg finish(const DwConvJob<T>& j, typename Vec<T>::reg a) {
  using V = Vec<T>;
  if (j.has_bias) a = V::add(a, V::set1(j.bias));
  if (j.relu) a = V::select(V::takes(V::zero(), a), V::zero(), a);
  return a;
}

// NT taps known at compile time (0: j.ntaps at run time). NV vectors of one row per step:
// NV independent accumulation chains hide the multiply-add latency.
template <typename T, int NT, int NV>
inline void conv_step(const DwConvJob<T>& j, const typename Vec<T>::reg* w, const int64_t* off,
                      const T* xb, T* d, int64_t keep) {
  using V = Vec<T>;
  using R = typename V::reg;
  constexpr int N = V::N;
  const int64_t nt = NT > 0 ? NT : j.ntaps;
  R a[NV];
  for (int k = 0; k < NV; ++k) a[k] = V::zero();
  for (int64_t t = 0; t < nt; ++t) {
    R wt;
    const T* p;
    if constexpr (NT > 0) {
      wt = w[t];
      p = xb + off[t];
    } else {
      wt = V::bcast(j.w + t);
      p = xb + j.off[t];
    }
    for (int k = 0; k < NV; ++k) a[k] = V::fmadd(wt, V::load(p + k * N), a[k]);
  }
  if (keep == NV * N) {
    for (int k = 0; k < NV; ++k) V::store(d + k * N, finish(j, a[k]));
  } else {  // a row's last, partial vector
    if constexpr (NV == 1) {
      V::store_first(d, V::first(static_cast<int>(keep)), finish(j, a[0]));
      return;
    }
    alignas(64) T tmp[NV * N];
    for (int k = 0; k < NV; ++k) V::store(tmp + k * N, finish(j, a[k]));
    std::memcpy(d, tmp, keep * sizeof(T));
  }
}

template <typename T, int NT>
void conv_plane(const DwConvJob<T>& j) {
  using V = Vec<T>;
  using R = typename V::reg;
  constexpr int N = V::N;
  constexpr int NW = NT > 0 ? NT : 1;
  R w[NW];
  int64_t off[NW];
  for (int t = 0; t < NT; ++t) {
    w[t] = V::bcast(j.w + t);
    off[t] = j.off[t];
  }
  for (int64_t u = 0; u < j.P; ++u) {
    const T* xb = j.x + u * j.row_step;
    T* d = j.out + u * j.Q;
    int64_t v = 0;
    for (; v + 4 * N <= j.Q; v += 4 * N) conv_step<T, NT, 4>(j, w, off, xb + v, d + v, 4 * N);
    for (; v < j.Q; v += N) conv_step<T, NT, 1>(j, w, off, xb + v, d + v, j.Q - v < N ? j.Q - v : N);
  }
}

template <typename T>
void conv(const DwConvJob<T>& j) {
  switch (j.ntaps) {
    case 9: return conv_plane<T, 9>(j);
    case 25: return conv_plane<T, 25>(j);
    default: return conv_plane<T, 0>(j);
  }
}

// Taps [t0, t0 + NT) of a grad-weight job, NT accumulators live across the whole plane.
template <typename T, int NT>
void weight_grad_taps(const DwWeightJob<T>& j, int64_t t0) {
  using V = Vec<T>;
  using R = typename V::reg;
  constexpr int N = V::N;
  alignas(64) T bits[2 * N];  // N lanes of all-ones bits, then N zeros
  std::memset(bits, 0xff, N * sizeof(T));
  std::memset(bits + N, 0, N * sizeof(T));
  int64_t off[NT];
  for (int t = 0; t < NT; ++t) off[t] = j.off[t0 + t];
  R acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = V::zero();
  for (int64_t u = 0; u < j.P; ++u) {
    const T* xb = j.x + u * j.row_step;
    const T* g = j.go + u * j.Q;
    int64_t v = 0;
    for (; v + N <= j.Q; v += N) {
      const R gv = V::load(g + v);
      for (int t = 0; t < NT; ++t) acc[t] = V::fmadd(gv, V::load(xb + v + off[t]), acc[t]);
    }
    if (v < j.Q) {
      const int64_t rem = j.Q - v;
      const R gv = V::load_first(g + v, V::first(static_cast<int>(rem)));
      const R m = V::load(bits + N - rem);
      for (int t = 0; t < NT; ++t)
        acc[t] = V::fmadd(gv, V::and_bits(V::load(xb + v + off[t]), m), acc[t]);
    }
  }
  // Lanes added in T, in hsum's fixed order: a plane's lanes are short sums already, and a
  // per-lane conversion to double costs more than a small plane's whole pass.
  for (int t = 0; t < NT; ++t) j.sums[t0 + t] = static_cast<double>(V::hsum(acc[t]));
}

template <typename T>
void weight_grad(const DwWeightJob<T>& j) {
  if (j.ntaps == 9) return weight_grad_taps<T, 9>(j, 0);
  // Other kernel sizes: passes over the plane with up to 8 taps' accumulators each.
  int64_t t = 0;
  for (; t + 8 <= j.ntaps; t += 8) weight_grad_taps<T, 8>(j, t);
  for (; t < j.ntaps; ++t) weight_grad_taps<T, 1>(j, t);
}

}  // namespace dw

const DepthwiseKernels<float>& depthwise_kernels_f32() {
  static const DepthwiseKernels<float> k{Vec<float>::N, dw::pack<float>, dw::conv<float>,
                                         dw::weight_grad<float>};
  return k;
}

const DepthwiseKernels<double>& depthwise_kernels_f64() {
  static const DepthwiseKernels<double> k{Vec<double>::N, dw::pack<double>, dw::conv<double>,
                                          dw::weight_grad<double>};
  return k;
}

}  // namespace CNNKERN_ISA_NS
}  // namespace cpu
}  // namespace cnnkern
