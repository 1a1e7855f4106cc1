// Winograd F(m x m, 3x3) on the CPU: the tile loop, the transforms applied to blocks of tiles,
// and the element-wise stage as a*a GEMMs per group.
//
// Forward, for each block of NB output tiles (tiles numbered over N x TH x TW, so a block may
// span images -- small late layers at batch 8 still fill a block):
//   V[xi][c][t] = (B^T d_{c,t} B)[xi]                 input tiles, all channels of all groups
//   M[xi][k][t] = sum_c U[g][xi][k][c] V[xi][c][t]    one GEMM per (group, xi)
//   out[k, tile t] = A^T M[.][k][t] A + bias[k]       cropped at the bottom/right edges
// with U[g][xi][k][c] = (G w_{k,c} G^T)[xi] computed once per call. The workspace per block
// is a*a*(C + K)*NB elements; NB is chosen so that it stays near kBlockBytes (see block_size).
//
// The input and output transforms run along runs of tiles in one tile row (row kernels,
// cpu/winograd_rows.h, AVX2 or portable): the rows a run reads are first copied into a
// zero-padded buffer, so padding (and the crop of a negative padding) costs nothing in the
// kernels; outputs go through a row buffer and are cropped at the bottom/right edges. The
// filter transform runs on L filters at once (GCC vectors). All use common/winograd.h.
//
// Threads: when there are many blocks, each thread runs whole blocks (workspace private to
// it); otherwise blocks run one after another and each phase is split over channels, GEMMs
// or filters. Either way every value is computed by the same operations in the same order,
// so results do not depend on the thread count. GEMMs are called from inside parallel
// regions, so they run single-threaded on the calling thread.

#include "cpu/winograd_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "common/winograd.h"
#include "cpu/gemm.h"
#include "cpu/winograd_rows.h"

namespace cnnkern {
namespace cpu {
namespace {

// 32-byte GCC vectors for the filter transforms: one AVX register, two SSE registers on a
// CPU without AVX (this file is compiled for the default target).
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using vec_t = typename Vec<T>::type;
template <typename T>
constexpr int kLanes = 32 / sizeof(T);

// Target workspace (V and M) per block of tiles: large enough that each GEMM has a long
// N = NB (the transformed filters are re-read once per block), small enough to stay in the
// last-level cache next to another thread's block.
constexpr int64_t kBlockBytes = int64_t(4) << 20;
constexpr int64_t kMaxBlock = 256;

template <typename T>
std::unique_ptr<T[]> alloc(int64_t n) {
  return std::unique_ptr<T[]>(new T[std::max<int64_t>(n, 1)]);
}

int64_t round_up(int64_t x, int64_t k) { return (x + k - 1) / k * k; }

template <int M, typename T>
struct Plan {
  static constexpr int m = M, a = M + 2, A2 = a * a, L = kLanes<T>;
  using V = vec_t<T>;

  const Conv2dProblem& p;
  const WinogradRowKernels<T>& rows;
  int64_t G, Cg, Kg;
  int64_t TH, TW, tiles;  // tile grid per image; tiles in all images
  int64_t NB, nblocks;    // tiles per block, number of blocks
  int64_t ld;             // row length of the V and M workspaces (NB + room for a lane group)
  int64_t in_w, out_w;    // row lengths of the per-thread row buffers

  explicit Plan(const Conv2dProblem& prob) : p(prob), rows(winograd_row_kernels<M, T>()) {
    G = p.groups;
    Cg = p.C_per_group();
    Kg = p.K_per_group();
    TH = (p.P + m - 1) / m;
    TW = (p.Q + m - 1) / m;
    tiles = p.N * TH * TW;
    NB = block_size();
    nblocks = (tiles + NB - 1) / NB;
    ld = NB + kWinogradRowGroup;
    const int64_t run = round_up(std::min(TW, NB), kWinogradRowGroup);  // longest run of tiles
    in_w = run * m + kWinogradRowHalo;
    out_w = run * m;
  }

