// Reference GEMM: simple, correct, and the baseline the optimised kernel replaces.
// i-k-j order so the innermost loop runs along rows of B and C (vectorises when csb == 1).

#include "cpu/gemm.h"

#include <ATen/Parallel.h>

namespace cnnkern {
namespace cpu {

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B,
          int64_t rsb, int64_t csb, T beta, T* C, int64_t rsc) {
  at::parallel_for(0, M, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T* c = C + i * rsc;
      if (beta == T(0)) {
        for (int64_t j = 0; j < N; ++j) c[j] = T(0);
      }
      for (int64_t k = 0; k < K; ++k) {
        const T a = A[i * rsa + k * csa];
        const T* b = B + k * rsb;
        for (int64_t j = 0; j < N; ++j) c[j] += a * b[j * csb];
      }
    }
  });
}

template void gemm<float>(int64_t, int64_t, int64_t, const float*, int64_t, int64_t,
                          const float*, int64_t, int64_t, float, float*, int64_t);
template void gemm<double>(int64_t, int64_t, int64_t, const double*, int64_t, int64_t,
                           const double*, int64_t, int64_t, double, double*, int64_t);

}  // namespace cpu
}  // namespace cnnkern
