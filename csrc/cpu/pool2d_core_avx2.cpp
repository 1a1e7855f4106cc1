// Pooling kernels, AVX2 variant. Only called when the running CPU has AVX2 and FMA
// (cpu/cpu_isa.h). Every header is included before the target pragma, so the only code
// compiled for AVX2 is this file's own, in namespace cnnkern::cpu::avx2.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/pool2d_core.h"
#include "cpu/pool2d_nhwc.h"

#if defined(__x86_64__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define CNNKERN_SIMD_AVX2 1
#endif

#define CNNKERN_ISA_NS avx2
#include "cpu/pool2d_core_impl.h"
#include "cpu/pool2d_nhwc_impl.h"

#if defined(__x86_64__)
#pragma GCC pop_options
#endif
