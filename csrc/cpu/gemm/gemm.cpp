// The CPU GEMM driver: kernel-set selection, the loops over cache blocks (jc over N, pc over
// K, ic over M around the ISA's macro-kernel), per-thread packing buffers, and the split of
// C into independent blocks for threads. See gemm.h for the contract, gemm_kernels.h for the
// ISA half.

#include "cpu/gemm/gemm.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/int_math.h"
#include "cpu/common/cpu_isa.h"
#include "cpu/common/thread_scratch.h"
#include "cpu/gemm/gemm_dispatch.h"

namespace cnnkern {
namespace cpu {
namespace gemm_detail {
namespace {

int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// The depth of the k blocks: K cut into equal pieces of at most kc. A function of K (and the
// kernel set) only, so the order in which partial sums meet never depends on threads.
int64_t k_block(int64_t K, int64_t kc) { return ceil_div(K, ceil_div(K, kc)); }

// Below this many flops a GEMM runs on one thread: a parallel region costs a few
// microseconds, the time of ~1 MFLOP here.
constexpr double kMinParallelFlops = 4.0e6;

// Where the A blocks come from: a strided matrix packed on the fly, or a pre-packed one
// (block (pc, rows from i) at packed + pc * Mp + i * kc, see gemm_pack_a_with).
template <typename T>
struct ASource {
  const T* A = nullptr;
  int64_t rsa = 0, csa = 0;
  const T* packed = nullptr;
  int64_t Mp = 0;
};

// Where the B blocks come from: a strided matrix, or the caller's packing function.
template <typename T>
struct BSource {
  const T* B = nullptr;
  int64_t rsb = 0, csb = 0;
  const GemmPackB<T>* pack = nullptr;
};

// The ReLU epilogue on an m x n block of C just written (NaN stays NaN, as torch.relu).
template <typename T>
void relu_block(T* C, int64_t m, int64_t n, int64_t rsc) {
  for (int64_t i = 0; i < m; ++i) {
    T* c = C + i * rsc;
    for (int64_t j = 0; j < n; ++j) c[j] = c[j] < T(0) ? T(0) : c[j];
  }
}

// C[0:M, 0:N] = A[row0 : row0 + M] * B[:, col0 : col0 + N] + beta * C (+ bias[row0 + i] on
// row i, bias padded to whole micro-tiles) on the calling thread.
template <typename T>
void gemm_serial(const GemmKernels<T>& kt, int64_t M, int64_t N, int64_t K,
                 const ASource<T>& a, int64_t row0, const BSource<T>& b, int64_t col0, T beta,
                 T* C, int64_t rsc, const T* bias, bool relu = false) {
  const int64_t kb = k_block(K, kt.kc);
  // Whole micro-tiles: pack_a / pack_b fill the last panel up to mr / nr.
  const int64_t ncb = round_up(min64(kt.nc, N), kt.nr);
  const int64_t mcb = round_up(min64(kt.mc, M), kt.mr);
  T* pb = thread_scratch<T>(ScratchSlot::GemmPackB, kb * ncb);
  T* pa = a.packed ? nullptr : thread_scratch<T>(ScratchSlot::GemmPackA, mcb * kb);
  for (int64_t jc = 0; jc < N; jc += ncb) {
    const int64_t nc = min64(ncb, N - jc);
    for (int64_t pc = 0; pc < K; pc += kb) {
      const int64_t kc = min64(kb, K - pc);
      const bool accumulate = pc > 0 || beta != T(0);
      if (b.pack) {
        (*b.pack)(pc, kc, col0 + jc, nc, kt.nr, pb);
      } else {
        kt.pack_b(kc, nc, b.B + pc * b.rsb + (col0 + jc) * b.csb, b.rsb, b.csb, pb);
      }
      for (int64_t ic = 0; ic < M; ic += mcb) {
        const int64_t mc = min64(mcb, M - ic);
        const T* blockA;
        if (a.packed) {
          blockA = a.packed + pc * a.Mp + (row0 + ic) * kc;
        } else {
          kt.pack_a(mc, kc, a.A + (row0 + ic) * a.rsa + pc * a.csa, a.rsa, a.csa, pa);
          blockA = pa;
        }
        const T* block_bias = (bias != nullptr && pc == 0) ? bias + row0 + ic : nullptr;
        kt.macro(mc, nc, kc, blockA, pb, C + ic * rsc + jc, rsc, accumulate, block_bias);
        if (relu && pc + kc >= K) relu_block(C + ic * rsc + jc, mc, nc, rsc);
      }
    }
  }
}

// Splits C into one block per thread (block edges on micro-tile boundaries); each block is an
// independent serial GEMM that packs its own rows of A and columns of B.
template <typename T>
void gemm_driver(const GemmKernels<T>& kt, int64_t M, int64_t N, int64_t K, const ASource<T>& a,
                 const BSource<T>& b, T beta, T* C, int64_t rsc, const T* row_bias = nullptr,
                 bool relu = false) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M; ++i) {
      T* c = C + i * rsc;
      const T add = row_bias ? row_bias[i] : T(0);
      if (beta == T(0)) {
        for (int64_t j = 0; j < N; ++j) c[j] = add;
      } else if (row_bias) {
        for (int64_t j = 0; j < N; ++j) c[j] += add;
      }
    }
    if (relu) relu_block(C, M, N, rsc);
    return;
  }
  // The micro-kernel reads the bias of whole micro-tiles: pad it with zeros.
  std::vector<T> bias_padded;
  const T* bias = nullptr;
  if (row_bias != nullptr) {
    bias_padded.assign(round_up(M, kt.mr), T(0));
    std::memcpy(bias_padded.data(), row_bias, sizeof(T) * M);
    bias = bias_padded.data();
  }
  const int64_t nt = at::in_parallel_region() ? 1 : at::get_num_threads();
  if (nt <= 1 || 2.0 * M * N * K < kMinParallelFlops) {
    gemm_serial(kt, M, N, K, a, 0, b, 0, beta, C, rsc, bias, relu);
    return;
  }
  // Grid tm x tn (tm * tn = nt) with the least work for the busiest thread: its block of C
  // (rounded up to whole micro-tiles) plus what it packs, its rows of A (unless pre-packed)
  // and its columns of B, a packed element costing about as much as 8 multiply-adds.
  const int64_t m_units = ceil_div(M, kt.mr), n_units = ceil_div(N, kt.nr);
  int64_t tm = 1, tn = 1;
  double best = -1;
  for (int64_t cand = 1; cand <= nt; ++cand) {
    if (nt % cand != 0) continue;
    const int64_t cm = cand, cn = nt / cand;
    if (cm > m_units || cn > n_units) continue;
    const double rows = static_cast<double>(ceil_div(m_units, cm) * kt.mr);
    const double cols = static_cast<double>(ceil_div(n_units, cn) * kt.nr);
    const double cost = rows * cols + 8.0 * ((a.packed ? 0.0 : rows) + cols);
    if (best < 0 || cost < best) {
      best = cost;
      tm = cm;
      tn = cn;
    }
  }
  const int64_t m_step = ceil_div(m_units, tm) * kt.mr;
  const int64_t n_step = ceil_div(n_units, tn) * kt.nr;
  at::parallel_for(0, tm * tn, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i0 = (t / tn) * m_step, j0 = (t % tn) * n_step;
      if (i0 >= M || j0 >= N) continue;
      const int64_t m = min64(m_step, M - i0), n = min64(n_step, N - j0);
      gemm_serial(kt, m, n, K, a, i0, b, j0, beta, C + i0 * rsc + j0, rsc, bias, relu);
    }
  });
}

