#pragma once
// Minimal SIMD vectors for the ISA-specific CPU kernels: Vec<T> with N lanes, unaligned
// load/store, broadcast, multiply-add, add, max and the helpers the pooling kernels need.
//
// Only ISA translation units include this, *after* their `#pragma GCC target(...)`, with
// CNNKERN_ISA_NS defined (the namespace that keeps each variant's symbols apart) and, for
// AVX2, CNNKERN_SIMD_AVX2. Everything here is static inline: no symbol escapes the TU, so
// no AVX2 code can be picked by the linker for a baseline caller.

#include <cstdint>
#include <cstring>
#include <type_traits>

#if !defined(CNNKERN_ISA_NS)
#error "define CNNKERN_ISA_NS before including cpu/common/simd.h (see cpu/common/cpu_isa.h)"
#endif

#if defined(CNNKERN_SIMD_AVX2) || defined(CNNKERN_SIMD_AVX512)
#include <immintrin.h>
#endif

namespace cnnkern {
namespace cpu {
namespace CNNKERN_ISA_NS {

template <typename T>
struct Vec;

#if defined(CNNKERN_SIMD_AVX2)

struct Avx2F {
  using T = float;
  using reg = __m256;
  static constexpr int N = 8;
  static inline reg zero() { return _mm256_setzero_ps(); }
  static inline reg load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static inline reg bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static inline reg set1(float v) { return _mm256_set1_ps(v); }
  static inline reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static inline reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static inline reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  static inline reg and_bits(reg a, reg b) { return _mm256_and_ps(a, b); }
  // Pooling helpers. load_s2: lanes p[0], p[2], ..., p[2N-2] (reads p[0 .. 2N-1]).
  static inline reg load_s2(const float* p) {
    const __m256 t = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8),
                                       _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  static inline reg iota() { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }
  static inline reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  // p[2i] += v[i] for i < N; p[2i+1] gets -0.0 added, which leaves every value unchanged.
  static inline void add_s2(float* p, reg v) {
    const __m256 nz = _mm256_set1_ps(-0.0f);
    const __m256 lo = _mm256_unpacklo_ps(v, nz), hi = _mm256_unpackhi_ps(v, nz);
    _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), _mm256_permute2f128_ps(lo, hi, 0x20)));
    _mm256_storeu_ps(p + 8,
                     _mm256_add_ps(_mm256_loadu_ps(p + 8), _mm256_permute2f128_ps(lo, hi, 0x31)));
  }
  using bmask = __m256;
  // max pooling's update rule, per lane: v > best, or v is NaN
  static inline bmask takes(reg v, reg best) {
    return _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  static inline reg select(bmask m, reg if_true, reg if_false) {
    return _mm256_blendv_ps(if_false, if_true, m);
  }
  // The first n lanes (0 <= n <= N) from p, zeros after (store_first: to p); never touches
  // memory past them.
  using mask = __m256i;
  static inline mask first(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline reg load_first(const float* p, mask m) { return _mm256_maskload_ps(p, m); }
  static inline void store_first(float* p, mask m, reg v) { _mm256_maskstore_ps(p, m, v); }
  // Sum of the lanes, in a fixed order: (l0+l4 + l2+l6) + (l1+l5 + l3+l7).
  static inline float hsum(reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
  }
};

struct Avx2D {
  using T = double;
  using reg = __m256d;
  static constexpr int N = 4;
  static inline reg zero() { return _mm256_setzero_pd(); }
  static inline reg load(const double* p) { return _mm256_loadu_pd(p); }
  static inline void store(double* p, reg v) { _mm256_storeu_pd(p, v); }
  static inline reg bcast(const double* p) { return _mm256_broadcast_sd(p); }
  static inline reg set1(double v) { return _mm256_set1_pd(v); }
  static inline reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
  static inline reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
  static inline reg div(reg a, reg b) { return _mm256_div_pd(a, b); }
  static inline reg and_bits(reg a, reg b) { return _mm256_and_pd(a, b); }
  static inline reg load_s2(const double* p) {
    const __m256d t = _mm256_unpacklo_pd(_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4));
    return _mm256_permute4x64_pd(t, _MM_SHUFFLE(3, 1, 2, 0));
  }
  static inline reg iota() { return _mm256_setr_pd(0, 1, 2, 3); }
  static inline reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
  static inline void add_s2(double* p, reg v) {
    const __m256d nz = _mm256_set1_pd(-0.0);
    const __m256d lo = _mm256_unpacklo_pd(v, nz), hi = _mm256_unpackhi_pd(v, nz);
    _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), _mm256_permute2f128_pd(lo, hi, 0x20)));
    _mm256_storeu_pd(p + 4,
                     _mm256_add_pd(_mm256_loadu_pd(p + 4), _mm256_permute2f128_pd(lo, hi, 0x31)));
  }
  using bmask = __m256d;
  static inline bmask takes(reg v, reg best) {
    return _mm256_or_pd(_mm256_cmp_pd(v, best, _CMP_GT_OQ), _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
  }
  static inline reg select(bmask m, reg if_true, reg if_false) {
    return _mm256_blendv_pd(if_false, if_true, m);
  }
  using mask = __m256i;
  static inline mask first(int n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static inline reg load_first(const double* p, mask m) { return _mm256_maskload_pd(p, m); }
  static inline void store_first(double* p, mask m, reg v) { _mm256_maskstore_pd(p, m, v); }
  static inline double hsum(reg v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
};

#if defined(CNNKERN_SIMD_AVX512_EMULATED)
// The AVX-512 variants' vector width with AVX2 instructions (two ymm per zmm): the test vehicle
// that runs their tiling and edge handling on a CPU without AVX-512.
template <class H>
struct Pair {
  using T = typename H::T;
  struct reg {
    typename H::reg lo, hi;
  };
  static constexpr int N = 2 * H::N;
  static inline reg zero() { return {H::zero(), H::zero()}; }
  static inline reg load(const T* p) { return {H::load(p), H::load(p + H::N)}; }
  static inline void store(T* p, reg v) {
    H::store(p, v.lo);
    H::store(p + H::N, v.hi);
  }
  static inline reg bcast(const T* p) { return {H::bcast(p), H::bcast(p)}; }
  static inline reg set1(T v) { return {H::set1(v), H::set1(v)}; }
  static inline reg fmadd(reg a, reg b, reg c) {
    return {H::fmadd(a.lo, b.lo, c.lo), H::fmadd(a.hi, b.hi, c.hi)};
  }
  static inline reg add(reg a, reg b) { return {H::add(a.lo, b.lo), H::add(a.hi, b.hi)}; }
  static inline reg div(reg a, reg b) { return {H::div(a.lo, b.lo), H::div(a.hi, b.hi)}; }
  static inline reg mul(reg a, reg b) { return {H::mul(a.lo, b.lo), H::mul(a.hi, b.hi)}; }
  static inline reg and_bits(reg a, reg b) {
    return {H::and_bits(a.lo, b.lo), H::and_bits(a.hi, b.hi)};
  }
  static inline reg load_s2(const T* p) { return {H::load_s2(p), H::load_s2(p + 2 * H::N)}; }
  static inline reg iota() { return {H::iota(), H::add(H::iota(), H::set1(T(H::N)))}; }
  static inline void add_s2(T* p, reg v) {
    H::add_s2(p, v.lo);
    H::add_s2(p + 2 * H::N, v.hi);
  }
  struct bmask {
    typename H::bmask lo, hi;
  };
  static inline bmask takes(reg v, reg best) {
    return {H::takes(v.lo, best.lo), H::takes(v.hi, best.hi)};
  }
  static inline reg select(bmask m, reg if_true, reg if_false) {
    return {H::select(m.lo, if_true.lo, if_false.lo), H::select(m.hi, if_true.hi, if_false.hi)};
  }
  struct mask {
    typename H::mask lo, hi;
  };
  // H::first(n) with n <= 0 sets no lane, and a masked load of no lane reads nothing.
  static inline mask first(int n) { return {H::first(n), H::first(n - H::N)}; }
  static inline reg load_first(const T* p, mask m) {
    return {H::load_first(p, m.lo), H::load_first(p + H::N, m.hi)};
  }
  static inline void store_first(T* p, mask m, reg v) {
    H::store_first(p, m.lo, v.lo);
    H::store_first(p + H::N, m.hi, v.hi);
  }
  static inline T hsum(reg v) { return H::hsum(H::add(v.lo, v.hi)); }
};

template <>
struct Vec<float> : Pair<Avx2F> {};
template <>
struct Vec<double> : Pair<Avx2D> {};
#else
template <>
struct Vec<float> : Avx2F {};
template <>
struct Vec<double> : Avx2D {};
#endif

#elif defined(CNNKERN_SIMD_AVX512)

// AVX-512 F + BW + DQ + VL: 16 floats / 8 doubles per zmm, mask registers for the lane masks.
template <>
struct Vec<float> {
  using reg = __m512;
  static constexpr int N = 16;
  static inline reg zero() { return _mm512_setzero_ps(); }
  static inline reg load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static inline reg bcast(const float* p) { return _mm512_set1_ps(*p); }
  static inline reg set1(float v) { return _mm512_set1_ps(v); }
  static inline reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static inline reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static inline reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static inline reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static inline reg and_bits(reg a, reg b) { return _mm512_and_ps(a, b); }
  // Lanes p[0], p[2], ..., p[30] (reads p[0 .. 31]).
  static inline reg load_s2(const float* p) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_loadu_ps(p + 16));
  }
  static inline reg iota() {
    return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }
  // p[2i] += v[i]; the odd elements get -0.0 added, which leaves every value unchanged.
  static inline void add_s2(float* p, reg v) {
    const __m512 nz = _mm512_set1_ps(-0.0f);
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 16, 2, 16, 3, 16, 4, 16, 5, 16, 6, 16, 7, 16);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_setr_epi32(8, 0, 8, 0, 8, 0, 8, 0, 8, 0, 8, 0,
                                                               8, 0, 8, 0));
    _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), _mm512_permutex2var_ps(v, lo, nz)));
    _mm512_storeu_ps(p + 16,
                     _mm512_add_ps(_mm512_loadu_ps(p + 16), _mm512_permutex2var_ps(v, hi, nz)));
  }
  using bmask = __mmask16;
  static inline bmask takes(reg v, reg best) {
    return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  static inline reg select(bmask m, reg if_true, reg if_false) {
    return _mm512_mask_blend_ps(m, if_false, if_true);
  }
  using mask = __mmask16;
  static inline mask first(int n) {
    return n >= 16 ? mask(0xffff) : n <= 0 ? mask(0) : mask((1u << n) - 1);
  }
  // Masked-off lanes are never read (no fault past the end of a buffer).
  static inline reg load_first(const float* p, mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static inline void store_first(float* p, mask m, reg v) { _mm512_mask_storeu_ps(p, m, v); }
  static inline float hsum(reg v) {  // fixed order: halves, then as the AVX2 variant
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
  }
};

template <>
struct Vec<double> {
  using reg = __m512d;
  static constexpr int N = 8;
  static inline reg zero() { return _mm512_setzero_pd(); }
  static inline reg load(const double* p) { return _mm512_loadu_pd(p); }
  static inline void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static inline reg bcast(const double* p) { return _mm512_set1_pd(*p); }
  static inline reg set1(double v) { return _mm512_set1_pd(v); }
  static inline reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static inline reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static inline reg div(reg a, reg b) { return _mm512_div_pd(a, b); }
  static inline reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static inline reg and_bits(reg a, reg b) { return _mm512_and_pd(a, b); }
  static inline reg load_s2(const double* p) {
    const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    return _mm512_permutex2var_pd(_mm512_loadu_pd(p), even, _mm512_loadu_pd(p + 8));
  }
  static inline reg iota() { return _mm512_setr_pd(0, 1, 2, 3, 4, 5, 6, 7); }
  static inline void add_s2(double* p, reg v) {
    const __m512d nz = _mm512_set1_pd(-0.0);
    const __m512i lo = _mm512_setr_epi64(0, 8, 1, 8, 2, 8, 3, 8);
    const __m512i hi = _mm512_setr_epi64(4, 8, 5, 8, 6, 8, 7, 8);
    _mm512_storeu_pd(p, _mm512_add_pd(_mm512_loadu_pd(p), _mm512_permutex2var_pd(v, lo, nz)));
    _mm512_storeu_pd(p + 8,
                     _mm512_add_pd(_mm512_loadu_pd(p + 8), _mm512_permutex2var_pd(v, hi, nz)));
  }
  using bmask = __mmask8;
  static inline bmask takes(reg v, reg best) {
    return _mm512_cmp_pd_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q);
  }
  static inline reg select(bmask m, reg if_true, reg if_false) {
    return _mm512_mask_blend_pd(m, if_false, if_true);
  }
  using mask = __mmask8;
  static inline mask first(int n) {
    return n >= 8 ? mask(0xff) : n <= 0 ? mask(0) : mask((1u << n) - 1);
  }
  static inline reg load_first(const double* p, mask m) { return _mm512_maskz_loadu_pd(m, p); }
  static inline void store_first(double* p, mask m, reg v) { _mm512_mask_storeu_pd(p, m, v); }
  static inline double hsum(reg v) {
    const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
};

#else  // portable: GCC vector extensions, 16-byte vectors (SSE2 on baseline x86-64)

template <typename T>
struct GenericVec {
  typedef T reg __attribute__((vector_size(16)));
  static constexpr int N = 16 / sizeof(T);
  static inline reg zero() { return reg{}; }
  static inline reg load(const T* p) {
    reg v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  static inline void store(T* p, reg v) { std::memcpy(p, &v, sizeof(v)); }
  static inline reg set1(T v) { return reg{} + v; }
  static inline reg bcast(const T* p) { return set1(*p); }
  // Two roundings (no FMA in the baseline ISA); consistent within this variant.
  static inline reg fmadd(reg a, reg b, reg c) { return a * b + c; }
  static inline reg add(reg a, reg b) { return a + b; }
  static inline reg div(reg a, reg b) { return a / b; }
  static inline reg and_bits(reg a, reg b) {
    typedef int64_t bits __attribute__((vector_size(16)));
    return reinterpret_cast<reg>(reinterpret_cast<bits>(a) & reinterpret_cast<bits>(b));
  }
  // Same-width signed integers: the type of a lane-wise comparison.
  typedef typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type lane_int;
  typedef lane_int bmask __attribute__((vector_size(16)));
  static inline reg load_s2(const T* p) {
    const reg a = load(p), b = load(p + N);
    if constexpr (N == 4) return __builtin_shuffle(a, b, bmask{0, 2, 4, 6});
    else return __builtin_shuffle(a, b, bmask{0, 2});
  }
  static inline reg iota() {
    reg v;
    for (int i = 0; i < N; ++i) v[i] = T(i);
    return v;
  }
  static inline reg mul(reg a, reg b) { return a * b; }
  static inline void add_s2(T* p, reg v) {
    const reg nz = set1(T(-0.0));
    if constexpr (N == 4) {
      store(p, load(p) + __builtin_shuffle(v, nz, bmask{0, 4, 1, 5}));
      store(p + N, load(p + N) + __builtin_shuffle(v, nz, bmask{2, 6, 3, 7}));
    } else {
      store(p, load(p) + __builtin_shuffle(v, nz, bmask{0, 2}));
      store(p + N, load(p + N) + __builtin_shuffle(v, nz, bmask{1, 3}));
    }
  }
  static inline bmask takes(reg v, reg best) { return (v > best) | (v != v); }
  static inline reg select(bmask m, reg if_true, reg if_false) { return m ? if_true : if_false; }
  using mask = int;
  static inline mask first(int n) { return n; }
  static inline reg load_first(const T* p, mask n) {
    T tmp[N] = {};
    std::memcpy(tmp, p, sizeof(T) * n);
    return load(tmp);
  }
  static inline void store_first(T* p, mask n, reg v) {
    T tmp[N];
    store(tmp, v);
    std::memcpy(p, tmp, sizeof(T) * n);
  }
  static inline T hsum(reg v) {
    T l[N];
    store(l, v);
    T s = l[0];
    for (int i = 1; i < N; ++i) s += l[i];
    return s;
  }
};

template <>
struct Vec<float> : GenericVec<float> {};
template <>
struct Vec<double> : GenericVec<double> {};

#endif

}  // namespace CNNKERN_ISA_NS
}  // namespace cpu
}  // namespace cnnkern
