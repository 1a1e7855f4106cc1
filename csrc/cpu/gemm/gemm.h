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
//
// How (gemm.cpp, gemm_kernel_impl.h): GotoBLAS/BLIS blocking. B is packed kc x nc at a time
// into nr-column panels, A mc x kc at a time into mr-row panels (packing reads any strides,
// so transposes cost nothing extra), and a register-blocked micro-kernel computes mr x nr
// tiles of C. The kernel set is picked at run time from the CPU: AVX-512, AVX2 + FMA, or a
// portable one (CNNKERN_CPU_ISA=avx2|generic|..., cpu/common/cpu_isa.h, forces one).
// The depth k is cut into blocks that depend on K only, and each element of C is always
// computed by the same chain of operations, which is why neither the thread count nor the
// way a caller tiles its problem changes any bit of the result.

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>

namespace cnnkern {
namespace cpu {

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B,
          int64_t rsb, int64_t csb, T beta, T* C, int64_t rsc);

// An A operand packed once for many products (e.g. convolution weights against every tile
// of an image): gemm_packed(pa, N, B, ...) computes the same bits as gemm(M, N, K, A, ...)
// without repacking A on every call. Packing runs in parallel when called outside a
// parallel region. The layout belongs to the kernel set of this CPU; treat it as opaque.
template <typename T>
struct GemmPackedA {
  struct Free {
    bool owned = true;  // false: a view of the caller's storage (gemm_packed_a_view)
    void operator()(T* p) const {
      if (owned) std::free(p);
    }
  };
  int64_t M = 0, K = 0;
  int64_t row_stride_panels = 0;  // M rounded up to the micro-tile height
  const void* kernels = nullptr;  // the kernel table it was packed for
  std::unique_ptr<T, Free> data;
};

template <typename T>
GemmPackedA<T> gemm_pack_a(int64_t M, int64_t K, const T* A, int64_t rsa, int64_t csa);

// The same packed A built by parts, in storage the caller provides (e.g. a per-thread buffer
// kept between calls), for a producer that makes A a few rows or columns at a time and
// should not keep A itself as well as its packed copy:
//   pa = gemm_packed_a_view<T>(M, K, storage);     // gemm_packed_a_elems<T>(M, K) elements
//   gemm_pack_a_part(pa, i0, i1, k0, k1, A, rsa, csa);   // rows [i0, i1) x columns [k0, k1)
// where A points at element (i0, k0), and i0, i1 are multiples of gemm_pack_a_row_unit<T>()
// (i1 may be M). Parts may come in any order and from several threads at once (they write
// disjoint memory); once every element is packed, gemm_packed(pa, ...) gives the bits it
// gives after gemm_pack_a. The view does not own (or free) the storage.
template <typename T>
int64_t gemm_packed_a_elems(int64_t M, int64_t K);
template <typename T>
int64_t gemm_pack_a_row_unit();
// The width of the micro-kernel's register tile (nr): a product with N columns computes
// round_up(N, gemm_tile_cols) of them, so callers that choose N pick a multiple of it.
template <typename T>
int64_t gemm_tile_cols();
template <typename T>
GemmPackedA<T> gemm_packed_a_view(int64_t M, int64_t K, T* storage);
template <typename T>
void gemm_pack_a_part(const GemmPackedA<T>& pa, int64_t i0, int64_t i1, int64_t k0, int64_t k1,
                      const T* A, int64_t rsa, int64_t csa);

// C = A * B + beta * C with A given packed (M = pa.M, K = pa.K). With row_bias (M values),
// row i also gets row_bias[i], added at no extra cost: it starts the accumulation chain (so
// C(i, j) = beta * C(i, j) + (row_bias[i] + sum_k A(i, k) B(k, j)), the sum in k order).
// relu: C = max(C, 0) on each macro block right after its last k block is stored (while it
// is still in cache), so a fused conv + ReLU needs no extra sweep over C.
template <typename T>
void gemm_packed(const GemmPackedA<T>& pa, int64_t N, const T* B, int64_t rsb, int64_t csb,
                 T beta, T* C, int64_t rsc, const T* row_bias = nullptr, bool relu = false);

// A B operand that the caller packs itself, straight from its own layout (e.g. the columns
// of an implicit im2col, read from the image with no column matrix in between).
// pack(k0, kc, j0, nc, nr, dst) writes rows [k0, k0 + kc) and columns [j0, j0 + nc) of B as
// ceil(nc / nr) panels of kc x nr, k-major, zero past column nc:
//   dst[(j / nr) * kc * nr + k * nr + j % nr] = B(k0 + k, j0 + j).
// It is called from several threads at once (for disjoint column ranges) when the product
// runs in parallel, so it must be safe for that.
template <typename T>
using GemmPackB = std::function<void(int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                                     int64_t nr, T* dst)>;

// C = A * B + beta * C (+ row_bias) with A pre-packed and B packed by `pack_b` (N columns):
// the same bits as gemm_packed with the equivalent strided B.
template <typename T>
void gemm_packed_custom_b(const GemmPackedA<T>& pa, int64_t N, const GemmPackB<T>& pack_b,
                          T beta, T* C, int64_t rsc, const T* row_bias = nullptr,
                          bool relu = false);

}  // namespace cpu
}  // namespace cnnkern