template <typename T>
const GemmKernels<T>* table(const std::string& isa);

template <>
const GemmKernels<float>* table<float>(const std::string& isa) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == "avx512") return gemm_kernels_avx512_f32();
  if (isa == "avx2") return gemm_kernels_avx2_f32();
  if (isa == "avx512_emulated") return gemm_kernels_avx512_emulated_f32();
#endif
  if (isa == "generic") return gemm_kernels_generic_f32();
  return nullptr;
}

template <>
const GemmKernels<double>* table<double>(const std::string& isa) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == "avx512") return gemm_kernels_avx512_f64();
  if (isa == "avx2") return gemm_kernels_avx2_f64();
  if (isa == "avx512_emulated") return gemm_kernels_avx512_emulated_f64();
#endif
  if (isa == "generic") return gemm_kernels_generic_f64();
  return nullptr;
}

}  // namespace

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (Isa isa : cpu::available_isas())
    if (table<float>(isa_name(isa)) != nullptr) out.emplace_back(isa_name(isa));
  return out;
}

// "" = the active ISA (cpu/common/cpu_isa.h: CNNKERN_CPU_ISA or the CPU's best), read on every
// call like the other families'.
template <typename T>
const GemmKernels<T>& kernels_for(const std::string& isa) {
  const Isa chosen = isa.empty() ? active_isa(Family::gemm) : parse_isa(isa, "isa");
  const GemmKernels<T>* k = table<T>(isa_name(chosen));
  TORCH_CHECK(k != nullptr, "cnnkern gemm: kernel set '", isa_name(chosen),
              "' is not compiled into this build");
  return *k;
}

