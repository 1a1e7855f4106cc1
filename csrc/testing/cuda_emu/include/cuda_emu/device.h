#pragma once
// CUDA device code as the emulator compiles it with g++: the built-in variables, barriers,
// warp shuffles and votes, atomics, __ldg, the bit-cast and rounding intrinsics the kernels
// use, and mma.sync / cvt.rna.tf32 for the kernels' one emulation #if (CNNKERN_CUDA_EMU).
// __half / __nv_bfloat16 and their conversions are NVIDIA's own host-side definitions
// (cuda_fp16.h, cuda_bf16.h). Included after the real CUDA headers by the wrappers in this
// include directory (cuda_runtime.h & co.), so it sees their types and they do not see its
// macros.
//
// Every synchronisation point takes the caller's file and line through __builtin_FILE() /
// __builtin_LINE() default arguments: the engine names them when a barrier diverges, and two
// threads meet at a barrier only when they reach it at the same source line.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda_emu/engine.h"
#include "cuda_emu/launch.h"

// --- Built-in variables ------------------------------------------------------------------------
#define threadIdx (::cuda_emu::current_thread().thread_idx)
#define blockIdx (::cuda_emu::current_thread().block_idx)
#define blockDim (::cuda_emu::current_thread().block_dim)
#define gridDim (::cuda_emu::current_thread().grid_dim)
#define warpSize 32

// The kernels' declaration syntax: launch bounds are read from the source by translate.py and
// checked at every launch; the attribute itself has nothing to say to g++.
#define __launch_bounds__(...)

#define CUDA_EMU_HERE_PARAMS const char *file_ = __builtin_FILE(), int line_ = __builtin_LINE()
#define CUDA_EMU_HERE ::cuda_emu::SourceLoc{file_, line_}

namespace cuda_emu {

template <class T>
T warp_value_op(WarpOp op, unsigned mask, T var, int param, int width, SourceLoc loc) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= sizeof(uint64_t),
                "warp shuffles move values of at most 8 bytes");
  WarpPayload p{};
  std::memcpy(&p.in[0], &var, sizeof(T));
  p.param = param;
  p.width = width;
  p.value_bytes = static_cast<int>(sizeof(T));
  warp_collective(op, mask, p, loc);
  T r;
  std::memcpy(&r, &p.out[0], sizeof(T));
  return r;
}

inline uint64_t warp_vote(WarpOp op, unsigned mask, int predicate, SourceLoc loc) {
  WarpPayload p{};
  p.in[0] = predicate != 0 ? 1u : 0u;
  warp_collective(op, mask, p, loc);
  return p.out[0];
}

unsigned warp_active_mask();

// mma.sync.aligned.<shape_types> {d}, {a}, {b}, {c} with d = c: one warp-wide 16 x 8 tile,
// fp32 accumulators (PTX ISA, "Warp-level matrix multiply-accumulate instructions"). The
// fragment layouts are the PTX ISA's tables, in mma.cpp.
void mma_sync(const char* shape_types, float (&c)[4], const uint32_t (&a)[4],
              const uint32_t (&b)[2], SourceLoc loc);
// cvt.rna.tf32.f32: to 10 explicit mantissa bits, to nearest, ties away from zero.
uint32_t cvt_rna_tf32(float x);

}  // namespace cuda_emu

// --- Barriers, shuffles, votes ---------------------------------------------------------------
inline void __syncthreads(CUDA_EMU_HERE_PARAMS) { ::cuda_emu::block_barrier(CUDA_EMU_HERE); }

inline void __syncwarp(unsigned mask = 0xffffffffu, CUDA_EMU_HERE_PARAMS) {
  ::cuda_emu::WarpPayload p{};
  ::cuda_emu::warp_collective(::cuda_emu::WarpOp::Sync, mask, p, CUDA_EMU_HERE);
}

template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32, CUDA_EMU_HERE_PARAMS) {
  return ::cuda_emu::warp_value_op(::cuda_emu::WarpOp::ShflIdx, mask, var, src_lane, width,
                                   CUDA_EMU_HERE);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32, CUDA_EMU_HERE_PARAMS) {
  return ::cuda_emu::warp_value_op(::cuda_emu::WarpOp::ShflUp, mask, var,
                                   static_cast<int>(delta), width, CUDA_EMU_HERE);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32, CUDA_EMU_HERE_PARAMS) {
  return ::cuda_emu::warp_value_op(::cuda_emu::WarpOp::ShflDown, mask, var,
                                   static_cast<int>(delta), width, CUDA_EMU_HERE);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32, CUDA_EMU_HERE_PARAMS) {
  return ::cuda_emu::warp_value_op(::cuda_emu::WarpOp::ShflXor, mask, var, lane_mask, width,
                                   CUDA_EMU_HERE);
}
inline unsigned __ballot_sync(unsigned mask, int predicate, CUDA_EMU_HERE_PARAMS) {
  return static_cast<unsigned>(
      ::cuda_emu::warp_vote(::cuda_emu::WarpOp::Ballot, mask, predicate, CUDA_EMU_HERE));
}
inline int __all_sync(unsigned mask, int predicate, CUDA_EMU_HERE_PARAMS) {
  return static_cast<int>(
      ::cuda_emu::warp_vote(::cuda_emu::WarpOp::All, mask, predicate, CUDA_EMU_HERE));
}
inline int __any_sync(unsigned mask, int predicate, CUDA_EMU_HERE_PARAMS) {
  return static_cast<int>(
      ::cuda_emu::warp_vote(::cuda_emu::WarpOp::Any, mask, predicate, CUDA_EMU_HERE));
}
inline unsigned __activemask() { return ::cuda_emu::warp_active_mask(); }

