#pragma once
// The CPU GEMM every GEMM-based algorithm uses (im2col, Winograd's element-wise stage).
//
//   C = A * B + beta * C     A: M x K, B: K x N, C: M x N
//
// A and B are strided views (element (i, j) of A is A[i * rsa + j * csa]), so a transpose
// is a swap of strides, never a copy by the caller; C has unit column stride and row stride
// rsc. beta is 0 (overwrite; C may hold garbage, NaN included) or 1 (accumulate).
//
// Called from inside an at::parallel_for region it runs on the calling thread; called from
// outside it may use every thread. Results do not depend on the thread count.

#include <cstdint>

namespace cnnkern {
namespace cpu {

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B,
          int64_t rsb, int64_t csb, T beta, T* C, int64_t rsc);

}  // namespace cpu
}  // namespace cnnkern
