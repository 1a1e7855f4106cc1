// AVX2 + FMA Winograd kernels for float (see winograd_kernels.h), 8 tiles or filters per ymm.
//
// Instead of gathering each tile's patch element by element, a tile row's input is
// de-interleaved with shuffles: tile l's column s is element l*m + s of a buffer row, so the
// vector of column s over 8 tiles is a stride-m slice, which 128-bit loads, unpacks and
// shuffles produce in the natural tile order. The output side interleaves back the same way
// and writes whole rows of 8*m outputs. Filters: 8 filters x 8 channels (72 contiguous floats
// per filter) are transposed 8 x 8 at a time, so each tap becomes a vector over filters.
//
// Torch-free. Every function below the pragma is compiled for AVX2 + FMA; the headers it
// uses are included first (compiled for the default target), except core/winograd.h,
// whose templates are instantiated here only with this file's vector type F8, so no code
// compiled for AVX2 can be shared with (and picked by the linker for) the generic build.
// winograd_kernels_generic.cpp calls in only after __builtin_cpu_supports says the CPU has both.

#include <cstdint>

#include "cpu/winograd/winograd_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#pragma GCC target("avx2,fma")

#include "core/winograd.h"

namespace cnnkern {
namespace cpu {
namespace winograd_avx2 {
namespace {

// 8 floats with the arithmetic the shared transforms use.
struct F8 {
  __m256 v;
};
inline F8 operator+(F8 a, F8 b) { return {_mm256_add_ps(a.v, b.v)}; }
inline F8 operator-(F8 a, F8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline F8 operator-(F8 a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))}; }
inline F8 operator*(F8 a, float s) { return {_mm256_mul_ps(a.v, _mm256_set1_ps(s))}; }

inline __m256 load2(const float* lo, const float* hi) {
  return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)), _mm_loadu_ps(hi), 1);
}

// Lanes [0, n) set.
inline __m256i lane_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <int A2>
inline void store_lanes(const F8* v, int64_t nvalid, float* dst, int64_t xs) {
  if (nvalid >= 8) {
    for (int xi = 0; xi < A2; ++xi) _mm256_storeu_ps(dst + xi * xs, v[xi].v);
  } else {
    const __m256i mask = lane_mask(static_cast<int>(nvalid));
    for (int xi = 0; xi < A2; ++xi) _mm256_maskstore_ps(dst + xi * xs, mask, v[xi].v);
  }
}

// Columns s = 0..3 of 8 tiles of width 4: out[s] lane l = q[4l + s] (reads q[0, 32)).
inline void deinterleave4(const float* q, F8* out) {
  const __m256 q0 = load2(q, q + 16), q1 = load2(q + 4, q + 20);  // tiles 0|4, 1|5
  const __m256 q2 = load2(q + 8, q + 24), q3 = load2(q + 12, q + 28);  // tiles 2|6, 3|7
  const __m256 t0 = _mm256_unpacklo_ps(q0, q1), t1 = _mm256_unpackhi_ps(q0, q1);
  const __m256 t2 = _mm256_unpacklo_ps(q2, q3), t3 = _mm256_unpackhi_ps(q2, q3);
  out[0].v = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  out[1].v = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  out[2].v = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  out[3].v = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
}

// Columns s = 0, 1 of 8 tiles of width 2: out[s] lane l = q[2l + s] (reads q[0, 16)).
inline void deinterleave2(const float* q, F8* out) {
  const __m256 q0 = load2(q, q + 8), q1 = load2(q + 4, q + 12);
  out[0].v = _mm256_shuffle_ps(q0, q1, _MM_SHUFFLE(2, 0, 2, 0));
  out[1].v = _mm256_shuffle_ps(q0, q1, _MM_SHUFFLE(3, 1, 3, 1));
}

// o[l*4 + j] = y[j] lane l for j < 4: 32 floats.
inline void interleave4(const F8* y, float* o) {
  const __m256 u0 = _mm256_unpacklo_ps(y[0].v, y[1].v), u1 = _mm256_unpackhi_ps(y[0].v, y[1].v);
  const __m256 u2 = _mm256_unpacklo_ps(y[2].v, y[3].v), u3 = _mm256_unpackhi_ps(y[2].v, y[3].v);
  const __m256 w0 = _mm256_shuffle_ps(u0, u2, _MM_SHUFFLE(1, 0, 1, 0));  // tiles 0 | 4
  const __m256 w1 = _mm256_shuffle_ps(u0, u2, _MM_SHUFFLE(3, 2, 3, 2));  // tiles 1 | 5
  const __m256 w2 = _mm256_shuffle_ps(u1, u3, _MM_SHUFFLE(1, 0, 1, 0));  // tiles 2 | 6
  const __m256 w3 = _mm256_shuffle_ps(u1, u3, _MM_SHUFFLE(3, 2, 3, 2));  // tiles 3 | 7
  _mm256_storeu_ps(o, _mm256_permute2f128_ps(w0, w1, 0x20));
  _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(w2, w3, 0x20));
  _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(w0, w1, 0x31));
  _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(w2, w3, 0x31));
}