// One thread at a time runs (fibers on one OS thread), so memory fences order nothing more.
inline void __threadfence() {}
inline void __threadfence_block() {}

[[noreturn]] inline void __trap(CUDA_EMU_HERE_PARAMS) {
  ::cuda_emu::device_fault("__trap() called", CUDA_EMU_HERE);
}

// --- Loads, bit casts, rounding-mode intrinsics ------------------------------------------------
template <class T>
T __ldg(const T* p) {
  return *p;
}

inline float __int_as_float(int x) { float r; std::memcpy(&r, &x, 4); return r; }
inline int __float_as_int(float x) { int r; std::memcpy(&r, &x, 4); return r; }
inline float __uint_as_float(unsigned x) { float r; std::memcpy(&r, &x, 4); return r; }
inline unsigned __float_as_uint(float x) { unsigned r; std::memcpy(&r, &x, 4); return r; }
inline double __longlong_as_double(long long x) { double r; std::memcpy(&r, &x, 8); return r; }
inline long long __double_as_longlong(double x) { long long r; std::memcpy(&r, &x, 8); return r; }

// The emulator builds with -ffp-contract=off and the default round-to-nearest mode, so a plain
// operation is the _rn intrinsic (and never fused into an FMA behind the kernel's back).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }

// --- Atomics (GCC builtins: ThreadSanitizer builds see them as atomic) -------------------------
template <class T>
T cuda_emu_atomic_update(T* address, T (*f)(T, T), T val) {
  T old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(address, &old, f(old, val), false, __ATOMIC_SEQ_CST,
                                      __ATOMIC_RELAXED)) {
  }
  return old;
}
template <class T, class = std::enable_if_t<std::is_integral<T>::value>>
T atomicAdd(T* address, T val) { return __atomic_fetch_add(address, val, __ATOMIC_SEQ_CST); }
inline float atomicAdd(float* address, float val) {
  float old;
  unsigned* bits = reinterpret_cast<unsigned*>(address);
  unsigned expected = __atomic_load_n(bits, __ATOMIC_RELAXED);
  for (;;) {
    std::memcpy(&old, &expected, 4);
    const float sum = old + val;
    unsigned desired;
    std::memcpy(&desired, &sum, 4);
    if (__atomic_compare_exchange_n(bits, &expected, desired, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_RELAXED))
      return old;
  }
}
inline double atomicAdd(double* address, double val) {
  double old;
  unsigned long long* bits = reinterpret_cast<unsigned long long*>(address);
  unsigned long long expected = __atomic_load_n(bits, __ATOMIC_RELAXED);
  for (;;) {
    std::memcpy(&old, &expected, 8);
    const double sum = old + val;
    unsigned long long desired;
    std::memcpy(&desired, &sum, 8);
    if (__atomic_compare_exchange_n(bits, &expected, desired, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_RELAXED))
      return old;
  }
}
template <class T>
T atomicSub(T* address, T val) { return __atomic_fetch_sub(address, val, __ATOMIC_SEQ_CST); }
template <class T>
T atomicExch(T* address, T val) { return __atomic_exchange_n(address, val, __ATOMIC_SEQ_CST); }
template <class T>
T atomicCAS(T* address, T compare, T val) {
  __atomic_compare_exchange_n(address, &compare, val, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;
}
template <class T>
T atomicMax(T* address, T val) {
  return cuda_emu_atomic_update<T>(address, [](T a, T b) { return a < b ? b : a; }, val);
}
template <class T>
T atomicMin(T* address, T val) {
  return cuda_emu_atomic_update<T>(address, [](T a, T b) { return b < a ? b : a; }, val);
}
template <class T>
T atomicAnd(T* address, T val) { return __atomic_fetch_and(address, val, __ATOMIC_SEQ_CST); }
template <class T>
T atomicOr(T* address, T val) { return __atomic_fetch_or(address, val, __ATOMIC_SEQ_CST); }
template <class T>
T atomicXor(T* address, T val) { return __atomic_fetch_xor(address, val, __ATOMIC_SEQ_CST); }
