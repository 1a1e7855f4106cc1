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

#include "cpu/gemm/gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#pragma GCC target("avx512f,avx2,fma")

#define CNNKERN_ISA_NS avx512
#include "cpu/gemm/gemm_kernel_impl.h"
#include "cpu/common/transpose_avx2.h"  // 256-bit: AVX-512F implies AVX2 here

namespace cnnkern {
namespace cpu {
namespace gemm_detail {
namespace avx512 {

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

#endif
