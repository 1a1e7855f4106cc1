#pragma once
// The CPU pooling kernels for channels_last (NHWC) tensors (torch-free). Channels are
// innermost, so every kernel works on one pixel's C channels at a time with plain loops over
// c that the compiler vectorises; the windows come from core/pool2d_problem.h and
// core/pool2d_element.h, and each channel's result is bitwise the one the per-element
// functions there give (same order of additions, same divisions), which the CUDA kernels and
// the tests-only emulation op run too.
//
// A kernel handles whole rows: forward rows are r = n * P + oh (the Q output pixels of one
// output row), backward rows r = n * H + h (the W grad_input pixels of one input row, each a
// gather over the outputs whose windows contain it: every element written once, no zero
// filling, no two rows touching the same memory). Rows [r0, r1) may run on any thread.
//
// Compiled per instruction set (pool2d_core_<isa>.cpp includes pool2d_nhwc_impl.h);
// pool_nhwc_kernels() picks one at run time.

#include <cstdint>

#include "core/pool2d_element.h"
#include "core/pool2d_problem.h"
#include "cpu/common/cpu_isa.h"

namespace cnnkern {
namespace cpu {

template <typename T>
struct PoolNhwcKernels {
  // idx == nullptr: the values alone (no index tracked or written).
  void (*max)(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* x, T* out,
              int64_t* idx);
  void (*avg)(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* x, T* out);
  void (*adaptive)(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* x, T* out);
  void (*max_backward)(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* go,
                       const int64_t* idx, T* gi);
  void (*avg_backward)(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* go, T* gi);
  void (*adaptive_backward)(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* go,
                            T* gi);
};

template <typename T>
const PoolNhwcKernels<T>& pool_nhwc_kernels(Isa isa);

#define CNNKERN_DECLARE_POOL_NHWC_KERNELS(ns)            \
  namespace ns {                                         \
  const PoolNhwcKernels<float>& pool_nhwc_kernels_f32();  \
  const PoolNhwcKernels<double>& pool_nhwc_kernels_f64(); \
  }
CNNKERN_DECLARE_POOL_NHWC_KERNELS(generic)
CNNKERN_DECLARE_POOL_NHWC_KERNELS(avx2)
CNNKERN_DECLARE_POOL_NHWC_KERNELS(avx512)
CNNKERN_DECLARE_POOL_NHWC_KERNELS(avx512_emulated)
#undef CNNKERN_DECLARE_POOL_NHWC_KERNELS

template <>
inline const PoolNhwcKernels<float>& pool_nhwc_kernels<float>(Isa isa) {
  return pick_variant(isa, generic::pool_nhwc_kernels_f32(), avx2::pool_nhwc_kernels_f32(),
                      avx512::pool_nhwc_kernels_f32(), avx512_emulated::pool_nhwc_kernels_f32());
}
template <>
inline const PoolNhwcKernels<double>& pool_nhwc_kernels<double>(Isa isa) {
  return pick_variant(isa, generic::pool_nhwc_kernels_f64(), avx2::pool_nhwc_kernels_f64(),
                      avx512::pool_nhwc_kernels_f64(), avx512_emulated::pool_nhwc_kernels_f64());
}

}  // namespace cpu
}  // namespace cnnkern