// o[l*2 + j] = y[j] lane l for j < 2: 16 floats.
inline void interleave2(const F8* y, float* o) {
  const __m256 u0 = _mm256_unpacklo_ps(y[0].v, y[1].v), u1 = _mm256_unpackhi_ps(y[0].v, y[1].v);
  _mm256_storeu_ps(o, _mm256_permute2f128_ps(u0, u1, 0x20));
  _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(u0, u1, 0x31));
}

// The patch columns [0, a) of 8 tiles from one buffer row: the first m from the tiles'
// own columns, the last two (the halo) from the next tiles' first columns.
template <int M>
inline void patch_row(const float* q, F8* d);
template <>
inline void patch_row<4>(const float* q, F8* d) {
  deinterleave4(q, d);
  F8 next[4];
  deinterleave4(q + 4, next);  // columns 4, 5 of tile l are columns 0, 1 of tile l + 1
  d[4] = next[0];
  d[5] = next[1];
}
template <>
inline void patch_row<2>(const float* q, F8* d) {
  deinterleave2(q, d);
  deinterleave2(q + 2, d + 2);
}

// In place: r[e] lane l = old r[l] lane e.
inline void transpose8(__m256* r) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

template <int M>
inline void deinterleave_m(const float* q, F8* out) {
  if constexpr (M == 4) deinterleave4(q, out);
  else deinterleave2(q, out);
}

template <int M>
inline void interleave_m(const F8* y, float* o) {
  if constexpr (M == 4) interleave4(y, o);
  else interleave2(y, o);
}

template <int M>
struct Rows {
  static constexpr int m = M, a = M + 2, A2 = a * a;

  static void input_row(const float* src, int64_t rs, int64_t ntiles, float* dst, int64_t xs) {
    for (int64_t t = 0; t < ntiles; t += 8) {
      F8 d[A2], v[A2];
      for (int r = 0; r < a; ++r) patch_row<M>(src + r * rs + t * m, d + r * a);
      winograd::input_transform<M, float>(d, a, 1, v, a, 1);
      store_lanes<A2>(v, ntiles - t, dst + t, xs);
    }
  }

