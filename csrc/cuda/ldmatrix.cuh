#pragma once
// ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}.shared.b16 (sm_75+): a warp loads 1, 2 or 4 8x8
// matrices of 16-bit elements from shared memory straight into mma.sync fragments. One
// spelling for the kernels: inline PTX under nvcc, the CUDA emulator's version (written from
// the PTX ISA, csrc/testing/cuda_emu/ldmatrix.cpp) under CNNKERN_CUDA_EMU. Torch-free.
//
//   ldmatrix<N>(regs, row)         regs: uint32_t[N]; row: this lane's row address
//   ldmatrix<N, true>(regs, row)   the same, each matrix transposed (.trans)
// Lane 8 i + r gives the address of row r of matrix i (16 bytes, 16-byte aligned, in shared
// memory; the other lanes' addresses are unused). Lane t receives in regs[i] the elements
// (t / 4, 2 (t % 4)) and (t / 4, 2 (t % 4) + 1) of matrix i (of its transpose with .trans),
// the lower column in the low half: the A/B fragment layout of mma.sync m16n8k16. Every lane
// of the warp must call it together (.sync.aligned), with the same N and transposition.

#include <cstdint>

#include "cuda/ptx_caller.cuh"

namespace cnnkern {
namespace cuda_async {

#if !defined(CNNKERN_CUDA_EMU)
#define CNNKERN_LDMATRIX_PTX(suffix, regs, row)                                               \
  do {                                                                                       \
    const uint32_t addr_ = static_cast<uint32_t>(__cvta_generic_to_shared(row));            \
    if constexpr (sizeof(regs) / sizeof(regs[0]) == 1)                                       \
      asm volatile("ldmatrix.sync.aligned.m8n8.x1" suffix ".shared.b16 {%0}, [%1];\n"      \
                   : "=r"(regs[0]) : "r"(addr_));                                            \
    else if constexpr (sizeof(regs) / sizeof(regs[0]) == 2)                                  \
      asm volatile("ldmatrix.sync.aligned.m8n8.x2" suffix ".shared.b16 {%0, %1}, [%2];\n"  \
                   : "=r"(regs[0]), "=r"(regs[1]) : "r"(addr_));                             \
    else                                                                                     \
      asm volatile("ldmatrix.sync.aligned.m8n8.x4" suffix                                   \
                   ".shared.b16 {%0, %1, %2, %3}, [%4];\n"                                  \
                   : "=r"(regs[0]), "=r"(regs[1]), "=r"(regs[2]), "=r"(regs[3])              \
                   : "r"(addr_));                                                            \
  } while (0)
#endif

template <int N, bool Trans = false>
__device__ inline void ldmatrix(uint32_t (&regs)[N], const void* row CNNKERN_PTX_CALLER) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
#if defined(CNNKERN_CUDA_EMU)
  ::cuda_emu::ldmatrix(N, Trans, regs, row, CNNKERN_PTX_HERE);
#else
  if constexpr (Trans) CNNKERN_LDMATRIX_PTX(".trans", regs, row);
  else CNNKERN_LDMATRIX_PTX("", regs, row);
#endif
}

#undef CNNKERN_LDMATRIX_PTX

}  // namespace cuda_async
}  // namespace cnnkern