template <typename T>
void gemm_with(const GemmKernels<T>& kt, int64_t M, int64_t N, int64_t K, const T* A,
               int64_t rsa, int64_t csa, const T* B, int64_t rsb, int64_t csb, T beta, T* C,
               int64_t rsc) {
  ASource<T> a;
  a.A = A;
  a.rsa = rsa;
  a.csa = csa;
  BSource<T> b;
  b.B = B;
  b.rsb = rsb;
  b.csb = csb;
  gemm_driver(kt, M, N, K, a, b, beta, C, rsc);
}

template <typename T>
GemmPackedA<T> gemm_pack_a_with(const GemmKernels<T>& kt, int64_t M, int64_t K, const T* A,
                                int64_t rsa, int64_t csa) {
  GemmPackedA<T> pa;
  pa.M = M;
  pa.K = K;
  pa.kernels = &kt;
  pa.row_stride_panels = round_up(M, kt.mr);
  const int64_t elems = pa.row_stride_panels * K;
  if (elems == 0) return pa;
  pa.data.reset(static_cast<T*>(std::aligned_alloc(64, round_up(elems * sizeof(T), 64))));
  TORCH_CHECK(pa.data != nullptr, "cnnkern gemm: out of memory packing a ", M, " x ", K,
              " matrix");
  // One part per (k-block, row panel); gemm_pack_a_part holds the layout.
  const int64_t kb = k_block(K, kt.kc);
  const int64_t n_kblocks = ceil_div(K, kb), n_panels = ceil_div(M, kt.mr);
  at::parallel_for(0, n_kblocks * n_panels, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t pc = (t / n_panels) * kb, i0 = (t % n_panels) * kt.mr;
      gemm_pack_a_part(pa, i0, min64(i0 + kt.mr, M), pc, min64(pc + kb, K),
                       A + i0 * rsa + pc * csa, rsa, csa);
    }
  });
  return pa;
}

template const GemmKernels<float>& kernels_for<float>(const std::string&);
template const GemmKernels<double>& kernels_for<double>(const std::string&);
template void gemm_with<float>(const GemmKernels<float>&, int64_t, int64_t, int64_t,
                               const float*, int64_t, int64_t, const float*, int64_t, int64_t,
                               float, float*, int64_t);
template void gemm_with<double>(const GemmKernels<double>&, int64_t, int64_t, int64_t,
                                const double*, int64_t, int64_t, const double*, int64_t,
                                int64_t, double, double*, int64_t);