  static void output_row(const float* src, int64_t xs, int64_t ntiles, float bias, float* dst,
                         int64_t rs, bool relu) {
    const __m256 b = _mm256_set1_ps(bias);
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t t = 0; t < ntiles; t += 8) {
      F8 x[A2], y[m * m];
      for (int xi = 0; xi < A2; ++xi) x[xi].v = _mm256_loadu_ps(src + xi * xs + t);
      winograd::output_transform<M, float>(x, a, 1, y, m, 1);
      for (int q = 0; q < m * m; ++q) y[q].v = _mm256_add_ps(y[q].v, b);
      // max_ps returns its second operand when either is NaN: NaN stays NaN, as torch.relu.
      if (relu)
        for (int q = 0; q < m * m; ++q) y[q].v = _mm256_max_ps(zero, y[q].v);
      for (int i = 0; i < m; ++i) interleave_m<M>(y + i * m, dst + i * rs + t * m);
    }
  }

  static void grad_output_row(const float* src, int64_t rs, int64_t ntiles, float* dst,
                              int64_t xs) {
    for (int64_t t = 0; t < ntiles; t += 8) {
      F8 dy[m * m], x[A2];
      for (int i = 0; i < m; ++i) deinterleave_m<M>(src + i * rs + t * m, dy + i * m);
      winograd::output_adjoint<M, float>(dy, m, 1, x, a, 1);
      store_lanes<A2>(x, ntiles - t, dst + t, xs);
    }
  }

  // The 3x3 taps g[i] of 8 filters (lanes) for one channel -> u[xi * xs .. + 8).
  static void filter8(const F8* g, float* u, int64_t xs) {
    F8 v[A2];
    winograd::filter_transform<M, float>(g, 3, 1, v, a, 1);
    for (int xi = 0; xi < A2; ++xi) _mm256_storeu_ps(u + xi * xs, v[xi].v);
  }

  // Channels outermost: the U rows of 8 channels (8 x a*a x kw floats) are finished before
  // the next 8, so they stay in cache (filters outermost rewrote all of U per 8 filters).
  static void filters(FilterSource<float> src, int64_t Cg, int64_t nk, float* U, int64_t cs,
                      int64_t xs) {
    if (src.rotated && src.filter_stride == 9) return filters_flipped(src, Cg, nk, U, cs, xs);
    if (src.channel_stride != 9 || src.rotated) return filters_strided(src, Cg, nk, U, cs, xs);
    int64_t c0 = 0;
    for (; c0 + 8 <= Cg; c0 += 8) {  // 8 channels = 72 contiguous floats per filter
      for (int64_t kk = 0; kk < nk; kk += 8) {
        const int nl = static_cast<int>(nk - kk < 8 ? nk - kk : 8);  // filters in the lanes
        const float* base = src.w + kk * src.filter_stride + c0 * 9;
        F8 g[72];  // g[c * 9 + i]: tap i of channel c0 + c
        for (int j = 0; j < 9; ++j) {
          __m256 r[8];
          for (int l = 0; l < 8; ++l)
            r[l] = l < nl ? _mm256_loadu_ps(base + l * src.filter_stride + 8 * j)
                          : _mm256_setzero_ps();
          transpose8(r);
          for (int e = 0; e < 8; ++e) g[8 * j + e].v = r[e];
        }
        for (int c = 0; c < 8; ++c) filter8(g + 9 * c, U + (c0 + c) * cs + kk, xs);
      }
    }
    if (c0 < Cg)  // the last Cg % 8 channels
      filters_strided({src.w + c0 * 9, src.filter_stride, 9, false}, Cg - c0, nk, U + c0 * cs,
                      cs, xs);
  }

  // Grad-input's turned, transposed filters: the 8 filters of a channel are 72 contiguous
  // floats (9 taps each). Unaligned loads at l*9 and an 8 x 8 transpose give taps 0..7 over
  // the lanes; tap 8 is put together from scalars. (Gathers were 3x slower here.)
  static void filters_flipped(FilterSource<float> src, int64_t Cg, int64_t nk, float* U,
                              int64_t cs, int64_t xs) {
    for (int64_t c = 0; c < Cg; ++c) {
      for (int64_t kk = 0; kk < nk; kk += 8) {
        const int nl = static_cast<int>(nk - kk < 8 ? nk - kk : 8);
        const float* base = src.w + kk * 9 + c * src.channel_stride;
        __m256 r[8];
        alignas(32) float last[8];
        for (int l = 0; l < 8; ++l) {
          r[l] = l < nl ? _mm256_loadu_ps(base + l * 9) : _mm256_setzero_ps();
          last[l] = l < nl ? base[l * 9 + 8] : 0.0f;
        }
        transpose8(r);  // r[i] lane l = tap i of filter l
        F8 g[9];
        g[0].v = _mm256_load_ps(last);  // turned by 180 degrees: tap i reads tap 8 - i
        for (int i = 1; i < 9; ++i) g[i].v = r[8 - i];
        filter8(g, U + c * cs + kk, xs);
      }
    }
  }

  // Any other layout: each tap of 8 filters is one AVX2 gather (lane l at l * filter_stride).
  static void filters_strided(FilterSource<float> src, int64_t Cg, int64_t nk, float* U,
                              int64_t cs, int64_t xs) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i idx =
        _mm256_mullo_epi32(lanes, _mm256_set1_epi32(static_cast<int>(src.filter_stride)));
    for (int64_t c = 0; c < Cg; ++c) {
      for (int64_t kk = 0; kk < nk; kk += 8) {
        const __m256 mask =
            _mm256_castsi256_ps(lane_mask(static_cast<int>(nk - kk < 8 ? nk - kk : 8)));
        const float* base = src.w + kk * src.filter_stride + c * src.channel_stride;
        F8 g[9];
        for (int i = 0; i < 9; ++i)
          g[i].v = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base + (src.rotated ? 8 - i : i),
                                            idx, mask, 4);
        filter8(g, U + c * cs + kk, xs);
      }
    }
  }
};

}  // namespace

template <int M>
const WinogradKernels<float>* kernels() {
  static const WinogradKernels<float> k{"avx2", &Rows<M>::input_row, &Rows<M>::output_row,
                                        &Rows<M>::grad_output_row, &Rows<M>::filters};
  return &k;
}

template const WinogradKernels<float>* kernels<2>();
template const WinogradKernels<float>* kernels<4>();

}  // namespace winograd_avx2
}  // namespace cpu
}  // namespace cnnkern

#endif