  // A function of the problem only (never of the thread count), so results are reproducible.
  // Whole tile rows when a row fits the budget (fewer, longer runs for the row kernels).
  int64_t block_size() const {
    const int64_t per_tile = int64_t(A2) * (p.C + p.K) * int64_t(sizeof(T));
    const int64_t target =
        std::max<int64_t>(kWinogradRowGroup, std::min(kMaxBlock, kBlockBytes / per_tile));
    int64_t nb = TW <= target ? target / TW * TW : target / kWinogradRowGroup * kWinogradRowGroup;
    return std::max<int64_t>(1, std::min(nb, tiles));
  }

  int64_t workspace_elems() const { return int64_t(A2) * (p.C + p.K) * ld; }

  // Calls f(row, tx0, n_tiles, t) for each run of tiles of block [t0, t0 + nt) that lies in
  // one tile row: row = n*TH + ty, tiles tx0 .. tx0 + n_tiles - 1, first column t in the block.
  template <typename F>
  void for_each_run(int64_t t0, int64_t nt, F&& f) const {
    for (int64_t t = 0; t < nt;) {
      const int64_t g = t0 + t, row = g / TW, tx0 = g % TW;
      const int64_t n = std::min(TW - tx0, nt - t);
      f(row, tx0, n, t);
      t += n;
    }
  }

  // buf[r][x] = plane[y0 + r][x0 + x] for r < rows, x < width, zero outside the plane.
  static void copy_rows(const T* plane, int64_t H, int64_t W, int64_t y0, int64_t x0, int rows,
                        int64_t width, T* buf) {
    const int64_t lo = std::clamp<int64_t>(-x0, 0, width), hi = std::clamp<int64_t>(W - x0, lo, width);
    for (int r = 0; r < rows; ++r) {
      T* dst = buf + r * width;
      const int64_t y = y0 + r;
      if (y < 0 || y >= H) {
        std::fill(dst, dst + width, T(0));
        continue;
      }
      std::fill(dst, dst + lo, T(0));
      std::memcpy(dst + lo, plane + y * W + x0 + lo, (hi - lo) * sizeof(T));
      std::fill(dst + hi, dst + width, T(0));
    }
  }

  // --- filters ---------------------------------------------------------------------------

  // U[g][xi][k][c] = (G w[g*Kg + k][c] G^T)[xi], L input channels at a time.
  void transform_filters(const T* w, T* U) const {
    const int64_t cgroups = (Cg + L - 1) / L;
    at::parallel_for(0, p.K * cgroups, 1, [&](int64_t begin, int64_t end) {
      alignas(32) T buf[9 * L], ubuf[A2 * L];
      for (int64_t item = begin; item < end; ++item) {
        const int64_t k = item / cgroups, c0 = (item % cgroups) * L;
        const int nvalid = static_cast<int>(std::min<int64_t>(L, Cg - c0));
        for (int l = 0; l < L; ++l)
          for (int i = 0; i < 9; ++i)
            buf[i * L + l] = l < nvalid ? w[(k * Cg + c0 + l) * 9 + i] : T(0);
        V gv[9], u[A2];
        std::memcpy(gv, buf, sizeof(gv));
        winograd::filter_transform<M, T>(gv, 3, 1, u, a, 1);
        std::memcpy(ubuf, u, sizeof(u));
        const int64_t g = k / Kg, kg = k % Kg;
        for (int xi = 0; xi < A2; ++xi) {
          T* dst = U + ((g * A2 + xi) * Kg + kg) * Cg + c0;
          for (int l = 0; l < nvalid; ++l) dst[l] = ubuf[xi * L + l];
        }
      }
    });
  }

