#pragma once
// The ISA-specific half of the CPU GEMM: packing routines and the macro-kernel, one table per
// instruction set. Torch-free, so the ISA translation units (gemm_kernels_<isa>.cpp) can be
// compiled under `#pragma GCC target(...)` without dragging torch's inline functions along.
//
// The driver (gemm.cpp) owns the loops over cache blocks and threads; a table supplies:
//   pack_a: rows [0, mc) x cols [0, kc) of a strided A into ceil(mc/mr) panels, each kc x mr
//           (k-major, the mr values of one k adjacent), rows past mc zero-filled;
//   pack_b: rows [0, kc) x cols [0, nc) of a strided B into ceil(nc/nr) panels, each kc x nr,
//           columns past nc zero-filled;
//   macro:  C[0:mc, 0:nc] = (accumulate ? C : 0) + packedA * packedB (+ bias[i] on row i when
//           bias is not null: mc values, readable up to the next multiple of mr), one
//           micro-tile at a time; the bias starts each accumulator chain.
// Every element of C is the same fused-multiply-add chain over k whatever tile it falls in
// (edge tiles run the full-size micro-kernel into a scratch tile), so the way C is cut into
// blocks (by threads or by callers) never changes a result bit.

#include <cstdint>

namespace cnnkern {
namespace cpu {
namespace gemm_detail {

template <typename T>
struct GemmKernels {
  const char* isa;  // "avx512", "avx2", "generic", ...
  int64_t mr, nr;   // micro-tile (register block)
  int64_t kc;       // depth of a packed block (B micro-panel kc x nr sized for L1)
  int64_t mc;       // rows of a packed A block (mc x kc sized for L2), a multiple of mr
  int64_t nc;       // columns of a packed B block (kc x nc for L3), a multiple of nr
  void (*pack_a)(int64_t mc, int64_t kc, const T* A, int64_t rsa, int64_t csa, T* dst);
  void (*pack_b)(int64_t kc, int64_t nc, const T* B, int64_t rsb, int64_t csb, T* dst);
  void (*macro)(int64_t mc, int64_t nc, int64_t kc, const T* pa, const T* pb, T* C,
                int64_t rsc, bool accumulate, const T* bias);
};

// The AVX2 / AVX-512 tables exist on x86 builds only (gemm.cpp asks for them there alone);
// whether the CPU can run one is the caller's question (cpu/common/cpu_isa.h).
const GemmKernels<float>* gemm_kernels_avx512_f32();
const GemmKernels<double>* gemm_kernels_avx512_f64();
const GemmKernels<float>* gemm_kernels_avx2_f32();
const GemmKernels<double>* gemm_kernels_avx2_f64();
// The AVX-512 tile shapes and block sizes run with AVX2 instructions (two ymm per zmm):
// lets the tests exercise the AVX-512 blocking logic on a CPU without AVX-512.
const GemmKernels<float>* gemm_kernels_avx512_emulated_f32();
const GemmKernels<double>* gemm_kernels_avx512_emulated_f64();
const GemmKernels<float>* gemm_kernels_generic_f32();
const GemmKernels<double>* gemm_kernels_generic_f64();

}  // namespace gemm_detail
}  // namespace cpu
}  // namespace cnnkern
