// Closes the region cpu/common/avx2_begin.h (or avx512_begin.h, avx512_emulated_begin.h)
// opened. No include guard, by design.
#if defined(__x86_64__)
#pragma GCC pop_options
#endif