template GemmPackedA<float> gemm_pack_a_with<float>(const GemmKernels<float>&, int64_t, int64_t,
                                                    const float*, int64_t, int64_t);
template GemmPackedA<double> gemm_pack_a_with<double>(const GemmKernels<double>&, int64_t,
                                                      int64_t, const double*, int64_t, int64_t);

}  // namespace gemm_detail

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B,
          int64_t rsb, int64_t csb, T beta, T* C, int64_t rsc) {
  gemm_detail::gemm_with(gemm_detail::kernels_for<T>(""), M, N, K, A, rsa, csa, B, rsb, csb,
                         beta, C, rsc);
}

template <typename T>
GemmPackedA<T> gemm_pack_a(int64_t M, int64_t K, const T* A, int64_t rsa, int64_t csa) {
  return gemm_detail::gemm_pack_a_with(gemm_detail::kernels_for<T>(""), M, K, A, rsa, csa);
}

template <typename T>
int64_t gemm_packed_a_elems(int64_t M, int64_t K) {
  return round_up(M, gemm_detail::kernels_for<T>("").mr) * K;
}

template <typename T>
int64_t gemm_pack_a_row_unit() {
  return gemm_detail::kernels_for<T>("").mr;
}

template <typename T>
int64_t gemm_tile_cols() {
  return gemm_detail::kernels_for<T>("").nr;
}

template <typename T>
GemmPackedA<T> gemm_packed_a_view(int64_t M, int64_t K, T* storage) {
  const auto& kt = gemm_detail::kernels_for<T>("");
  GemmPackedA<T> pa;
  pa.M = M;
  pa.K = K;
  pa.kernels = &kt;
  pa.row_stride_panels = round_up(M, kt.mr);
  pa.data = std::unique_ptr<T, typename GemmPackedA<T>::Free>(
      storage, typename GemmPackedA<T>::Free{/*owned=*/false});
  return pa;
}

// The layout of gemm_pack_a_with: k-block pc (depth kc) holds every mr-row panel for k in
// [pc, pc + kc), element (row r, k) of the panel from row p0 at pc * Mp + p0 * kc +
// (k - pc) * mr + (r - p0). A part is packed panel by panel, each k-block's columns of it
// as one kt.pack_a call (which zero-fills a last panel past row M).
template <typename T>
void gemm_pack_a_part(const GemmPackedA<T>& pa, int64_t i0, int64_t i1, int64_t k0, int64_t k1,
                      const T* A, int64_t rsa, int64_t csa) {
  using namespace gemm_detail;
  const auto& kt = *static_cast<const GemmKernels<T>*>(pa.kernels);
  TORCH_CHECK(i0 % kt.mr == 0 && (i1 % kt.mr == 0 || i1 == pa.M) && 0 <= i0 && i0 <= i1 &&
                  i1 <= pa.M && 0 <= k0 && k0 <= k1 && k1 <= pa.K,
              "cnnkern gemm_pack_a_part: rows [", i0, ", ", i1, ") x columns [", k0, ", ", k1,
              ") is not a part of whole ", kt.mr, "-row panels of a ", pa.M, " x ", pa.K,
              " matrix");
  const int64_t kb = k_block(pa.K, kt.kc), Mp = pa.row_stride_panels;
  T* out = pa.data.get();
  for (int64_t pc = k0 / kb * kb; pc < k1; pc += kb) {
    const int64_t kc = min64(kb, pa.K - pc);
    const int64_t c0 = std::max(k0, pc), c1 = min64(k1, pc + kc);
    for (int64_t p0 = i0; p0 < i1; p0 += kt.mr)
      kt.pack_a(min64(kt.mr, pa.M - p0), c1 - c0, A + (p0 - i0) * rsa + (c0 - k0) * csa, rsa,
                csa, out + pc * Mp + p0 * kc + (c0 - pc) * kt.mr);
  }
}

