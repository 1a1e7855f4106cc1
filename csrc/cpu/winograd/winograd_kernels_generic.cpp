// Portable Winograd kernels (see winograd_kernels.h): 32-byte GCC vectors, one tile (or
// filter) per lane, each lane's patch gathered element by element (from the zero-padded row
// buffer, which is in L1). Also the run-time choice between these and the AVX2 ones.

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/winograd.h"
#include "cpu/common/cpu_isa.h"
#include "cpu/winograd/winograd_kernels.h"
#include "cpu/winograd/winograd_vec.h"

namespace cnnkern {
namespace cpu {
namespace winograd_generic {
namespace {

using wino::Vec;

template <int M, typename T>
struct Rows {
  static constexpr int m = M, a = M + 2, A2 = a * a, L = 32 / sizeof(T);
  using V = typename Vec<T>::type;

  // dst[xi * xs + l] = v[xi] lane l, for l < nvalid.
  static void store_lanes(const V* v, int n, int nvalid, T* dst, int64_t xs) {
    if (nvalid == L) {
      for (int xi = 0; xi < n; ++xi) std::memcpy(dst + xi * xs, &v[xi], sizeof(V));
      return;
    }
    for (int xi = 0; xi < n; ++xi)
      for (int l = 0; l < nvalid; ++l) dst[xi * xs + l] = v[xi][l];
  }

  static void input_row(const T* src, int64_t rs, int64_t ntiles, T* dst, int64_t xs) {
    for (int64_t t = 0; t < ntiles; t += L) {
      alignas(32) T buf[A2 * L];
      const T* p = src + t * m;
      for (int r = 0; r < a; ++r)
        for (int s = 0; s < a; ++s)
          for (int l = 0; l < L; ++l) buf[(r * a + s) * L + l] = p[r * rs + l * m + s];
      V d[A2], v[A2];
      std::memcpy(d, buf, sizeof(d));
      winograd::input_transform<M, T>(d, a, 1, v, a, 1);
      store_lanes(v, A2, static_cast<int>(ntiles - t < L ? ntiles - t : L), dst + t, xs);
    }
  }

  static void output_row(const T* src, int64_t xs, int64_t ntiles, T bias, T* dst, int64_t rs,
                         bool relu) {
    for (int64_t t = 0; t < ntiles; t += L) {
      V x[A2], y[m * m];
      for (int xi = 0; xi < A2; ++xi) std::memcpy(&x[xi], src + xi * xs + t, sizeof(V));
      winograd::output_transform<M, T>(x, a, 1, y, m, 1);
      for (int q = 0; q < m * m; ++q) y[q] += bias;
      alignas(32) T buf[m * m * L];
      std::memcpy(buf, y, sizeof(y));
      if (relu)
        for (auto& v : buf) v = v < T(0) ? T(0) : v;  // NaN stays NaN, as torch.relu
      T* o = dst + t * m;
      for (int i = 0; i < m; ++i)
        for (int l = 0; l < L; ++l)
          for (int j = 0; j < m; ++j) o[i * rs + l * m + j] = buf[(i * m + j) * L + l];
    }
  }

  static void grad_output_row(const T* src, int64_t rs, int64_t ntiles, T* dst, int64_t xs) {
    for (int64_t t = 0; t < ntiles; t += L) {
      alignas(32) T buf[m * m * L];
      const T* p = src + t * m;
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j)
          for (int l = 0; l < L; ++l) buf[(i * m + j) * L + l] = p[i * rs + l * m + j];
      V dy[m * m], x[A2];
      std::memcpy(dy, buf, sizeof(dy));
      winograd::output_adjoint<M, T>(dy, m, 1, x, a, 1);
      store_lanes(x, A2, static_cast<int>(ntiles - t < L ? ntiles - t : L), dst + t, xs);
    }
  }

  static void filters(FilterSource<T> src, int64_t Cg, int64_t nk, T* U, int64_t cs,
                      int64_t xs) {
    const int64_t nk8 = (nk + kWinogradRowGroup - 1) / kWinogradRowGroup * kWinogradRowGroup;
    alignas(32) T buf[9 * L];
    for (int64_t c = 0; c < Cg; ++c) {  // channels outermost: U's rows are finished in turn
      for (int64_t kk = 0; kk < nk8; kk += L) {
        for (int l = 0; l < L; ++l)
          for (int i = 0; i < 9; ++i)
            buf[i * L + l] = kk + l < nk ? src.w[(kk + l) * src.filter_stride +
                                                 c * src.channel_stride + (src.rotated ? 8 - i : i)]
                                         : T(0);
        V g[9], u[A2];
        std::memcpy(g, buf, sizeof(g));
        winograd::filter_transform<M, T>(g, 3, 1, u, a, 1);
        for (int xi = 0; xi < A2; ++xi) std::memcpy(U + c * cs + xi * xs + kk, &u[xi], sizeof(V));
      }
    }
  }
};

}  // namespace

template <int M, typename T>
const WinogradKernels<T>& kernels() {
  static const WinogradKernels<T> k{"generic", &Rows<M, T>::input_row,
                                    &Rows<M, T>::output_row, &Rows<M, T>::grad_output_row,
                                    &Rows<M, T>::filters};
  return k;
}

template const WinogradKernels<float>& kernels<2, float>();
template const WinogradKernels<float>& kernels<4, float>();
template const WinogradKernels<double>& kernels<2, double>();
template const WinogradKernels<double>& kernels<4, double>();

}  // namespace winograd_generic

template <int M, typename T>
const WinogradKernels<T>& winograd_kernels() {
#if defined(__x86_64__) || defined(__i386__)  // the AVX2 kernels exist on x86 builds only
  if constexpr (std::is_same_v<T, float>) {
    if (uses_avx2(active_isa(Family::winograd))) {  // read on every call (once per convolution)
      const WinogradKernels<float>* k = winograd_avx2::kernels<M>();
      if (k != nullptr) return *k;
    }
  }
#endif
  return winograd_generic::kernels<M, T>();
}

template const WinogradKernels<float>& winograd_kernels<2, float>();
template const WinogradKernels<float>& winograd_kernels<4, float>();
template const WinogradKernels<double>& winograd_kernels<2, double>();
template const WinogradKernels<double>& winograd_kernels<4, double>();

}  // namespace cpu
}  // namespace cnnkern
