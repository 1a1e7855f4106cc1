// GEMM kernels for AVX-512F (512-bit vectors): fp32 12 x 32 and fp64 12 x 16 micro-tiles,
// i.e. 24 zmm accumulators + 2 B vectors + 1 broadcast of the 32 registers. kc = 192 keeps the
// kc x 32 fp32 B micro-panel (24 KiB) in a 32-48 KiB L1d; mc x kc A blocks (288 KiB) sit in
// a 1-2 MiB L2.
//
// Torch-free and compiled for AVX-512 by the pragma below only (never the whole library):
// gemm.cpp calls into it after __builtin_cpu_supports("avx512f") says the CPU has it. The
// same shapes and blocks run, emulated with ymm pairs, in gemm_kernels_avx2.cpp, which is
// how the tests check this blocking on a CPU without AVX-512.

#include <cstdint>

#include "cpu/gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#pragma GCC target("avx512f,avx2,fma")

#define CNNKERN_GEMM_ISA avx512
#include "cpu/gemm_kernel_impl.h"

namespace cnnkern {
namespace cpu {
namespace gemm_detail {
namespace avx512 {

// Transposes for packing a transposed B: 256-bit ones (AVX-512F implies AVX2 here).
inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds),
               r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds),
               r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds),
               r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
               t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
               t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)),
               u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
               u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)),
               u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),
               u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)),
               u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),
               u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)),
               u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

inline void transpose4x4(const double* src, int64_t lds, double* dst, int64_t ldd) {
  const __m256d r0 = _mm256_loadu_pd(src), r1 = _mm256_loadu_pd(src + lds),
                r2 = _mm256_loadu_pd(src + 2 * lds), r3 = _mm256_loadu_pd(src + 3 * lds);
  const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1),
                t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
  _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t0, t2, 0x20));
  _mm256_storeu_pd(dst + ldd, _mm256_permute2f128_pd(t1, t3, 0x20));
  _mm256_storeu_pd(dst + 2 * ldd, _mm256_permute2f128_pd(t0, t2, 0x31));
  _mm256_storeu_pd(dst + 3 * ldd, _mm256_permute2f128_pd(t1, t3, 0x31));
}

struct F32 {
  using T = float;
  using reg = __m512;
  static constexpr int W = 16;
  static constexpr int TB = 8;
  static void transpose(const T* src, int64_t lds, T* dst, int64_t ldd) {
    transpose8x8(src, lds, dst, ldd);
  }
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg bcast(const T* p) { return _mm512_set1_ps(*p); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
};

struct F64 {
  using T = double;
  using reg = __m512d;
  static constexpr int W = 8;
  static constexpr int TB = 4;
  static void transpose(const T* src, int64_t lds, T* dst, int64_t ldd) {
    transpose4x4(src, lds, dst, ldd);
  }
  static reg zero() { return _mm512_setzero_pd(); }
  static reg load(const T* p) { return _mm512_loadu_pd(p); }
  static void store(T* p, reg v) { _mm512_storeu_pd(p, v); }
  static reg bcast(const T* p) { return _mm512_set1_pd(*p); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
};

// Keep in step with the emulated tables in gemm_kernels_avx2.cpp.
constexpr GemmKernels<float> kF32 = make_kernels<F32, 12, 2>("avx512", 192, 384, 2048);
constexpr GemmKernels<double> kF64 = make_kernels<F64, 12, 2>("avx512", 192, 192, 1024);

}  // namespace avx512

const GemmKernels<float>* gemm_kernels_avx512_f32() { return &avx512::kF32; }
const GemmKernels<double>* gemm_kernels_avx512_f64() { return &avx512::kF64; }

}  // namespace gemm_detail
}  // namespace cpu
}  // namespace cnnkern

#else  // not x86

namespace cnnkern {
namespace cpu {
namespace gemm_detail {
const GemmKernels<float>* gemm_kernels_avx512_f32() { return nullptr; }
const GemmKernels<double>* gemm_kernels_avx512_f64() { return nullptr; }
}  // namespace gemm_detail
}  // namespace cpu
}  // namespace cnnkern

#endif