namespace {

template <typename T>
void gemm_packed_from(const GemmPackedA<T>& pa, int64_t N, const gemm_detail::BSource<T>& b,
                      T beta, T* C, int64_t rsc, const T* row_bias, bool relu) {
  const auto& kt = *static_cast<const gemm_detail::GemmKernels<T>*>(pa.kernels);
  gemm_detail::ASource<T> a;
  a.packed = pa.data.get();
  a.Mp = pa.row_stride_panels;
  if (pa.M > 0 && pa.K > 0) {
    TORCH_CHECK(a.packed != nullptr, "cnnkern gemm_packed: the packed A holds no data");
  }
  gemm_detail::gemm_driver(kt, pa.M, N, pa.K, a, b, beta, C, rsc, row_bias, relu);
}

}  // namespace

template <typename T>
void gemm_packed(const GemmPackedA<T>& pa, int64_t N, const T* B, int64_t rsb, int64_t csb,
                 T beta, T* C, int64_t rsc, const T* row_bias, bool relu) {
  gemm_detail::BSource<T> b;
  b.B = B;
  b.rsb = rsb;
  b.csb = csb;
  gemm_packed_from(pa, N, b, beta, C, rsc, row_bias, relu);
}

template <typename T>
void gemm_packed_custom_b(const GemmPackedA<T>& pa, int64_t N, const GemmPackB<T>& pack_b,
                          T beta, T* C, int64_t rsc, const T* row_bias, bool relu) {
  gemm_detail::BSource<T> b;
  b.pack = &pack_b;
  gemm_packed_from(pa, N, b, beta, C, rsc, row_bias, relu);
}

template void gemm<float>(int64_t, int64_t, int64_t, const float*, int64_t, int64_t,
                          const float*, int64_t, int64_t, float, float*, int64_t);
template void gemm<double>(int64_t, int64_t, int64_t, const double*, int64_t, int64_t,
                           const double*, int64_t, int64_t, double, double*, int64_t);
template GemmPackedA<float> gemm_pack_a<float>(int64_t, int64_t, const float*, int64_t,
                                               int64_t);
template int64_t gemm_packed_a_elems<float>(int64_t, int64_t);
template int64_t gemm_packed_a_elems<double>(int64_t, int64_t);
template int64_t gemm_pack_a_row_unit<float>();
template int64_t gemm_pack_a_row_unit<double>();
template int64_t gemm_tile_cols<float>();
template int64_t gemm_tile_cols<double>();
template GemmPackedA<float> gemm_packed_a_view<float>(int64_t, int64_t, float*);
template GemmPackedA<double> gemm_packed_a_view<double>(int64_t, int64_t, double*);
template void gemm_pack_a_part<float>(const GemmPackedA<float>&, int64_t, int64_t, int64_t,
                                      int64_t, const float*, int64_t, int64_t);
template void gemm_pack_a_part<double>(const GemmPackedA<double>&, int64_t, int64_t, int64_t,
                                       int64_t, const double*, int64_t, int64_t);
template GemmPackedA<double> gemm_pack_a<double>(int64_t, int64_t, const double*, int64_t,
                                                 int64_t);
template void gemm_packed<float>(const GemmPackedA<float>&, int64_t, const float*, int64_t,
                                 int64_t, float, float*, int64_t, const float*, bool);
template void gemm_packed<double>(const GemmPackedA<double>&, int64_t, const double*, int64_t,
                                  int64_t, double, double*, int64_t, const double*, bool);
template void gemm_packed_custom_b<float>(const GemmPackedA<float>&, int64_t,
                                          const GemmPackB<float>&, float, float*, int64_t,
                                          const float*, bool);
template void gemm_packed_custom_b<double>(const GemmPackedA<double>&, int64_t,
                                           const GemmPackB<double>&, double, double*, int64_t,
                                           const double*, bool);

}  // namespace cpu
}  // namespace cnnkern
