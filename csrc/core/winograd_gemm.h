#pragma once
// Winograd F(m x m, 3 x 3) as three stages for a GPU, host + device and torch-free, shared by
// cuda/conv2d_winograd.cu and a CPU emulation that tests it (testing/ops/implicit_gemm_test_ops.cpp).
// The transforms themselves are the ones in core/winograd.h (the CPU Winograd's, tested).
//
// For a 3x3, stride-1, dilation-1 problem q (padding may be negative: a crop), with output
// tiles of m x m, TH x TW tiles per image, T = N * TH * TW tiles, a = m + 2:
//   1. input transform, one item per (c, tile):   V[xi][c][t]  = (B^T d B)[xi]
//   2. filter transform, one item per (k, c/g):   U[xi][g][c][k] = (G g G^T)[xi] of filter
//                                                  g*Kg + k, channel c (k contiguous)
//   3. a*a*groups GEMMs, batch z = xi * groups + g (float32: the fp32 GEMM core through
//      gemm_desc below; float64: the implicit-GEMM tile loop through GemmMap):
//        Mo[xi][g*Kg + k][t] = sum_c V[xi][g*Cg + c][t] * U[xi][g][c][k]
//   4. output transform, one item per (n, k, tile): y = A^T Mo A, + bias, the valid part stored.
// Every buffer is in the accumulator type (float, or double for float64).
//
// grad-input is the same pipeline on the "turned" problem (turned_problem below) with the
// filters read rotated by 180 degrees and their K/C axes swapped (filter_item's `flipped`).

#include <cstdint>

#include "core/conv2d_problem.h"
#include "core/gemm_fp32_tile.h"
#include "core/implicit_gemm.h"
#include "core/macros.h"
#include "core/winograd.h"

