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
// The transforms run on L tiles at once (one per lane of a GCC vector of 32 bytes) with the
// shared host/device code of common/winograd.h: gathering a tile's a x a patch is scalar, the
// arithmetic and the stores into V (contiguous along t) are vector operations.
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

namespace cnnkern {
namespace cpu {
namespace {

// 32-byte GCC vectors: one AVX register, two SSE registers on a CPU without AVX. The
// arithmetic is portable; the compiler picks the instructions the build targets.
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

// Where one tile sits: its image and the top-left corner of its m x m output patch.
struct TileGeo {
  int64_t n, oy, ox;
  bool interior;  // its a x a input patch lies inside the image (no padding to fill)
};

template <typename T>
std::unique_ptr<T[]> alloc(int64_t n) {
  return std::unique_ptr<T[]>(new T[std::max<int64_t>(n, 1)]);
}

template <int M, typename T>
struct Plan {
  static constexpr int m = M, a = M + 2, A2 = a * a, L = kLanes<T>;
  using V = vec_t<T>;

  const Conv2dProblem& p;
  int64_t G, Cg, Kg;
  int64_t TH, TW, tiles;  // tile grid per image; tiles in all images
  int64_t NB, nblocks;    // tiles per block (a multiple of L), number of blocks

  explicit Plan(const Conv2dProblem& prob) : p(prob) {
    G = p.groups;
    Cg = p.C_per_group();
    Kg = p.K_per_group();
    TH = (p.P + m - 1) / m;
    TW = (p.Q + m - 1) / m;
    tiles = p.N * TH * TW;
    NB = block_size();
    nblocks = (tiles + NB - 1) / NB;
  }

  // A function of the problem only (never of the thread count), so results are reproducible.
  int64_t block_size() const {
    const int64_t per_tile = int64_t(A2) * (p.C + p.K) * int64_t(sizeof(T));
    int64_t nb = std::min<int64_t>(kMaxBlock, std::max<int64_t>(L, kBlockBytes / per_tile));
    nb = std::min(nb, (tiles + L - 1) / L * L);
    return std::max<int64_t>(L, nb / L * L);
  }

  int64_t workspace_elems() const { return int64_t(A2) * (p.C + p.K) * NB; }

  // Geometry of tiles [t0, t0 + nt).
  void geometry(int64_t t0, int64_t nt, TileGeo* geo) const {
    for (int64_t i = 0; i < nt; ++i) {
      const int64_t t = t0 + i, per_image = TH * TW;
      const int64_t n = t / per_image, r = t % per_image;
      const int64_t oy = (r / TW) * m, ox = (r % TW) * m;
      const int64_t y0 = oy - p.pad_h, x0 = ox - p.pad_w;
      geo[i] = {n, oy, ox, y0 >= 0 && x0 >= 0 && y0 + a <= p.H && x0 + a <= p.W};
    }
  }

  // --- transforms on L tiles (lanes) at once ---------------------------------------------

  // V[xi * xi_stride + l] = (B^T d B)[xi] for tile geo[l] of channel plane `c` (lanes past
  // nvalid get zeros). in_c points at channel c of image 0; images are img_stride apart.
  void input_tiles(const T* in_c, int64_t img_stride, const TileGeo* geo, int nvalid, T* dst,
                   int64_t xi_stride) const {
    alignas(32) T buf[A2 * L];
    const int64_t H = p.H, W = p.W;
    for (int l = 0; l < L; ++l) {
      if (l >= nvalid) {
        for (int i = 0; i < A2; ++i) buf[i * L + l] = T(0);
        continue;
      }
      const TileGeo& g = geo[l];
      const T* plane = in_c + g.n * img_stride;
      const int64_t y0 = g.oy - p.pad_h, x0 = g.ox - p.pad_w;
      if (g.interior) {
        const T* src = plane + y0 * W + x0;
        for (int r = 0; r < a; ++r)
          for (int s = 0; s < a; ++s) buf[(r * a + s) * L + l] = src[r * W + s];
      } else {
        for (int r = 0; r < a; ++r) {
          const int64_t y = y0 + r;
          const bool row_in = y >= 0 && y < H;
          for (int s = 0; s < a; ++s) {
            const int64_t x = x0 + s;
            buf[(r * a + s) * L + l] = (row_in && x >= 0 && x < W) ? plane[y * W + x] : T(0);
          }
        }
      }
    }
    V d[A2], v[A2];
    std::memcpy(d, buf, sizeof(d));
    winograd::input_transform<M, T>(d, a, 1, v, a, 1);
    for (int xi = 0; xi < A2; ++xi) std::memcpy(dst + xi * xi_stride, &v[xi], sizeof(V));
  }

