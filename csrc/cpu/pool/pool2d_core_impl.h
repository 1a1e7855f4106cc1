// The pooling kernels (see pool2d_core.h), written once over Vec<T> and compiled per
// instruction set: an ISA translation unit includes its headers, sets its
// `#pragma GCC target`, defines CNNKERN_ISA_NS and includes this file. No include guard on
// purpose; everything is in namespace cnnkern::cpu::CNNKERN_ISA_NS.

#include "cpu/common/simd.h"

namespace cnnkern {
namespace cpu {
namespace CNNKERN_ISA_NS {
namespace pool {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// Outputs [lo, hi) along W whose whole window lies inside the input: the first tap
// o * s - pad >= 0 and the last o * s - pad + span <= in - 1 (span = (k - 1) * dilation).
struct Interior {
  int64_t lo, hi;
};
inline Interior interior(int64_t out, int64_t in, int64_t span, int64_t s, int64_t pad) {
  const int64_t lo = imin(out, (pad + s - 1) / s);
  const int64_t last = in - 1 - span + pad;  // o * s <= last
  const int64_t hi = last < 0 ? 0 : imin(out, last / s + 1);
  return {lo, imax(lo, hi)};
}

// ---- max --------------------------------------------------------------------------------

// ATen's rule: start at -inf with the window's first in-bounds tap; a tap wins when it is
// greater or NaN (so the last NaN in scan order wins, and NaN propagates with its index).
// idx == nullptr: the values alone (max_pool2d without indices).
template <typename T>
inline void max_one(const Pool2dProblem& p, const T* x, const Window& wh, int64_t ow, T* out,
                    int64_t* idx) {
  const Window ww = max_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w, p.dil_w);
  T best = -__builtin_inf();
  int64_t best_i = wh.begin * p.W + ww.begin;
  for (int64_t h = wh.begin; h < wh.end; h += p.dil_h) {
    for (int64_t w = ww.begin; w < ww.end; w += p.dil_w) {
      const T v = x[h * p.W + w];
      const bool take = v > best || v != v;  // selects, not branches: random data mispredicts
      best = take ? v : best;
      best_i = take ? h * p.W + w : best_i;
    }
  }
  *out = best;
  if (idx != nullptr) *idx = best_i;
}

// kIdx: whether the indices are wanted (idx != nullptr). Without them the vector loop is a
// compare and a select per tap, with no index lanes to carry or convert and store.
template <bool kIdx, typename T>
void max_plane(const Pool2dProblem& p, const T* x, const T* x_end, T* out, int64_t* idx) {
  using V = Vec<T>;
  using reg = typename V::reg;
  constexpr int N = V::N;
  const int64_t sw = p.stride_w;
  // Vector lanes carry their window's flat index as T: exact below 2^24 for float.
  const bool vec = (sw == 1 || sw == 2) &&
                   (!kIdx || sizeof(T) == 8 || p.H * p.W <= (int64_t(1) << 24));
  const Interior in = interior(p.Q, p.W, (p.kw - 1) * p.dil_w, sw, p.pad_w);
  const reg lane_step = V::mul(V::iota(), V::set1(T(sw)));
  for (int64_t oh = 0; oh < p.P; ++oh) {
    const Window wh = max_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h, p.dil_h);
    T* o = out + oh * p.Q;
    int64_t* ix = kIdx ? idx + oh * p.Q : nullptr;
    int64_t ow = 0;
    if (vec && wh.begin < wh.end) {
      for (; ow < in.lo; ++ow) max_one(p, x, wh, ow, o + ow, kIdx ? ix + ow : nullptr);
      // the farthest element a chunk's loads touch, from its first column
      const int64_t reach = (wh.end - 1) * p.W + (p.kw - 1) * p.dil_w + (sw == 2 ? 2 * N : N);
      for (; ow + N <= in.hi && x + ow * sw - p.pad_w + reach <= x_end; ow += N) {
        const int64_t col0 = ow * sw - p.pad_w;
        reg best = V::set1(-__builtin_inf());
        reg best_i = V::add(V::set1(T(wh.begin * p.W + col0)), lane_step);
        for (int64_t h = wh.begin; h < wh.end; h += p.dil_h) {
          for (int64_t j = 0; j < p.kw; ++j) {
            const int64_t c = h * p.W + col0 + j * p.dil_w;
            const reg v = sw == 1 ? V::load(x + c) : V::load_s2(x + c);
            const auto take = V::takes(v, best);
            best = V::select(take, v, best);
            if (kIdx) best_i = V::select(take, V::add(V::set1(T(c)), lane_step), best_i);
          }
        }
        V::store(o + ow, best);
        if (kIdx) {
          T bi[N];
          V::store(bi, best_i);
          for (int l = 0; l < N; ++l) ix[ow + l] = static_cast<int64_t>(bi[l]);
        }
        // The last partial chunk is redone as a full one ending at in.hi: the outputs it
        // recomputes come out the same, and none is left to the slower scalar code.
        if (ow + N < in.hi && ow + 2 * N > in.hi) ow = in.hi - 2 * N;
      }
    }
    for (; ow < p.Q; ++ow) max_one(p, x, wh, ow, o + ow, kIdx ? ix + ow : nullptr);
  }
}

// ---- avg --------------------------------------------------------------------------------

template <typename T>
inline T avg_one(const Pool2dProblem& p, const T* x, const AvgWindow& wh, int64_t ow) {
  const AvgWindow ww = avg_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w);
  if (wh.begin >= wh.end || ww.begin >= ww.end) return T(0);
  T sum = 0;
  for (int64_t h = wh.begin; h < wh.end; ++h)
    for (int64_t w = ww.begin; w < ww.end; ++w) sum += x[h * p.W + w];
  return sum / static_cast<T>(avg_pool_divisor(p, wh, ww));
}

// The divisor of every interior output of a row (their W windows are kw wide, unclipped).
inline int64_t interior_divisor(const Pool2dProblem& p, const AvgWindow& wh) {
  const AvgWindow ww{0, p.kw, p.kw};
  return avg_pool_divisor(p, wh, ww);
}

template <typename T>
void avg_plane(const Pool2dProblem& p, const T* x, const T* x_end, T* out) {
  using V = Vec<T>;
  using reg = typename V::reg;
  constexpr int N = V::N;
  const int64_t sw = p.stride_w;
  const bool vec = sw == 1 || sw == 2;
  const Interior in = interior(p.Q, p.W, p.kw - 1, sw, p.pad_w);
  for (int64_t oh = 0; oh < p.P; ++oh) {
    const AvgWindow wh = avg_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h);
    T* o = out + oh * p.Q;
    int64_t ow = 0;
    if (vec && wh.begin < wh.end) {
      for (; ow < in.lo; ++ow) o[ow] = avg_one(p, x, wh, ow);
      const reg div = V::set1(static_cast<T>(interior_divisor(p, wh)));
      const int64_t reach = (wh.end - 1) * p.W + p.kw - 1 + (sw == 2 ? 2 * N : N);
      for (; ow + N <= in.hi && x + ow * sw - p.pad_w + reach <= x_end; ow += N) {
        const int64_t col0 = ow * sw - p.pad_w;
        reg sum = V::zero();
        for (int64_t h = wh.begin; h < wh.end; ++h) {
          for (int64_t j = 0; j < p.kw; ++j) {
            const T* src = x + h * p.W + col0 + j;
            sum = V::add(sum, sw == 1 ? V::load(src) : V::load_s2(src));
          }
        }
        V::store(o + ow, V::div(sum, div));
        if (ow + N < in.hi && ow + 2 * N > in.hi) ow = in.hi - 2 * N;  // as in max_plane
      }
    }
    for (; ow < p.Q; ++ow) o[ow] = avg_one(p, x, wh, ow);
  }
}

