// Opens the AVX2 + FMA part of an ISA translation unit: what follows, up to
// cpu/common/avx2_end.h, is compiled for AVX2 + FMA (on x86-64; elsewhere for the default
// target) in namespace cnnkern::cpu::avx2 (CNNKERN_ISA_NS). Include every other header
// before it, so that no shared inline function is compiled for AVX2 and picked by the linker
// for CPUs without it. No include guard: once per translation unit, by design.
#if defined(__x86_64__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define CNNKERN_SIMD_AVX2 1
#endif
#define CNNKERN_ISA_NS avx2
