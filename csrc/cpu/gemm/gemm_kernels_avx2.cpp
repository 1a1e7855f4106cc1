// GEMM kernels for AVX2 + FMA (256-bit vectors): fp32 6 x 16 and fp64 6 x 8 micro-tiles, i.e.
// 12 ymm accumulators + 2 B vectors + 1 broadcast of the 16 registers. Block sizes for a
// 32 KiB L1d / 512 KiB L2 core (AMD Zen 3, the CI machine): the kc x 16 fp32 B micro-panel
// (16 KiB at kc = 256) stays in L1, the mc x kc A block (144 KiB) in L2.
//
// Torch-free and compiled for AVX2 by the pragma below only; gemm.cpp calls into it after
// __builtin_cpu_supports("avx2") and ("fma") say the CPU has them.
//
// Also here: the AVX-512 tile shapes and block sizes emulated with pairs of ymm registers
// (gemm_kernels_avx512_emulated_*), so that tests can check the AVX-512 blocking on a CPU
// without AVX-512. They are never chosen automatically.

#include <cstdint>

#include "cpu/gemm/gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#pragma GCC target("avx2,fma")

#define CNNKERN_ISA_NS avx2
#include "cpu/gemm/gemm_kernel_impl.h"
#include "cpu/common/transpose_avx2.h"

namespace cnnkern {
namespace cpu {
namespace gemm_detail {
namespace avx2 {

struct F32 {
  using T = float;
  using reg = __m256;
  static constexpr int W = 8;
  static constexpr int TB = 8;
  static void transpose(const T* src, int64_t lds, T* dst, int64_t ldd) {
    transpose8x8(src, lds, dst, ldd);
  }
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg bcast(const T* p) { return _mm256_broadcast_ss(p); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
};

struct F64 {
  using T = double;
  using reg = __m256d;
  static constexpr int W = 4;
  static constexpr int TB = 4;
  static void transpose(const T* src, int64_t lds, T* dst, int64_t ldd) {
    transpose4x4(src, lds, dst, ldd);
  }
  static reg zero() { return _mm256_setzero_pd(); }
  static reg load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, reg v) { _mm256_storeu_pd(p, v); }
  static reg bcast(const T* p) { return _mm256_broadcast_sd(p); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
};

// A 512-bit register as two 256-bit halves (for the emulated AVX-512 tables).
template <class H>
struct Pair {
  using T = typename H::T;
  struct reg {
    typename H::reg lo, hi;
  };
  static constexpr int W = 2 * H::W;
  static constexpr int TB = H::TB;
  static void transpose(const T* src, int64_t lds, T* dst, int64_t ldd) {
    H::transpose(src, lds, dst, ldd);
  }
  static reg zero() { return {H::zero(), H::zero()}; }
  static reg load(const T* p) { return {H::load(p), H::load(p + H::W)}; }
  static void store(T* p, reg v) {
    H::store(p, v.lo);
    H::store(p + H::W, v.hi);
  }
  static reg bcast(const T* p) { return {H::bcast(p), H::bcast(p)}; }
  static reg fma(reg a, reg b, reg c) { return {H::fma(a.lo, b.lo, c.lo), H::fma(a.hi, b.hi, c.hi)}; }
  static reg add(reg a, reg b) { return {H::add(a.lo, b.lo), H::add(a.hi, b.hi)}; }
};

constexpr GemmKernels<float> kF32 = make_kernels<F32, 6, 2>("avx2", 256, 144, 2048);
constexpr GemmKernels<double> kF64 = make_kernels<F64, 6, 2>("avx2", 256, 144, 1024);
// Same shapes and blocks as gemm_kernels_avx512.cpp.
constexpr GemmKernels<float> kEmuF32 =
    make_kernels<Pair<F32>, 12, 2>("avx512_emulated", 192, 384, 2048);
constexpr GemmKernels<double> kEmuF64 =
    make_kernels<Pair<F64>, 12, 2>("avx512_emulated", 192, 192, 1024);

}  // namespace avx2

const GemmKernels<float>* gemm_kernels_avx2_f32() { return &avx2::kF32; }
const GemmKernels<double>* gemm_kernels_avx2_f64() { return &avx2::kF64; }
const GemmKernels<float>* gemm_kernels_avx512_emulated_f32() { return &avx2::kEmuF32; }
const GemmKernels<double>* gemm_kernels_avx512_emulated_f64() { return &avx2::kEmuF64; }

}  // namespace gemm_detail
}  // namespace cpu
}  // namespace cnnkern

#endif