template <typename T>
inline void avg_backward_one(const Pool2dProblem& p, T g, const AvgWindow& wh, int64_t ow,
                             T* gi) {
  const AvgWindow ww = avg_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w);
  if (wh.begin >= wh.end || ww.begin >= ww.end) return;
  const T share = g / static_cast<T>(avg_pool_divisor(p, wh, ww));
  for (int64_t h = wh.begin; h < wh.end; ++h)
    for (int64_t w = ww.begin; w < ww.end; ++w) gi[h * p.W + w] += share;
}

// Its set-up (vector type, stride, interior) is avg_plane's, written out again on purpose: the
// two loops use those six names throughout, and a shared struct would only rename them.
template <typename T>
void avg_backward_plane(const Pool2dProblem& p, const T* go, T* gi) {
  using V = Vec<T>;
  using reg = typename V::reg;
  constexpr int N = V::N;
  const int64_t sw = p.stride_w;
  const bool vec = sw == 1 || sw == 2;
  const Interior in = interior(p.Q, p.W, p.kw - 1, sw, p.pad_w);
  const T* gi_end = gi + p.H * p.W;  // read-modify-writes stay inside this plane
  for (int64_t oh = 0; oh < p.P; ++oh) {
    const AvgWindow wh = avg_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h);
    const T* g = go + oh * p.Q;
    int64_t ow = 0;
    if (vec && wh.begin < wh.end) {
      for (; ow < in.lo; ++ow) avg_backward_one(p, g[ow], wh, ow, gi);
      const reg div = V::set1(static_cast<T>(interior_divisor(p, wh)));
      const int64_t reach = (wh.end - 1) * p.W + p.kw - 1 + (sw == 2 ? 2 * N : N);
      for (; ow + N <= in.hi && gi + ow * sw - p.pad_w + reach <= gi_end; ow += N) {
        const int64_t col0 = ow * sw - p.pad_w;
        const reg share = V::div(V::load(g + ow), div);
        for (int64_t h = wh.begin; h < wh.end; ++h) {
          for (int64_t j = 0; j < p.kw; ++j) {
            T* dst = gi + h * p.W + col0 + j;
            if (sw == 1) V::store(dst, V::add(V::load(dst), share));
            else V::add_s2(dst, share);  // lanes at stride 2
          }
        }
      }
    }
    for (; ow < p.Q; ++ow) avg_backward_one(p, g[ow], wh, ow, gi);
  }
}

