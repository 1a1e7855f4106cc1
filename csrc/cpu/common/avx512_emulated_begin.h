// Opens the emulated-AVX-512 part of an ISA translation unit: the AVX-512 variant's code with
// its vector width (16 floats, 8 doubles) built from pairs of AVX2 registers, compiled for
// AVX2 + FMA in namespace cnnkern::cpu::avx512_emulated, up to cpu/common/avx2_end.h. It lets
// the tests run the AVX-512 variants' tiling and edge handling on a CPU without AVX-512
// (CNNKERN_CPU_ISA=avx512_emulated). No include guard: once per translation unit.
#if defined(__x86_64__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define CNNKERN_SIMD_AVX2 1
#define CNNKERN_SIMD_AVX512_EMULATED 1
#endif
#define CNNKERN_ISA_NS avx512_emulated