  // grad_w[g*Kg + k][c] = G^T dU[g][.][k][c] G, L input channels at a time.
  void filter_gradients(const T* dU, T* gw) const {
    const int64_t cgroups = (Cg + L - 1) / L;
    at::parallel_for(0, p.K * cgroups, 1, [&](int64_t begin, int64_t end) {
      alignas(32) T buf[A2 * L], gbuf[9 * L];
      for (int64_t item = begin; item < end; ++item) {
        const int64_t k = item / cgroups, c0 = (item % cgroups) * L;
        const int nvalid = static_cast<int>(std::min<int64_t>(L, Cg - c0));
        const int64_t g = k / Kg, kg = k % Kg;
        for (int xi = 0; xi < A2; ++xi) {
          const T* src = dU + ((g * A2 + xi) * Kg + kg) * Cg + c0;
          for (int l = 0; l < L; ++l) buf[xi * L + l] = l < nvalid ? src[l] : T(0);
        }
        V u[A2], gv[9];
        std::memcpy(u, buf, sizeof(u));
        winograd::filter_adjoint<M, T>(u, a, 1, gv, 3, 1);
        std::memcpy(gbuf, gv, sizeof(gv));
        for (int l = 0; l < nvalid; ++l)
          for (int i = 0; i < 9; ++i) gw[(k * Cg + c0 + l) * 9 + i] = gbuf[i * L + l];
      }
    });
  }

  // --- phases of one block of nt tiles starting at tile t0 -------------------------------
  // Vw is [A2][C][ld], Mw is [A2][K][ld]: column t of a row is the block's tile t.

  void input_phase(const T* in, int64_t t0, int64_t nt, T* Vw) const {
    const int64_t HW = p.H * p.W, xi_stride = p.C * ld;
    at::parallel_for(0, p.C, 1, [&](int64_t c0, int64_t c1) {
      auto buf = alloc<T>(a * in_w);
      for (int64_t c = c0; c < c1; ++c)
        for_each_run(t0, nt, [&](int64_t row, int64_t tx0, int64_t n, int64_t t) {
          const int64_t img = row / TH, ty = row % TH;
          copy_rows(in + (img * p.C + c) * HW, p.H, p.W, ty * m - p.pad_h, tx0 * m - p.pad_w, a,
                    in_w, buf.get());
          rows.input_row(buf.get(), in_w, n, Vw + c * ld + t, xi_stride);
        });
    });
  }

  void gemm_phase(const T* U, const T* Vw, int64_t nt, T* Mw) const {
    at::parallel_for(0, G * A2, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t g = i / A2, xi = i % A2;
        gemm<T>(Kg, nt, Cg, U + (g * A2 + xi) * Kg * Cg, Cg, 1, Vw + (xi * p.C + g * Cg) * ld,
                ld, 1, T(0), Mw + (xi * p.K + g * Kg) * ld, ld);
      }
    });
  }

  void output_phase(const T* Mw, int64_t t0, int64_t nt, const T* bias, T* out) const {
    const int64_t PQ = p.P * p.Q, xi_stride = p.K * ld;
    at::parallel_for(0, p.K, 1, [&](int64_t k0, int64_t k1) {
      auto buf = alloc<T>(m * out_w);
      for (int64_t k = k0; k < k1; ++k) {
        const T b = bias ? bias[k] : T(0);
        for_each_run(t0, nt, [&](int64_t row, int64_t tx0, int64_t n, int64_t t) {
          rows.output_row(Mw + k * ld + t, xi_stride, n, buf.get(), out_w);
          const int64_t img = row / TH, oy = (row % TH) * m, ox = tx0 * m;
          const int64_t nrows = std::min<int64_t>(m, p.P - oy), ncols = std::min(n * m, p.Q - ox);
          T* o = out + (img * p.K + k) * PQ + oy * p.Q + ox;
          for (int64_t i = 0; i < nrows; ++i)
            for (int64_t j = 0; j < ncols; ++j) o[i * p.Q + j] = buf[i * out_w + j] + b;
        });
      }
    });
  }

  void grad_output_phase(const T* go, int64_t t0, int64_t nt, T* Mw) const {
    const int64_t PQ = p.P * p.Q, xi_stride = p.K * ld;
    at::parallel_for(0, p.K, 1, [&](int64_t k0, int64_t k1) {
      auto buf = alloc<T>(m * in_w);
      for (int64_t k = k0; k < k1; ++k)
        for_each_run(t0, nt, [&](int64_t row, int64_t tx0, int64_t n, int64_t t) {
          const int64_t img = row / TH, ty = row % TH;
          copy_rows(go + (img * p.K + k) * PQ, p.P, p.Q, ty * m, tx0 * m, m, in_w, buf.get());
          rows.grad_output_row(buf.get(), in_w, n, Mw + k * ld + t, xi_stride);
        });
    });
  }

