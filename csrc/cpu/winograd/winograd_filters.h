#pragma once
// The filter-gradient transform of the CPU Winograd (the adjoint of
// u = G g G^T; the forward filter transform is a kernel, cpu/winograd/winograd_kernels.h).
// Internal to cpu/winograd_*.cpp.

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/winograd.h"
#include "cpu/winograd/winograd_vec.h"

namespace cnnkern {
namespace cpu {
namespace wino {

// grad_w[k][c] = G^T dU[k][.][c] G (dU is K x a*a x Cg), L input channels at a time.
template <int M, typename T>
void filter_gradients(const T* dU, int64_t K, int64_t Cg, T* gw, bool serial) {
  constexpr int a = M + 2, A2 = a * a, L = kLanes<T>;
  using V = vec_t<T>;
  const int64_t cgroups = (Cg + L - 1) / L;
  const auto body = [&](int64_t begin, int64_t end) {
    alignas(32) T buf[A2 * L], gbuf[9 * L];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t k = item / cgroups, c0 = (item % cgroups) * L;
      const int nvalid = static_cast<int>(std::min<int64_t>(L, Cg - c0));
      for (int xi = 0; xi < A2; ++xi) {
        const T* src = dU + (k * A2 + xi) * Cg + c0;
        for (int l = 0; l < L; ++l) buf[xi * L + l] = l < nvalid ? src[l] : T(0);
      }
      V u[A2], gv[9];
      std::memcpy(u, buf, sizeof(u));
      winograd::filter_adjoint<M, T>(u, a, 1, gv, 3, 1);
      std::memcpy(gbuf, gv, sizeof(gv));
      for (int l = 0; l < nvalid; ++l)
        for (int i = 0; i < 9; ++i) gw[(k * Cg + c0 + l) * 9 + i] = gbuf[i * L + l];
    }
  };
  at::parallel_for(0, K * cgroups, serial ? K * cgroups : 1, body);
}

}  // namespace wino
}  // namespace cpu
}  // namespace cnnkern
