// Opens the AVX-512 part of an ISA translation unit: what follows, up to
// cpu/common/avx2_end.h, is compiled for AVX-512 F/BW/DQ/VL (+ AVX2, FMA) on x86-64 (elsewhere
// for the default target, never called there) in namespace cnnkern::cpu::avx512. Include
// every other header before it (see avx2_begin.h). No include guard: once per translation unit.
#if defined(__x86_64__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#define CNNKERN_SIMD_AVX512 1
#endif
#define CNNKERN_ISA_NS avx512