// ---- adaptive avg -----------------------------------------------------------------------

// Sum of x[0 .. n): vector lane sums, added in a fixed order, then the tail.
template <typename T>
inline T sum_run(const T* x, int64_t n) {
  using V = Vec<T>;
  constexpr int N = V::N;
  int64_t i = 0;
  T s = 0;
  if (n >= 2 * N) {
    typename V::reg a = V::load(x), b = V::load(x + N);
    for (i = 2 * N; i + 2 * N <= n; i += 2 * N) {
      a = V::add(a, V::load(x + i));
      b = V::add(b, V::load(x + i + N));
    }
    s = V::hsum(V::add(a, b));
  }
  for (; i < n; ++i) s += x[i];
  return s;
}

template <typename T>
void adaptive_plane(const Pool2dProblem& p, const T* x, T* out) {
  for (int64_t oh = 0; oh < p.P; ++oh) {
    const Window wh = adaptive_window(oh, p.H, p.P);
    for (int64_t ow = 0; ow < p.Q; ++ow) {
      const Window ww = adaptive_window(ow, p.W, p.Q);
      const int64_t width = ww.end - ww.begin;
      T sum = 0;
      if (width == p.W) {  // whole rows: one contiguous run
        sum = sum_run(x + wh.begin * p.W, (wh.end - wh.begin) * p.W);
      } else {
        for (int64_t h = wh.begin; h < wh.end; ++h) sum += sum_run(x + h * p.W + ww.begin, width);
      }
      out[oh * p.Q + ow] = sum / static_cast<T>((wh.end - wh.begin) * width);
    }
  }
}

// Plane loops: the kernels above do one plane.
template <typename T>
void max_planes(const Pool2dProblem& p, int64_t planes, const T* x, const T* x_end, T* out,
                int64_t* idx) {
  for (int64_t m = 0; m < planes; ++m) {
    T* o = out + m * p.P * p.Q;
    if (idx != nullptr) max_plane<true>(p, x + m * p.H * p.W, x_end, o, idx + m * p.P * p.Q);
    else max_plane<false>(p, x + m * p.H * p.W, x_end, o, nullptr);
  }
}
template <typename T>
void avg_planes(const Pool2dProblem& p, int64_t planes, const T* x, const T* x_end, T* out) {
  for (int64_t m = 0; m < planes; ++m) avg_plane(p, x + m * p.H * p.W, x_end, out + m * p.P * p.Q);
}
template <typename T>
void avg_backward_planes(const Pool2dProblem& p, int64_t planes, const T* go, T* gi) {
  for (int64_t m = 0; m < planes; ++m)
    avg_backward_plane(p, go + m * p.P * p.Q, gi + m * p.H * p.W);
}
template <typename T>
void adaptive_planes(const Pool2dProblem& p, int64_t planes, const T* x, T* out) {
  if (p.P == 1 && p.Q == 1) {  // global average pooling: one contiguous run per plane
    const T count = static_cast<T>(p.H * p.W);
    for (int64_t m = 0; m < planes; ++m) out[m] = sum_run(x + m * p.H * p.W, p.H * p.W) / count;
    return;
  }
  for (int64_t m = 0; m < planes; ++m) adaptive_plane(p, x + m * p.H * p.W, out + m * p.P * p.Q);
}

}  // namespace pool

const PoolKernels<float>& pool_kernels_f32() {
  static const PoolKernels<float> k{pool::max_planes<float>, pool::avg_planes<float>,
                                    pool::avg_backward_planes<float>,
                                    pool::adaptive_planes<float>};
  return k;
}

const PoolKernels<double>& pool_kernels_f64() {
  static const PoolKernels<double> k{pool::max_planes<double>, pool::avg_planes<double>,
                                     pool::avg_backward_planes<double>,
                                     pool::adaptive_planes<double>};
  return k;
}

}  // namespace CNNKERN_ISA_NS
}  // namespace cpu
}  // namespace cnnkern
