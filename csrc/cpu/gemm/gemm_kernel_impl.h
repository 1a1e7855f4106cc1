// Packing routines, micro-kernel and macro-kernel, written once over a vector-traits type and
// compiled once per instruction set. Included by each gemm_kernels_<isa>.cpp after its
// `#pragma GCC target(...)`, with CNNKERN_ISA_NS naming a namespace of its own: every
// template below then gets a distinct mangled name per ISA, so the linker can never merge an
// AVX-512 instantiation into code that runs on a CPU without it.
//
// Only builtins are used in here (no std:: functions): a std:: template instantiated under the
// pragma would be an ISA-specific copy of a function the rest of the library shares.
//
// A vector-traits type V provides:
//   using T (element), reg (register type); static constexpr int W (lanes);
//   zero(), load(const T*), store(T*, reg), bcast(const T*), fma(a, b, c) = a*b + c, add(a, b);
//   static constexpr int TB and transpose(src, lds, dst, ldd): dst[i * ldd + j] =
//   src[j * lds + i] for a TB x TB block (TB = 0: no transpose; packing then goes element
//   by element).
//
// No include guard: each ISA translation unit includes this exactly once.

#ifndef CNNKERN_ISA_NS
#error "define CNNKERN_ISA_NS (a namespace name for this instruction set) before including"
#endif

namespace cnnkern {
namespace cpu {
namespace gemm_detail {
namespace CNNKERN_ISA_NS {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// C[0:MR, 0:NR] = (accumulate ? C : 0) + (bias ? bias[i] : 0) + sum_k a[k*MR + i] * b[k*NR + j],
// NR = NV * W. The MR x NV accumulators live in registers for the whole k loop (starting at
// the row's bias, if any); each k step loads NV vectors of B and broadcasts MR scalars of A.
// Every element is one fma chain in k order.
template <class V, int MR, int NV>
inline void micro_kernel(int64_t kc, const typename V::T* __restrict a,
                         const typename V::T* __restrict b, typename V::T* __restrict c,
                         int64_t rsc, bool accumulate, const typename V::T* bias) {
  using reg = typename V::reg;
  constexpr int W = V::W;
  reg acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    const reg init = bias ? V::bcast(bias + i) : V::zero();
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = init;
  }

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    reg bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = V::load(b + j * W);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const reg av = V::bcast(a + i);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = V::fma(av, bv[j], acc[i][j]);
    }
    a += MR;
    b += NV * W;
  }

#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      typename V::T* p = c + i * rsc + j * W;
      V::store(p, accumulate ? V::add(acc[i][j], V::load(p)) : acc[i][j]);
    }
  }
}

// C[0:mc, 0:nc] (+)= packed A (ceil(mc/MR) panels) * packed B (ceil(nc/NR) panels)
// (+ bias[i] on row i when bias is given; it then holds mc rows rounded up to MR).
// Loop order jr outer, ir inner: one kc x NR micro-panel of B stays in L1 while the
// micro-panels of A stream from L2. Edge tiles run the same micro-kernel into a scratch tile
// (the padding rows/columns of the packed panels are zeros) and copy the valid part, so
// their arithmetic is bit-identical to a full tile's.
template <class V, int MR, int NV>
void macro_kernel(int64_t mc, int64_t nc, int64_t kc, const typename V::T* pa,
                  const typename V::T* pb, typename V::T* C, int64_t rsc, bool accumulate,
                  const typename V::T* bias) {
  using T = typename V::T;
  constexpr int NR = NV * V::W;
  alignas(64) T tile[MR * NR];
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int64_t nr = imin(NR, nc - jr);
    const T* b = pb + jr * kc;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int64_t mr = imin(MR, mc - ir);
      const T* a = pa + ir * kc;
      T* c = C + ir * rsc + jr;
      const T* bi = bias ? bias + ir : nullptr;
      if (mr == MR && nr == NR) {
        micro_kernel<V, MR, NV>(kc, a, b, c, rsc, accumulate, bi);
        continue;
      }
      micro_kernel<V, MR, NV>(kc, a, b, tile, NR, false, bi);
      for (int64_t i = 0; i < mr; ++i) {
        T* ci = c + i * rsc;
        const T* ti = tile + i * NR;
        if (accumulate) {
          for (int64_t j = 0; j < nr; ++j) ci[j] = ti[j] + ci[j];
        } else {
          for (int64_t j = 0; j < nr; ++j) ci[j] = ti[j];
        }
      }
    }
  }
}

// A (mc x kc, element (i, k) at A[i*rsa + k*csa]) -> panels of MR rows, k-major.
template <typename T, int MR>
void pack_a(int64_t mc, int64_t kc, const T* A, int64_t rsa, int64_t csa, T* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR, dst += MR * kc) {
    const int64_t m = imin(MR, mc - i0);
    const T* a = A + i0 * rsa;
    if (m == MR && csa == 1) {  // rows contiguous along k (a row-major A, e.g. conv weights)
      const T* row[MR];
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i) row[i] = a + i * rsa;
      for (int64_t k = 0; k < kc; ++k) {
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i) dst[k * MR + i] = row[i][k];
      }
    } else if (m == MR && rsa == 1) {  // columns contiguous (a transposed view)
      for (int64_t k = 0; k < kc; ++k) {
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i) dst[k * MR + i] = a[k * csa + i];
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t i = 0; i < MR; ++i) dst[k * MR + i] = i < m ? a[i * rsa + k * csa] : T(0);
      }
    }
  }
}

// B (kc x nc, element (k, j) at B[k*rsb + j*csb]) -> panels of NR columns, k-major.
template <class V, int NR>
void pack_b(int64_t kc, int64_t nc, const typename V::T* B, int64_t rsb, int64_t csb,
            typename V::T* dst) {
  using T = typename V::T;
  constexpr int TB = V::TB;
  for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += NR * kc) {
    const int64_t n = imin(NR, nc - j0);
    const T* b = B + j0 * csb;
    if (n == NR && csb == 1) {  // rows contiguous: a straight copy of NR-wide strips
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = b + k * rsb;
#pragma GCC unroll 64
        for (int j = 0; j < NR; ++j) dst[k * NR + j] = src[j];
      }
    } else if (n == NR && rsb == 1) {  // columns contiguous (a transposed view): transpose
      int64_t k = 0;
      if constexpr (TB > 0 && NR % TB == 0) {  // TB x TB register transposes
        for (; k + TB <= kc; k += TB) {
#pragma GCC unroll 8
          for (int j = 0; j < NR; j += TB) V::transpose(b + j * csb + k, csb, dst + k * NR + j, NR);
        }
      }
      for (int j = 0; j < NR; ++j) {
        const T* src = b + j * csb;
        for (int64_t kk = k; kk < kc; ++kk) dst[kk * NR + j] = src[kk];
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t j = 0; j < NR; ++j) dst[k * NR + j] = j < n ? b[k * rsb + j * csb] : T(0);
      }
    }
  }
}

// The table for one (vector type, tile shape, block sizes).
template <class V, int MR, int NV>
constexpr GemmKernels<typename V::T> make_kernels(const char* isa, int64_t kc, int64_t mc,
                                                  int64_t nc) {
  return GemmKernels<typename V::T>{isa,
                                    MR,
                                    NV * V::W,
                                    kc,
                                    mc,
                                    nc,
                                    &pack_a<typename V::T, MR>,
                                    &pack_b<V, NV * V::W>,
                                    &macro_kernel<V, MR, NV>};
}

}  // namespace CNNKERN_ISA_NS
}  // namespace gemm_detail
}  // namespace cpu
}  // namespace cnnkern
