#pragma once
// Kernel-set selection for the CPU GEMM, and entry points that take an explicit kernel set
// (the tests-only op cnnkern::_gemm uses them to run every instruction set this CPU has).

#include <string>
#include <vector>

#include "cpu/gemm/gemm.h"
#include "cpu/gemm/gemm_kernels.h"

namespace cnnkern {
namespace cpu {
namespace gemm_detail {

// The kernel sets this CPU can run, best first ("avx512", "avx2", "avx512_emulated", "generic").
std::vector<std::string> available_isas();

// The named kernel set ("" = the one gemm() uses); throws naming the choices if it is unknown
// or this CPU cannot run it.
template <typename T>
const GemmKernels<T>& kernels_for(const std::string& isa);

template <typename T>
void gemm_with(const GemmKernels<T>& kt, int64_t M, int64_t N, int64_t K, const T* A,
               int64_t rsa, int64_t csa, const T* B, int64_t rsb, int64_t csb, T beta, T* C,
               int64_t rsc);

template <typename T>
GemmPackedA<T> gemm_pack_a_with(const GemmKernels<T>& kt, int64_t M, int64_t K, const T* A,
                                int64_t rsa, int64_t csa);

}  // namespace gemm_detail
}  // namespace cpu
}  // namespace cnnkern