  // out[tile geo[l], channel plane] = A^T x A + b with x[xi] = src[xi * xi_stride + l],
  // cropped at the bottom/right edges of the output. out_k points at channel k of image 0.
  void output_tiles(const T* src, int64_t xi_stride, const TileGeo* geo, int nvalid, T b,
                    T* out_k, int64_t img_stride) const {
    V x[A2], y[m * m];
    for (int xi = 0; xi < A2; ++xi) std::memcpy(&x[xi], src + xi * xi_stride, sizeof(V));
    winograd::output_transform<M, T>(x, a, 1, y, m, 1);
    alignas(32) T buf[m * m * L];
    std::memcpy(buf, y, sizeof(y));
    const int64_t P = p.P, Q = p.Q;
    for (int l = 0; l < nvalid; ++l) {
      const TileGeo& g = geo[l];
      T* dst = out_k + g.n * img_stride + g.oy * Q + g.ox;
      const int64_t rows = std::min<int64_t>(m, P - g.oy), cols = std::min<int64_t>(m, Q - g.ox);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) dst[i * Q + j] = buf[(i * m + j) * L + l] + b;
    }
  }

  // dst[xi * xi_stride + l] = (A dy A^T)[xi], dy the m x m grad-output patch of tile geo[l]
  // (zeros past the output's edges and in lanes past nvalid).
  void grad_output_tiles(const T* go_k, int64_t img_stride, const TileGeo* geo, int nvalid,
                         T* dst, int64_t xi_stride) const {
    alignas(32) T buf[m * m * L];
    const int64_t P = p.P, Q = p.Q;
    for (int l = 0; l < L; ++l) {
      if (l >= nvalid) {
        for (int i = 0; i < m * m; ++i) buf[i * L + l] = T(0);
        continue;
      }
      const TileGeo& g = geo[l];
      const T* src = go_k + g.n * img_stride + g.oy * Q + g.ox;
      const int64_t rows = std::min<int64_t>(m, P - g.oy), cols = std::min<int64_t>(m, Q - g.ox);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j)
          buf[(i * m + j) * L + l] = (i < rows && j < cols) ? src[i * Q + j] : T(0);
    }
    V dy[m * m], x[A2];
    std::memcpy(dy, buf, sizeof(dy));
    winograd::output_adjoint<M, T>(dy, m, 1, x, a, 1);
    for (int xi = 0; xi < A2; ++xi) std::memcpy(dst + xi * xi_stride, &x[xi], sizeof(V));
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

  // --- phases of one block of nt tiles -----------------------------------------------------
  // V is [A2][C][NB], Mw is [A2][K][NB] (rows padded to NB elements).

  void input_phase(const T* in, const TileGeo* geo, int64_t nt, T* Vw) const {
    const int64_t HW = p.H * p.W, img = p.C * HW, xi_stride = p.C * NB;
    at::parallel_for(0, p.C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t t = 0; t < nt; t += L)
          input_tiles(in + c * HW, img, geo + t, static_cast<int>(std::min<int64_t>(L, nt - t)),
                      Vw + c * NB + t, xi_stride);
    });
  }

