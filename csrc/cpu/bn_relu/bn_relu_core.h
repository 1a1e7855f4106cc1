#pragma once
// The per-plane kernels of the fused BN+ReLU backward (torch-free), compiled per instruction
// set (bn_relu_core_<isa>.cpp from bn_relu_core_impl.h); bn_relu_core() picks one at run time.
// bn_relu_cpu.cpp splits the work into (image, channel) planes, or blocks of channels_last
// rows, and owns the threading and the fixed-order combination of their sums.

#include <cstdint>

#include "core/bn_activation.h"
#include "cpu/common/cpu_isa.h"

namespace cnnkern {
namespace cpu {

template <typename T>
struct BnReluCore {
  // Over one plane of n values: out[0] = sum g, out[1] = sum g * (z - m), in double, where
  // g = dy masked by the activation act: 0 < z * sa + sb (ReLU), and < act.max (clamped). The order of the additions is a
  // function of n alone (lanes by position, folded in a fixed order), never of the caller's
  // threading.
  void (*grad_sums)(int64_t n, const T* dy, const T* z, T sa, T sb, double m,
                    const BnActivation& act, double* out);
  // Over one plane: gz = g * a + (z - m) * b + c, g masked as above.
  void (*grad_z)(int64_t n, const T* dy, const T* z, T sa, T sb, T m, T a, T b, T c,
                 const BnActivation& act, T* gz);

  // The same over `rows` channels_last rows of K channels, the per-channel values as arrays
  // of K (sb: the shifts). grad_sums_rows adds row after row, in order, to s1[k] (sum g) and
  // s2[k] (sum g * (z - m[k])), which the caller zeroes.
  void (*grad_sums_rows)(int64_t rows, int64_t K, const T* dy, const T* z, const T* sa,
                         const T* sb, const double* m, const BnActivation& act, double* s1,
                         double* s2);
  void (*grad_z_rows)(int64_t rows, int64_t K, const T* dy, const T* z, const T* sa,
                      const T* sb, const T* m, const T* a, const T* b, const T* c,
                      const BnActivation& act, T* gz);
};

template <typename T>
const BnReluCore<T>& bn_relu_core(Isa isa);

#define CNNKERN_DECLARE_BN_RELU_CORE(ns)          \
  namespace ns {                                  \
  const BnReluCore<float>& bn_relu_core_f32();    \
  const BnReluCore<double>& bn_relu_core_f64();   \
  }
CNNKERN_DECLARE_BN_RELU_CORE(generic)
CNNKERN_DECLARE_BN_RELU_CORE(avx2)
#undef CNNKERN_DECLARE_BN_RELU_CORE

template <>
inline const BnReluCore<float>& bn_relu_core<float>(Isa isa) {
  return uses_avx2(isa) ? avx2::bn_relu_core_f32() : generic::bn_relu_core_f32();
}
template <>
inline const BnReluCore<double>& bn_relu_core<double>(Isa isa) {
  return uses_avx2(isa) ? avx2::bn_relu_core_f64() : generic::bn_relu_core_f64();
}

}  // namespace cpu
}  // namespace cnnkern
