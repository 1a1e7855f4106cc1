#pragma once
// cp.async (sm_80+): asynchronous 4/8/16-byte copies from global to shared memory, in groups.
// One spelling for the kernels: inline PTX under nvcc, the CUDA emulator's model of the
// instructions under CNNKERN_CUDA_EMU (csrc/testing/cuda_emu/async_copy.h: a copy is not
// visible until its thread waits for its group). Torch-free.
//
//   cp_async_ca<Bytes>(smem, gmem, src_bytes)   cp.async.ca.shared.global, Bytes in {4, 8, 16},
//                                               cached in L1 and L2
//   cp_async_cg(smem, gmem, src_bytes)          cp.async.cg.shared.global, 16 bytes, L2 only
//     src_bytes (default: all) bytes are read from gmem; the rest of the destination is
//     zero-filled (src_bytes = 0: zeros, the padding of an im2col tile). smem and gmem must be
//     aligned to the copy's size.
//   cp_async_commit()                           cp.async.commit_group: closes the current group
//   cp_async_wait_group<N>()                    cp.async.wait_group N: returns when at most the
//                                               N most recent groups of this thread are pending
//   cp_async_wait_all()                         cp.async.wait_all
// The wait makes the copies visible to the waiting thread only: other threads read them after
// a __syncthreads that follows the wait.

#include <cstdint>

#include "cuda/ptx_caller.cuh"

namespace cnnkern {
namespace cuda_async {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define CNNKERN_CP_ASYNC_PTX(op, dst, src, bytes, src_bytes) __trap()
#define CNNKERN_CP_ASYNC_CONTROL(text) __trap()
#elif !defined(CNNKERN_CUDA_EMU)
#define CNNKERN_CP_ASYNC_PTX(op, dst, src, bytes, src_bytes)                             \
  asm volatile("cp.async." op ".shared.global [%0], [%1], %2, %3;\n" ::"r"(             \
                   static_cast<uint32_t>(__cvta_generic_to_shared(dst))),               \
               "l"(src), "n"(bytes), "r"(src_bytes)                                      \
               : "memory")
#define CNNKERN_CP_ASYNC_CONTROL(text) asm volatile(text ::: "memory")
#endif

template <int Bytes>
__device__ inline void cp_async_ca(void* smem, const void* gmem,
                                   int src_bytes = Bytes CNNKERN_PTX_CALLER) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(CNNKERN_CUDA_EMU)
  ::cuda_emu::cp_async(smem, gmem, Bytes, src_bytes, false, CNNKERN_PTX_HERE);
#else
  CNNKERN_CP_ASYNC_PTX("ca", smem, gmem, Bytes, src_bytes);
#endif
}

__device__ inline void cp_async_cg(void* smem, const void* gmem,
                                   int src_bytes = 16 CNNKERN_PTX_CALLER) {
#if defined(CNNKERN_CUDA_EMU)
  ::cuda_emu::cp_async(smem, gmem, 16, src_bytes, true, CNNKERN_PTX_HERE);
#else
  CNNKERN_CP_ASYNC_PTX("cg", smem, gmem, 16, src_bytes);
#endif
}

__device__ inline void cp_async_commit(CNNKERN_PTX_CALLER_ONLY) {
#if defined(CNNKERN_CUDA_EMU)
  ::cuda_emu::cp_async_commit(CNNKERN_PTX_HERE);
#else
  CNNKERN_CP_ASYNC_CONTROL("cp.async.commit_group;\n");
#endif
}

template <int N>
__device__ inline void cp_async_wait_group(CNNKERN_PTX_CALLER_ONLY) {
  static_assert(N >= 0, "cp.async.wait_group takes a non-negative group count");
#if defined(CNNKERN_CUDA_EMU)
  ::cuda_emu::cp_async_wait(N, CNNKERN_PTX_HERE);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

__device__ inline void cp_async_wait_all(CNNKERN_PTX_CALLER_ONLY) {
#if defined(CNNKERN_CUDA_EMU)
  ::cuda_emu::cp_async_wait(-1, CNNKERN_PTX_HERE);
#else
  CNNKERN_CP_ASYNC_CONTROL("cp.async.wait_all;\n");
#endif
}

#undef CNNKERN_CP_ASYNC_PTX
#undef CNNKERN_CP_ASYNC_CONTROL

}  // namespace cuda_async
}  // namespace cnnkern