  void gemm_phase(const T* U, const T* Vw, int64_t nt, T* Mw) const {
    at::parallel_for(0, G * A2, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t g = i / A2, xi = i % A2;
        gemm<T>(Kg, nt, Cg, U + (g * A2 + xi) * Kg * Cg, Cg, 1, Vw + (xi * p.C + g * Cg) * NB,
                NB, 1, T(0), Mw + (xi * p.K + g * Kg) * NB, NB);
      }
    });
  }

  void output_phase(const T* Mw, const TileGeo* geo, int64_t nt, const T* bias, T* out) const {
    const int64_t PQ = p.P * p.Q, img = p.K * PQ, xi_stride = p.K * NB;
    at::parallel_for(0, p.K, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        const T b = bias ? bias[k] : T(0);
        for (int64_t t = 0; t < nt; t += L)
          output_tiles(Mw + k * NB + t, xi_stride, geo + t,
                       static_cast<int>(std::min<int64_t>(L, nt - t)), b, out + k * PQ, img);
      }
    });
  }

  void grad_output_phase(const T* go, const TileGeo* geo, int64_t nt, T* Mw) const {
    const int64_t PQ = p.P * p.Q, img = p.K * PQ, xi_stride = p.K * NB;
    at::parallel_for(0, p.K, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k)
        for (int64_t t = 0; t < nt; t += L)
          grad_output_tiles(go + k * PQ, img, geo + t,
                            static_cast<int>(std::min<int64_t>(L, nt - t)), Mw + k * NB + t,
                            xi_stride);
    });
  }

  // dU[g][xi] (+)= dM[xi][g's k][t] * V[xi][g's c][t]^T: a GEMM reducing over the block's tiles.
  void weight_gemm_phase(const T* Mw, const T* Vw, int64_t nt, bool accumulate, T* dU) const {
    at::parallel_for(0, G * A2, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t g = i / A2, xi = i % A2;
        gemm<T>(Kg, Cg, nt, Mw + (xi * p.K + g * Kg) * NB, NB, 1,
                Vw + (xi * p.C + g * Cg) * NB, 1, NB, accumulate ? T(1) : T(0),
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

  auto run_block = [&](int64_t b, T* ws, TileGeo* geo) {
    const int64_t t0 = b * plan.NB, nt = std::min(plan.NB, plan.tiles - t0);
    T* Vw = ws;
    T* Mw = ws + int64_t(plan.A2) * p.C * plan.NB;
    plan.geometry(t0, nt, geo);
    plan.input_phase(input, geo, nt, Vw);
    plan.gemm_phase(U.get(), Vw, nt, Mw);
    plan.output_phase(Mw, geo, nt, bias, output);
  };

  // Scheduling only (results are the same either way): whole blocks per thread when there
  // are enough of them to balance, else blocks in turn with each phase split over threads.
  if (plan.nblocks >= 4 * at::get_num_threads()) {
    at::parallel_for(0, plan.nblocks, 1, [&](int64_t b0, int64_t b1) {
      auto ws = alloc<T>(plan.workspace_elems());
      auto geo = alloc<TileGeo>(plan.NB);
      for (int64_t b = b0; b < b1; ++b) run_block(b, ws.get(), geo.get());
    });
  } else {
    auto ws = alloc<T>(plan.workspace_elems());
    auto geo = alloc<TileGeo>(plan.NB);
    for (int64_t b = 0; b < plan.nblocks; ++b) run_block(b, ws.get(), geo.get());
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
  auto geo = alloc<TileGeo>(plan.NB);
  T* Vw = ws.get();
  T* Mw = ws.get() + int64_t(plan.A2) * p.C * plan.NB;
  // Blocks in a fixed order, each accumulated into dU: the reduction over tiles has one order
  // whatever the thread count.
  for (int64_t b = 0; b < plan.nblocks; ++b) {
    const int64_t t0 = b * plan.NB, nt = std::min(plan.NB, plan.tiles - t0);
    plan.geometry(t0, nt, geo.get());
    plan.input_phase(input, geo.get(), nt, Vw);
    plan.grad_output_phase(grad_output, geo.get(), nt, Mw);
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