namespace cnnkern {
namespace wino_gemm {

template <int M>
struct Geom {
  static constexpr int a = M + 2;
  static constexpr int aa = a * a;
  int64_t TH = 0, TW = 0, T = 0;
  CNNKERN_HD explicit Geom(const Conv2dProblem& q)
      : TH(ceil_div(q.P, M)), TW(ceil_div(q.Q, M)), T(q.N * TH * TW) {}
};

// The grad-input problem (the forward of the turned problem): shared with the CPU backend.
using winograd::turned_problem;

struct GemmParams {
  int64_t T = 0;       // tiles (GEMM rows)
  int64_t C = 0;       // input channels (all groups)
  int64_t K = 0;       // output channels (all groups)
  int64_t groups = 1;
  int64_t aa = 0;      // Winograd points per tile
};

// The Winograd-domain GEMM of point xi and group g, as an implicit-GEMM map (batch z = xi *
// groups + g): A = V[xi][group's channels] (T x Cg, contiguous in t), B = U (Cg x Kg,
// contiguous in k), C = Mo (T x Kg, contiguous in t).
struct GemmMap {
  using Params = GemmParams;
  static constexpr igemm::Pass kPass = igemm::Pass::Fprop;  // never split
  static constexpr bool a_m_contiguous = true;
  using ARow = int64_t;  // m (the tile)
  using BRow = int64_t;  // k (the channel within the group)
  static CNNKERN_HD int64_t batches(const Params& w) { return w.aa * w.groups; }
  Params w;
  int64_t xi, g;
  int64_t M, N, K;
  CNNKERN_HD GemmMap(const Params& prm, int64_t z)
      : w(prm), xi(z / prm.groups), g(z % prm.groups), M(prm.T), N(prm.K / prm.groups),
        K(prm.C / prm.groups) {}
  CNNKERN_HD ARow a_row(int64_t m) const { return m; }
  CNNKERN_HD int64_t a_at(ARow m, int64_t k) const { return (xi * w.C + g * K + k) * w.T + m; }
  CNNKERN_HD BRow b_row(int64_t k) const { return k; }
  CNNKERN_HD int64_t b_at(BRow k, int64_t n) const {
    return ((xi * w.groups + g) * K + k) * N + n;
  }
  CNNKERN_HD int64_t c_offset(int64_t m, int64_t n) const {
    return (xi * w.K + g * N + n) * w.T + m;
  }
  CNNKERN_HD int64_t channel(int64_t) const { return 0; }  // the bias is added after step 4
};

// The same GEMMs for the fp32 core, turned so that its n (the dimension its 16-byte copies and
// float4 stores run along) is the tile t, contiguous in V and Mo: C = Mo (Kg x T), A = U
// (Kg x Cg, Kg contiguous), B = V (Cg x T). All three are 16-byte aligned in every batch when
// T and Kg are multiples of 4 (and the buffers are).
CNNKERN_HD gemm32::GemmDesc gemm_desc(const GemmParams& w) {
  const int64_t Cg = w.C / w.groups, Kg = w.K / w.groups;
  gemm32::GemmDesc d;
  d.batches = w.aa * w.groups;
  d.M = Kg;
  d.N = w.T;
  d.K = Cg;
  d.a_z = Cg * Kg;
  d.a_m = 1;
  d.a_k = Kg;
  d.b_z = Cg * w.T;
  d.b_k = w.T;
  d.b_n = 1;
  d.c_z = Kg * w.T;
  d.c_m = w.T;
  d.c_n = 1;
  return d;
}

template <int M>
CNNKERN_HD GemmParams gemm_params(const Conv2dProblem& q, const Geom<M>& gm) {
  GemmParams w;
  w.T = gm.T;
  w.C = q.C;
  w.K = q.K;
  w.groups = q.groups;
  w.aa = Geom<M>::aa;
  return w;
}

// Step 1 for item i in [0, C * T): channel c = i / T, tile t = i % T.
template <int M, class Acc, class Cvt, class In>
CNNKERN_HD void input_item(const Conv2dProblem& q, const Geom<M>& gm, const In* x, Acc* V,
                           int64_t i) {
  constexpr int a = Geom<M>::a;
  const int64_t c = i / gm.T, t = i % gm.T;
  const int64_t tw = t % gm.TW, u = t / gm.TW;
  const int64_t th = u % gm.TH, n = u / gm.TH;
  const int64_t h0 = th * M - q.pad_h, w0 = tw * M - q.pad_w;
  const In* xc = x + (n * q.C + c) * q.H * q.W;
  Acc d[a][a], v[a][a];
  CNNKERN_UNROLL
  for (int r = 0; r < a; ++r) {
    const int64_t h = h0 + r;
    CNNKERN_UNROLL
    for (int s = 0; s < a; ++s) {
      const int64_t w = w0 + s;
      d[r][s] = (h >= 0 && h < q.H && w >= 0 && w < q.W) ? Cvt::load(xc, h * q.W + w) : Acc(0);
    }
  }
  winograd::input_transform<M, Acc>(&d[0][0], a, 1, &v[0][0], a, 1);
  CNNKERN_UNROLL
  for (int xi = 0; xi < a * a; ++xi) V[(xi * q.C + c) * gm.T + t] = v[xi / a][xi % a];
}

// Step 2 for item i in [0, K * Cg): filter ko = i / Cg, input channel ci = i % Cg (of q).
// flipped: q is turned_problem(p) and the filter is p's, rotated 180 degrees, K/C swapped:
// q's filter (g*Kg_q + c, k) is p's weight (g*Kg_p + k, c) turned, where Kg_p = Cg_q and
// Cg_p = Kg_q.
template <int M, class Acc, class Cvt, class In>
CNNKERN_HD void filter_item(const Conv2dProblem& q, const In* w, bool flipped, Acc* U,
                            int64_t i) {
  constexpr int a = Geom<M>::a;
  const int64_t Cg = q.C_per_group(), Kg = q.K_per_group();
  const int64_t ko = i / Cg, ci = i % Cg;
  Acc gk[3][3], u[a][a];
  if (!flipped) {
    const int64_t base = (ko * Cg + ci) * 9;
    CNNKERN_UNROLL
    for (int e = 0; e < 9; ++e) gk[e / 3][e % 3] = Cvt::load(w, base + e);
  } else {
    const int64_t g = ko / Kg, c = ko % Kg;
    const int64_t base = ((g * Cg + ci) * Kg + c) * 9;
    CNNKERN_UNROLL
    for (int e = 0; e < 9; ++e) gk[e / 3][e % 3] = Cvt::load(w, base + 8 - e);
  }
  winograd::filter_transform<M, Acc>(&gk[0][0], 3, 1, &u[0][0], a, 1);
  const int64_t g = ko / Kg, k = ko % Kg;
  CNNKERN_UNROLL
  for (int xi = 0; xi < a * a; ++xi)
    U[((xi * q.groups + g) * Cg + ci) * Kg + k] = u[xi / a][xi % a];
}

// Step 4 for item i in [0, N * K * TH * TW): (n, k, th, tw), tw fastest. Calls
// out(offset into the N x K x P x Q output, channel k, value) for the tile's valid outputs.
template <int M, class Acc, class Out>
CNNKERN_HD void output_item(const Conv2dProblem& q, const Geom<M>& gm, const Acc* Mo,
                            int64_t i, Out& out) {
  constexpr int a = Geom<M>::a;
  const int64_t tw = i % gm.TW;
  int64_t u = i / gm.TW;
  const int64_t th = u % gm.TH;
  u /= gm.TH;
  const int64_t k = u % q.K, n = u / q.K;
  const int64_t t = (n * gm.TH + th) * gm.TW + tw;
  Acc x[a][a], y[M][M];
  CNNKERN_UNROLL
  for (int xi = 0; xi < a * a; ++xi) x[xi / a][xi % a] = Mo[(xi * q.K + k) * gm.T + t];
  winograd::output_transform<M, Acc>(&x[0][0], a, 1, &y[0][0], M, 1);
  CNNKERN_UNROLL
  for (int r = 0; r < M; ++r) {
    const int64_t op = th * M + r;
    CNNKERN_UNROLL
    for (int s = 0; s < M; ++s) {
      const int64_t oq = tw * M + s;
      if (op < q.P && oq < q.Q) out(((n * q.K + k) * q.P + op) * q.Q + oq, k, y[r][s]);
    }
  }
}

// Images per pass so that V and Mo stay under max_elems accumulator elements together (at
// least one image; the launcher loops over the batch in chunks of this size).
template <int M>
CNNKERN_HD int64_t images_per_chunk(const Conv2dProblem& q, int64_t max_elems) {
  Conv2dProblem one = q;
  one.N = 1;
  const Geom<M> gm(one);
  const int64_t per_image = Geom<M>::aa * (q.C + q.K) * gm.T;
  int64_t n = max_elems / (per_image > 0 ? per_image : 1);
  if (n < 1) n = 1;
  return n < q.N ? n : q.N;
}

// 2^26 accumulator elements (256 MiB of float) for V + Mo.
constexpr int64_t kMaxChunkElems = int64_t(1) << 26;

}  // namespace wino_gemm
}  // namespace cnnkern