  // dU[g][xi] (+)= dM[xi][g's k][t] * V[xi][g's c][t]^T: a GEMM reducing over the block's tiles.
  void weight_gemm_phase(const T* Mw, const T* Vw, int64_t nt, bool accumulate, T* dU) const {
    at::parallel_for(0, G * A2, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t g = i / A2, xi = i % A2;
        gemm<T>(Kg, Cg, nt, Mw + (xi * p.K + g * Kg) * ld, ld, 1,
                Vw + (xi * p.C + g * Cg) * ld, 1, ld, accumulate ? T(1) : T(0),
                dU + (g * A2 + xi) * Kg * Cg, Cg);
      }
    });
  }
};

}  // namespace

template <int M, typename T>
void winograd_forward(const T* input, const T* weight, const T* bias, T* output,
                      const Conv2dProblem& p) {
  const Plan<M, T> plan(p);
  if (plan.tiles == 0 || p.K == 0) return;
  auto U = alloc<T>(plan.G * plan.A2 * plan.Kg * plan.Cg);
  plan.transform_filters(weight, U.get());

  auto run_block = [&](int64_t b, T* ws) {
    const int64_t t0 = b * plan.NB, nt = std::min(plan.NB, plan.tiles - t0);
    T* Vw = ws;
    T* Mw = ws + int64_t(plan.A2) * p.C * plan.ld;
    plan.input_phase(input, t0, nt, Vw);
    plan.gemm_phase(U.get(), Vw, nt, Mw);
    plan.output_phase(Mw, t0, nt, bias, output);
  };

  // Scheduling only (results are the same either way): whole blocks per thread when there
  // are enough of them to balance, else blocks in turn with each phase split over threads.
  if (plan.nblocks >= 4 * at::get_num_threads()) {
    at::parallel_for(0, plan.nblocks, 1, [&](int64_t b0, int64_t b1) {
      auto ws = alloc<T>(plan.workspace_elems());
      for (int64_t b = b0; b < b1; ++b) run_block(b, ws.get());
    });
  } else {
    auto ws = alloc<T>(plan.workspace_elems());
    for (int64_t b = 0; b < plan.nblocks; ++b) run_block(b, ws.get());
  }
}

template <int M, typename T>
void winograd_backward_weight(const T* grad_output, const T* input, T* grad_weight,
                              const Conv2dProblem& p) {
  const Plan<M, T> plan(p);
  const int64_t u_elems = plan.G * plan.A2 * plan.Kg * plan.Cg;
  if (plan.tiles == 0) {
    std::fill(grad_weight, grad_weight + p.weight_numel(), T(0));
    return;
  }
  auto dU = alloc<T>(u_elems);
  auto ws = alloc<T>(plan.workspace_elems());
  T* Vw = ws.get();
  T* Mw = ws.get() + int64_t(plan.A2) * p.C * plan.ld;
  // Blocks in a fixed order, each accumulated into dU: the reduction over tiles has one order
  // whatever the thread count.
  for (int64_t b = 0; b < plan.nblocks; ++b) {
    const int64_t t0 = b * plan.NB, nt = std::min(plan.NB, plan.tiles - t0);
    plan.input_phase(input, t0, nt, Vw);
    plan.grad_output_phase(grad_output, t0, nt, Mw);
    plan.weight_gemm_phase(Mw, Vw, nt, b > 0, dU.get());
  }
  plan.filter_gradients(dU.get(), grad_weight);
}

#define CNNKERN_INSTANTIATE(M, T)                                                         \
  template void winograd_forward<M, T>(const T*, const T*, const T*, T*,                  \
                                       const Conv2dProblem&);                             \
  template void winograd_backward_weight<M, T>(const T*, const T*, T*, const Conv2dProblem&);
CNNKERN_INSTANTIATE(2, float)
CNNKERN_INSTANTIATE(2, double)
CNNKERN_INSTANTIATE(4, float)
CNNKERN_INSTANTIATE(4, double)
#undef CNNKERN_INSTANTIATE

}  // namespace cpu
}  // namespace cnnkern
