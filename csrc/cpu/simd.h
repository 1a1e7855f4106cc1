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

#if !defined(CNNKERN_ISA_NS)
#error "define CNNKERN_ISA_NS before including cpu/simd.h (see cpu/cpu_isa.h)"
#endif

#if defined(CNNKERN_SIMD_AVX2)
#include <immintrin.h>
#endif

namespace cnnkern {
namespace cpu {
namespace CNNKERN_ISA_NS {

template <typename T>
struct Vec;

#if defined(CNNKERN_SIMD_AVX2)

template <>
struct Vec<float> {
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
  // The first n lanes (0 <= n <= N) from p, zeros after; never touches memory past them.
  using mask = __m256i;
  static inline mask first(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline reg load_first(const float* p, mask m) { return _mm256_maskload_ps(p, m); }
  // Sum of the lanes, in a fixed order: (l0+l4 + l2+l6) + (l1+l5 + l3+l7).
  static inline float hsum(reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
  }
};

template <>
struct Vec<double> {
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
  using mask = __m256i;
  static inline mask first(int n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static inline reg load_first(const double* p, mask m) { return _mm256_maskload_pd(p, m); }
  static inline double hsum(reg v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
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
  using mask = int;
  static inline mask first(int n) { return n; }
  static inline reg load_first(const T* p, mask n) {
    T tmp[N] = {};
    std::memcpy(tmp, p, sizeof(T) * n);
    return load(tmp);
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
