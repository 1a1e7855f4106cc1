// Portable GEMM kernels: GCC/Clang vector extensions of 16 bytes (SSE2 on any x86-64, NEON
// on ARM), fp32 4 x 8 and fp64 4 x 4 micro-tiles (8 accumulator registers). The fallback
// for CPUs without AVX2 + FMA; compiled with the library's default flags.

#include <cstdint>

#include "cpu/gemm/gemm_kernels.h"

#define CNNKERN_ISA_NS generic
#include "cpu/gemm/gemm_kernel_impl.h"

namespace cnnkern {
namespace cpu {
namespace gemm_detail {
namespace generic {

template <typename E>
struct Vec16 {
  using T = E;
  typedef E reg __attribute__((vector_size(16)));
  static constexpr int W = 16 / sizeof(E);
  static constexpr int TB = 0;  // no register transpose: pack transposed B element-wise
  static void transpose(const T*, int64_t, T*, int64_t) {}
  static reg zero() { return reg{}; }
  static reg load(const T* p) {
    reg v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
  }
  static void store(T* p, reg v) { __builtin_memcpy(p, &v, sizeof(v)); }
  static reg bcast(const T* p) { return reg{} + *p; }
  // Not fused: the fallback may lack an FMA unit (results differ from the FMA kernels in the
  // last bit, as any two BLAS builds do).
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static reg add(reg a, reg b) { return a + b; }
};

constexpr GemmKernels<float> kF32 = make_kernels<Vec16<float>, 4, 2>("generic", 256, 128, 2048);
constexpr GemmKernels<double> kF64 = make_kernels<Vec16<double>, 4, 2>("generic", 256, 128, 1024);

}  // namespace generic

const GemmKernels<float>* gemm_kernels_generic_f32() { return &generic::kF32; }
const GemmKernels<double>* gemm_kernels_generic_f64() { return &generic::kF64; }

}  // namespace gemm_detail
}  // namespace cpu
}  // namespace cnnkern
