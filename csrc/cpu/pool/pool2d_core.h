#pragma once
// The CPU pooling kernels, one plane at a time (torch-free). Each works on any shape with
// scalar code that follows ATen's rules exactly, and runs the window-interior columns of a
// row as vectors when the stride along W is 1 or 2 (2x2 s2, 3x3 s2 p1, ... any kernel,
// padding, dilation and vertical stride). A vector lane does what the scalar code does for
// its output, in the same order, so the two paths give bitwise the same results.
//
// Compiled per instruction set (pool2d_core_<isa>.cpp from pool2d_core_impl.h);
// pool_kernels() picks one at run time.

#include <cstdint>

#include "core/pool2d_problem.h"
#include "cpu/common/cpu_isa.h"

namespace cnnkern {
namespace cpu {

template <typename T>
struct PoolKernels {
  // `planes` consecutive H x W planes of x to P x Q planes of out. `x_end` is one past the
  // last element of the whole input buffer (vector loads may read past a plane, never past
  // x_end). max: idx == nullptr for the values alone (no index tracked or written).
  void (*max)(const Pool2dProblem& p, int64_t planes, const T* x, const T* x_end, T* out,
              int64_t* idx);
  void (*avg)(const Pool2dProblem& p, int64_t planes, const T* x, const T* x_end, T* out);
  // Adds grad_output's shares into zero-filled grad_input planes.
  void (*avg_backward)(const Pool2dProblem& p, int64_t planes, const T* go, T* gi);
  void (*adaptive)(const Pool2dProblem& p, int64_t planes, const T* x, T* out);
};

template <typename T>
const PoolKernels<T>& pool_kernels(Isa isa);

#define CNNKERN_DECLARE_POOL_KERNELS(ns)         \
  namespace ns {                                 \
  const PoolKernels<float>& pool_kernels_f32();  \
  const PoolKernels<double>& pool_kernels_f64(); \
  }
CNNKERN_DECLARE_POOL_KERNELS(generic)
CNNKERN_DECLARE_POOL_KERNELS(avx2)
CNNKERN_DECLARE_POOL_KERNELS(avx512)
CNNKERN_DECLARE_POOL_KERNELS(avx512_emulated)
#undef CNNKERN_DECLARE_POOL_KERNELS

template <>
inline const PoolKernels<float>& pool_kernels<float>(Isa isa) {
  return pick_variant(isa, generic::pool_kernels_f32(), avx2::pool_kernels_f32(),
                      avx512::pool_kernels_f32(), avx512_emulated::pool_kernels_f32());
}
template <>
inline const PoolKernels<double>& pool_kernels<double>(Isa isa) {
  return pick_variant(isa, generic::pool_kernels_f64(), avx2::pool_kernels_f64(),
                      avx512::pool_kernels_f64(), avx512_emulated::pool_kernels_f64());
}

}  // namespace cpu
}  // namespace cnnkern
