#pragma once
// AddressSanitizer's manual poisoning, for the engine's shared-memory arena and the pending
// cp.async destinations; nothing in the other flavours.

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define CUDA_EMU_ASAN_POISON(p, n) __asan_poison_memory_region((p), (n))
#define CUDA_EMU_ASAN_UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define CUDA_EMU_ASAN_POISON(p, n) ((void)(p), (void)(n))
#define CUDA_EMU_ASAN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif
