#pragma once
// Implicit-GEMM convolution: the index math and the tile loop, shared by the CUDA kernels
// (cuda/conv2d_implicit_gemm.cu) and a CPU emulation used only by tests
// (testing/ops/implicit_gemm_test_ops.cpp -> tests/internals/test_implicit_gemm_cpu.py). Plain data, no torch,
// host + device, so the exact code a GPU block runs can be checked on a CPU first.
//
// Each convolution pass is, per group g, a GEMM  C[M x N] = A[M x K] * B[K x N]  whose operands
// are never materialised: A(m, k) and B(k, n) are gathered from the tensors through the maps
// below (offset < 0 means "zero": padding, or a stride hole).
//
//   pass   M              N        K (reduction)    A(m, k)             B(k, n)          C(m, n)
//   fprop  N*P*Q (n,p,q)  K/g      C/g*R*S (c,r,s)  input(n,c,h,w)      weight(k,c,r,s)  output
//   dgrad  N*H*W (n,h,w)  C/g      K/g*R*S (k,r,s)  grad_out(n,k,p,q)   weight(k,c,r,s)  grad_in
//   wgrad  K/g   (k)      C/g*R*S  N*P*Q   (n,p,q)  grad_out(n,k,p,q)   input(n,c,h,w)   grad_w
//
// dgrad is the gather form: grad_in(h, w) collects every (p, q, r, s) with
// h = p*stride - pad + r*dil, i.e. p = (h + pad - r*dil) / stride when that divides exactly and
// lands in [0, P). It works for every stride/dilation; with stride > 1 most of A is stride holes
// (zeros multiplied), which costs time, not correctness.
// wgrad splits its long reduction (N*P*Q) into `splits` ranges; each writes a partial C into a
// workspace [split][K*C/g*R*S] and a second pass adds the partials in split order, so the result
// does not depend on scheduling (no atomics).
//
// Tensors are contiguous NCHW (weights K x C/g x R x S). Offsets are 64-bit everywhere.

#include <cstdint>
#include <cstring>

#include "core/conv2d_divisors.h"
#include "core/conv2d_problem.h"
#include "core/int_math.h"
#include "core/macros.h"

namespace cnnkern {
namespace igemm {

enum class Pass : int { Fprop = 0, Dgrad = 1, Wgrad = 2 };

// One tile configuration for every dtype (few template instantiations: build time matters).
// 256 threads as a 16 x 16 grid; each computes a 4 x 4 micro-tile whose rows are tm + 16*i and
// columns tn + 16*j (strided, so a warp's shared-memory reads of A are 16 consecutive words and
// its C stores are consecutive in m).
struct Tile {
  static constexpr int BM = 64, BN = 64, BK = 16;
  static constexpr int kThreads = 256;
  static constexpr int TM = 4, TN = 4;  // BM = 16 * TM, BN = 16 * TN
  static constexpr int kLoadsA = BM * BK / kThreads;  // 4 elements of A per thread per k-tile
  static constexpr int kLoadsB = BK * BN / kThreads;  // 4 of B
  static constexpr int kPad = 1;  // shared rows BM + 1 / BN + 1: fewer bank conflicts on stores
};
static_assert(Tile::BM == 16 * Tile::TM && Tile::BN == 16 * Tile::TN, "16 x 16 thread grid");
static_assert(Tile::kThreads == 256, "the load mappings below assume 256 threads");

// ---------------------------------------------------------------------------------------------
// Operand maps. Each gives the GEMM sizes of one batch (a group here; the Winograd GEMMs in
// core/winograd_gemm.h define their own map) and the element offsets, in elements of the
// tensor named in the table above, -1 for a structural zero (padding, stride hole).
//
// Offsets come in two steps so the loader decodes each coordinate once: every thread's loads
// share one coordinate (see the load mappings below), decoded into a "row" by a_row / b_row,
// then a_at / b_at add the other coordinate.
//   A, a_m_contiguous (consecutive threads take consecutive m): a_row(m), a_at(row, k); the
//      thread's m is fixed for the whole block, so the row is decoded once per block.
//   A, k-contiguous: a_row(k), a_at(row, m); decoded once per k-tile.
//   B (always k-contiguous): b_row(k), b_at(row, n); decoded once per k-tile.
// The reduction coordinate of fprop/dgrad and the spatial ones are decoded in 32 bits
// (checked by index32_why_not); offsets are 64-bit.
// ---------------------------------------------------------------------------------------------

// An input image row decoded from an output position (n, p, q): where its window starts.
struct ImageRow {
  int64_t base = 0;  // offset of (n, first channel of the group, 0, 0)
  int32_t h0 = 0, w0 = 0;
};

// The row of output position (n, op, q), decoded.
CNNKERN_HD ImageRow image_row_of(const Conv2dProblem& p, int64_t g, int64_t n, int64_t op,
                                 int64_t q) {
  ImageRow row;
  row.base = (n * p.C + g * p.C_per_group()) * p.H * p.W;
  row.h0 = static_cast<int32_t>(op * p.stride_h - p.pad_h);
  row.w0 = static_cast<int32_t>(q * p.stride_w - p.pad_w);
  return row;
}

CNNKERN_HD ImageRow image_row(const Conv2dProblem& p, int64_t g, int64_t npq) {
  const int64_t q = npq % p.Q, t = npq / p.Q;
  const int64_t op = t % p.P, n = t / p.P;
  return image_row_of(p, g, n, op, q);
}

// image_row with the divisions by Q and P as FastDivmods when N*P*Q fits (npq32): the same
// row. grad-weight decodes one per k-tile in its tile loop.
CNNKERN_HD ImageRow image_row(const ConvDivParams& p, int64_t g, int64_t npq) {
  if (!p.npq32) return image_row(static_cast<const Conv2dProblem&>(p), g, npq);
  int32_t q, op;
  const int32_t t = divmod32(p.div_Q, static_cast<int32_t>(npq), q);
  const int32_t n = divmod32(p.div_P, t, op);
  return image_row_of(p, g, n, op, q);
}

// The input element under filter tap crs = (c, r, s) of the window at `row`, or -1.
// crs < C/groups*R*S < 2^30 (index32_why_not): FastDivmod range.
CNNKERN_HD int64_t image_at(const ConvDivParams& p, const ImageRow& row, int64_t crs) {
  int32_t s, r;
  const int32_t u = divmod32(p.div_S, static_cast<int32_t>(crs), s);
  const int32_t c = divmod32(p.div_R, u, r);
  const int32_t h = row.h0 + r * static_cast<int32_t>(p.dil_h);
  const int32_t w = row.w0 + s * static_cast<int32_t>(p.dil_w);
  if (h < 0 || h >= p.H || w < 0 || w >= p.W) return -1;
  return row.base + (static_cast<int64_t>(c) * p.H + h) * p.W + w;
}

struct FpropMap {
  using Params = ConvDivParams;
  static constexpr Pass kPass = Pass::Fprop;
  // GEMMs per launch (grid z without splits): one per group.
  static CNNKERN_HD int64_t batches(const Params& prob) { return prob.groups; }
  static constexpr bool a_m_contiguous = true;   // consecutive m = consecutive q
  using ARow = ImageRow;
  using BRow = int64_t;
  ConvDivParams p;
  int64_t g;
  int64_t M, N, K;

  CNNKERN_HD FpropMap(const ConvDivParams& prob, int64_t group)
      : p(prob), g(group), M(prob.gemm_m()), N(prob.K_per_group()), K(prob.gemm_k()) {}

  CNNKERN_HD ARow a_row(int64_t m) const { return image_row(p, g, m); }
  CNNKERN_HD int64_t a_at(const ARow& row, int64_t k) const { return image_at(p, row, k); }
  CNNKERN_HD BRow b_row(int64_t k) const { return k; }
  CNNKERN_HD int64_t b_at(BRow k, int64_t n) const {
    return (g * N + n) * K + k;  // weight(g*Kg + n, k = (c, r, s))
  }
  CNNKERN_HD int64_t c_offset(int64_t m, int64_t n) const {
    const int64_t q = m % p.Q, t = m / p.Q;
    const int64_t op = t % p.P, nn = t / p.P;
    return ((nn * p.K + g * N + n) * p.P + op) * p.Q + q;
  }
  // The output channel of column n (for the bias).
  CNNKERN_HD int64_t channel(int64_t n) const { return g * N + n; }
};

struct DgradMap {
  using Params = ConvDivParams;
  static constexpr Pass kPass = Pass::Dgrad;
  static CNNKERN_HD int64_t batches(const Params& prob) { return prob.groups; }
  static constexpr bool a_m_contiguous = true;   // consecutive m = consecutive w -> q (stride 1)
  struct ARow {
    int64_t base = 0;        // grad_out offset of (n, first channel of the group, 0, 0)
    int32_t hp = 0, wp = 0;  // h + pad_h, w + pad_w
  };
  struct BRow {
    int64_t base = 0;        // weight offset of (g*Kg + kk, c = 0, r, s)
  };
  ConvDivParams p;
  int64_t g;
  int64_t M, N, K;

  CNNKERN_HD DgradMap(const ConvDivParams& prob, int64_t group)
      : p(prob), g(group), M(prob.N * prob.H * prob.W), N(prob.C_per_group()),
        K(prob.K_per_group() * prob.R * prob.S) {}

  CNNKERN_HD ARow a_row(int64_t m) const {
    const int64_t w = m % p.W, t = m / p.W;
    const int64_t h = t % p.H, n = t / p.H;
    ARow row;
    row.base = (n * p.K + g * p.K_per_group()) * p.P * p.Q;
    row.hp = static_cast<int32_t>(h + p.pad_h);
    row.wp = static_cast<int32_t>(w + p.pad_w);
    return row;
  }
  // grad_out(n, kk, p, q) with h = p*stride - pad + r*dil, i.e. p = (h + pad - r*dil) / stride.
  // Every divided value is in [0, 2^30) (index32_why_not): FastDivmod range.
  CNNKERN_HD int64_t a_at(const ARow& row, int64_t k) const {
    int32_t s, r;
    const int32_t u = divmod32(p.div_S, static_cast<int32_t>(k), s);
    const int32_t kk = divmod32(p.div_R, u, r);
    const int32_t hh = row.hp - r * static_cast<int32_t>(p.dil_h);
    const int32_t ww = row.wp - s * static_cast<int32_t>(p.dil_w);
    if (hh < 0 || ww < 0) return -1;
    int32_t hrem, wrem;
    const int32_t op = divmod32(p.div_stride_h, hh, hrem);
    const int32_t q = divmod32(p.div_stride_w, ww, wrem);
    if (hrem != 0 || wrem != 0 || op >= p.P || q >= p.Q) return -1;
    return row.base + (static_cast<int64_t>(kk) * p.P + op) * p.Q + q;
  }
  CNNKERN_HD BRow b_row(int64_t k) const {
    const int32_t RS = static_cast<int32_t>(p.R * p.S);
    int32_t rs;
    const int32_t kk = divmod32(p.div_RS, static_cast<int32_t>(k), rs);
    BRow row;
    row.base = (g * p.K_per_group() + kk) * N * RS + rs;
    return row;
  }
  CNNKERN_HD int64_t b_at(const BRow& row, int64_t n) const {
    return row.base + n * (p.R * p.S);  // weight(kk, c = n, r, s)
  }
  CNNKERN_HD int64_t c_offset(int64_t m, int64_t n) const {
    const int64_t w = m % p.W, t = m / p.W;
    const int64_t h = t % p.H, nn = t / p.H;
    return ((nn * p.C + g * N + n) * p.H + h) * p.W + w;
  }
  CNNKERN_HD int64_t channel(int64_t n) const { return g * N + n; }
};

struct WgradMap {
  using Params = ConvDivParams;
  static constexpr Pass kPass = Pass::Wgrad;
  static CNNKERN_HD int64_t batches(const Params& prob) { return prob.groups; }
  static constexpr bool a_m_contiguous = false;  // A(k_out, (n,p,q)): contiguous in q
  struct ARow {
    int64_t base = 0;  // grad_out offset of (n, g*Kg, p, q) for reduction index (n, p, q)
  };
  using BRow = ImageRow;  // B((n,p,q), (c,r,s)) = input under the window of (n, p, q)
  ConvDivParams p;
  int64_t g;
  int64_t M, N, K;

  CNNKERN_HD WgradMap(const ConvDivParams& prob, int64_t group)
      : p(prob), g(group), M(prob.K_per_group()), N(prob.gemm_k()), K(prob.gemm_m()) {}

  CNNKERN_HD ARow a_row(int64_t k) const {
    const int64_t pq = p.P * p.Q;
    int64_t n, rest;
    if (p.npq32) {
      int32_t rest32;
      n = divmod32(p.div_PQ, static_cast<int32_t>(k), rest32);
      rest = rest32;
    } else {
      n = k / pq;
      rest = k % pq;
    }
    ARow row;
    row.base = (n * p.K + g * M) * pq + rest;
    return row;
  }
  CNNKERN_HD int64_t a_at(const ARow& row, int64_t m) const { return row.base + m * p.P * p.Q; }
  CNNKERN_HD BRow b_row(int64_t k) const { return image_row(p, g, k); }
  CNNKERN_HD int64_t b_at(const BRow& row, int64_t j) const { return image_at(p, row, j); }
  // The weight element index; also the workspace column (workspace is [split][weight_numel]).
  CNNKERN_HD int64_t c_offset(int64_t m, int64_t j) const { return (g * M + m) * N + j; }
  CNNKERN_HD int64_t channel(int64_t) const { return 0; }  // no bias in wgrad
};

// Dense-operand element offsets through a map's two steps (tests, and documentation).
template <class Map>
CNNKERN_HD int64_t a_offset(const Map& map, int64_t m, int64_t k) {
  return Map::a_m_contiguous ? map.a_at(map.a_row(m), k) : map.a_at(map.a_row(k), m);
}
template <class Map>
CNNKERN_HD int64_t b_offset(const Map& map, int64_t k, int64_t n) {
  return map.b_at(map.b_row(k), n);
}

// The 32-bit parts of the maps' index math: "" when they cannot overflow, else why.
constexpr int64_t kMax32 = int64_t(1) << 30;  // headroom for the sums of two such values
CNNKERN_HD const char* index32_why_not(const Conv2dProblem& p) {
  if (p.C_per_group() * p.R * p.S >= kMax32 || p.K_per_group() * p.R * p.S >= kMax32)
    return "C/groups*R*S and K/groups*R*S must be < 2^30";
  if (p.H >= kMax32 || p.W >= kMax32 || p.P >= kMax32 || p.Q >= kMax32)
    return "input and output height and width must be < 2^30";
  const int64_t reach_h = (p.R - 1) * p.dil_h + p.pad_h + p.P * p.stride_h;
  const int64_t reach_w = (p.S - 1) * p.dil_w + p.pad_w + p.Q * p.stride_w;
  if (reach_h >= kMax32 || reach_w >= kMax32 || p.pad_h >= kMax32 || p.pad_w >= kMax32)
    return "padding, stride and dilation must keep every window position < 2^30";
  return "";
}

// ---------------------------------------------------------------------------------------------
// Grid and split-K plan. A pure function of the problem (never of the device), so the same
// problem always reduces in the same order, on any GPU.
// ---------------------------------------------------------------------------------------------

// Blocks we try to have in flight for wgrad (2 per SM on a 132-SM H100).
constexpr int64_t kTargetBlocks = 264;
// Each split reduces at least this many k-tiles (amortises the partial-tile write).
constexpr int64_t kMinTilesPerSplit = 8;
// Workspace cap, in accumulator elements, over all splits (64 MiB of float).
constexpr int64_t kMaxWorkspaceElems = int64_t(1) << 24;
// CUDA grid limits: x < 2^31, y and z <= 65535.
constexpr int64_t kMaxGridX = 2147483647, kMaxGridYZ = 65535;

struct Plan {
  int64_t M = 0, N = 0, K = 0;      // per-group GEMM sizes
  int64_t groups = 1;               // GEMMs per launch (Map::batches)
  int64_t tiles_m = 0, tiles_n = 0;
  int64_t splits = 1;                // wgrad only; 1 for fprop/dgrad
  int64_t k_chunk = 0;               // reduction range of one split, a multiple of BK
  // grid: x = tiles_m, y = tiles_n, z = groups * splits (z = g * splits + split)
  CNNKERN_HD int64_t grid_z() const { return groups * splits; }
  CNNKERN_HD int64_t k_begin(int64_t split) const { return split * k_chunk; }
  CNNKERN_HD int64_t k_end(int64_t split) const {
    const int64_t e = (split + 1) * k_chunk;
    return e < K ? e : K;
  }
  CNNKERN_HD int64_t workspace_elems() const { return splits > 1 ? splits * groups * M * N : 0; }
};

// forced_splits > 0 overrides the heuristic (tests); it is still clamped to the valid range.
template <class Map>
CNNKERN_HD Plan make_plan(const typename Map::Params& p, int64_t forced_splits = 0) {
  const Map map(p, 0);
  Plan pl;
  pl.M = map.M;
  pl.N = map.N;
  pl.K = map.K;
  pl.groups = Map::batches(p);
  pl.tiles_m = ceil_div(pl.M, Tile::BM);
  pl.tiles_n = ceil_div(pl.N, Tile::BN);
  int64_t splits = 1;
  if (Map::kPass == Pass::Wgrad) {
    const int64_t tiles = pl.groups * pl.tiles_m * pl.tiles_n;
    splits = forced_splits > 0 ? forced_splits : ceil_div(kTargetBlocks, tiles);
    const int64_t by_k = ceil_div(pl.K, Tile::BK * (forced_splits > 0 ? 1 : kMinTilesPerSplit));
    if (splits > by_k) splits = by_k;
    const int64_t per_split = pl.groups * pl.M * pl.N;
    const int64_t by_ws = kMaxWorkspaceElems / (per_split > 0 ? per_split : 1);
    if (splits > by_ws) splits = by_ws;
    const int64_t by_grid = kMaxGridYZ / pl.groups;
    if (splits > by_grid) splits = by_grid;
    if (splits < 1) splits = 1;
  }
  // Round each split's range up to whole k-tiles, then drop the splits left empty. An empty
  // reduction (an empty batch's wgrad) is one empty split: k_chunk 0 must not divide.
  pl.k_chunk = ceil_div(ceil_div(pl.K, splits), Tile::BK) * Tile::BK;
  pl.splits = pl.k_chunk > 0 ? ceil_div(pl.K, pl.k_chunk) : 1;
  return pl;
}

// "" when the grid fits the CUDA limits, else why not.
CNNKERN_HD const char* plan_why_not(const Plan& pl) {
  if (pl.tiles_m > kMaxGridX) return "too many output rows for one grid (N*P*Q / 64 >= 2^31)";
  if (pl.tiles_n > kMaxGridYZ) return "too many GEMM columns for one grid (> 65535 tiles of 64)";
  if (pl.grid_z() > kMaxGridYZ) return "more than 65535 GEMMs (groups) in one grid";
  return "";
}

// ---------------------------------------------------------------------------------------------
// The block's tile loop, written once for the GPU and for the CPU emulation.
//
// Exec abstracts "the threads of one block": on the GPU it is the calling thread alone
// (begin() = threadIdx.x, end() = begin() + 1, slot() = 0, sync() = __syncthreads()); the CPU
// emulation runs all kThreads threads of a phase in turn (slot(t) = t, sync() does nothing).
// Between two sync() calls a thread touches only its own ThreadState and the shared buffers
// the schedule gives it, so running the threads one after another is one legal interleaving.
//
// Cvt::load(ptr, offset) reads an element and converts it to Acc (the GPU uses __ldg and the
// half/bfloat16 intrinsics; the CPU emulation a plain read).
// ---------------------------------------------------------------------------------------------

template <class Acc>
struct SharedTiles {
  Acc a[2][Tile::BK][Tile::BM + Tile::kPad];
  Acc b[2][Tile::BK][Tile::BN + Tile::kPad];
};

template <class Acc, class ARow>
struct ThreadState {
  Acc acc[Tile::TM][Tile::TN];
  Acc a_next[Tile::kLoadsA];
  Acc b_next[Tile::kLoadsB];
  ARow a_row;  // m-contiguous A: the decoded row of this thread's fixed m (see the maps)
};

// Tile coordinates of load i of thread t. A is BM x BK; B is BK x BN.
// m-contiguous A: m = t % 64 (fixed per thread), k = t / 64 + 4 i.
// k-contiguous A: k = t % 16 (fixed), m = t / 16 + 16 i.
// k-contiguous B: k = t % 16, n = t / 16 + 16 i.
template <bool kMContiguous>
CNNKERN_HD void a_load_coord(int t, int i, int& m, int& k) {
  if (kMContiguous) {
    m = t % Tile::BM;
    k = t / Tile::BM + (Tile::kThreads / Tile::BM) * i;
  } else {
    k = t % Tile::BK;
    m = t / Tile::BK + (Tile::kThreads / Tile::BK) * i;
  }
}
CNNKERN_HD void b_load_coord(int t, int i, int& k, int& n) {
  k = t % Tile::BK;
  n = t / Tile::BK + (Tile::kThreads / Tile::BK) * i;
}
// Micro-tile element (i, j) of thread t: row tm + 16 i, column tn + 16 j.
CNNKERN_HD int c_row(int t, int i) { return t % 16 + 16 * i; }
CNNKERN_HD int c_col(int t, int j) { return t / 16 + 16 * j; }

// The loads of thread t for the k-tile starting at k0. Each thread's A loads share one
// coordinate (m for m-contiguous A: t % BM; k otherwise: t % BK) and its B loads one k
// (t % BK), so each is decoded once (the maps' rows).
template <class Cvt, class Acc, class Map, class In>
CNNKERN_HD void load_tiles(const Map& map, const In* a_src, const In* b_src, int t, int64_t m0,
                           int64_t n0, int64_t k0, int64_t k_end,
                           ThreadState<Acc, typename Map::ARow>& st) {
  const typename Map::ARow a_row =
      Map::a_m_contiguous ? st.a_row : map.a_row(k0 + t % Tile::BK);
  CNNKERN_UNROLL
  for (int i = 0; i < Tile::kLoadsA; ++i) {
    int ml, kl;
    a_load_coord<Map::a_m_contiguous>(t, i, ml, kl);
    const int64_t m = m0 + ml, k = k0 + kl;
    const int64_t off = (m < map.M && k < k_end)
                            ? (Map::a_m_contiguous ? map.a_at(a_row, k) : map.a_at(a_row, m))
                            : -1;
    st.a_next[i] = off >= 0 ? Cvt::load(a_src, off) : Acc(0);
  }
  const typename Map::BRow b_row = map.b_row(k0 + t % Tile::BK);
  CNNKERN_UNROLL
  for (int i = 0; i < Tile::kLoadsB; ++i) {
    int kl, nl;
    b_load_coord(t, i, kl, nl);
    const int64_t k = k0 + kl, n = n0 + nl;
    const int64_t off = (n < map.N && k < k_end) ? map.b_at(b_row, n) : -1;
    st.b_next[i] = off >= 0 ? Cvt::load(b_src, off) : Acc(0);
  }
}

template <class Acc, class Map>
CNNKERN_HD void store_tiles(const ThreadState<Acc, typename Map::ARow>& st, int t,
                            SharedTiles<Acc>& sm, int buf) {
CNNKERN_UNROLL
  for (int i = 0; i < Tile::kLoadsA; ++i) {
    int ml, kl;
    a_load_coord<Map::a_m_contiguous>(t, i, ml, kl);
    sm.a[buf][kl][ml] = st.a_next[i];
  }
CNNKERN_UNROLL
  for (int i = 0; i < Tile::kLoadsB; ++i) {
    int kl, nl;
    b_load_coord(t, i, kl, nl);
    sm.b[buf][kl][nl] = st.b_next[i];
  }
}

// a*b + c: nvcc contracts it to one FFMA/DFMA (exact fp32 FMA, no TF32); the CPU emulation
// (double) may round twice, which its tolerance allows.
CNNKERN_HD float fma_acc(float a, float b, float c) { return a * b + c; }
CNNKERN_HD double fma_acc(double a, double b, double c) { return a * b + c; }

template <class Acc, class State>
CNNKERN_HD void compute_tile(const SharedTiles<Acc>& sm, int buf, int t, State& st) {
CNNKERN_UNROLL
  for (int kk = 0; kk < Tile::BK; ++kk) {
    Acc a[Tile::TM], b[Tile::TN];
CNNKERN_UNROLL
    for (int i = 0; i < Tile::TM; ++i) a[i] = sm.a[buf][kk][c_row(t, i)];
CNNKERN_UNROLL
    for (int j = 0; j < Tile::TN; ++j) b[j] = sm.b[buf][kk][c_col(t, j)];
CNNKERN_UNROLL
    for (int i = 0; i < Tile::TM; ++i)
CNNKERN_UNROLL
      for (int j = 0; j < Tile::TN; ++j) st.acc[i][j] = fma_acc(a[i], b[j], st.acc[i][j]);
  }
}

// Compute policies: how the block's threads turn the shared tiles into the 64 x 64 C tile
// (compute), and which C element accumulator acc[i][j] of thread t holds (row, col).
struct SimtCompute {
  template <class Acc, class State>
  CNNKERN_HD static void compute(const SharedTiles<Acc>& sm, int buf, int t, State& st) {
    compute_tile(sm, buf, t, st);
  }
  CNNKERN_HD static int row(int t, int i, int) { return c_row(t, i); }
  CNNKERN_HD static int col(int t, int, int j) { return c_col(t, j); }
};

// Tensor cores, mma.sync with fp32 accumulators: the GPU side is MmaCompute in
// cuda/implicit_gemm_kernel.cuh (its MMA step a policy: MmaOp<half>, MmaOp<bfloat16>,
// Tf32MmaOp), the CPU emulation's in the tests-only ops. Two instruction shapes share one warp
// tiling and one accumulator layout (MmaLayout) and differ in k and in their operand fragments
// (MmaShapeK16, MmaShapeK8Tf32 below).
// The 8 warps form 2 (m) x 4 (n); warp w owns rows 32*(w%2) .. +32 and columns 16*(w/2) .. +16,
// i.e. 2 x 2 mma tiles of 16 x 8; the BK = 16 tile is one k16 step or two k8 steps. Thread t's
// acc[i][j] is element j of mma tile (i / 2, i % 2)'s accumulator fragment, the same for both
// shapes (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type" and "... for
// mma.m16n8k8", the f32 accumulator figures), gid = lane / 4, tig = lane % 4:
//   C (16 x 8):       element j of 4 -> row gid + 8*(j/2), column 2*tig + (j%2)
struct MmaLayout {
  static_assert(Tile::BK == 16 && Tile::BM == 64 && Tile::BN == 64 && Tile::kThreads == 256,
                "the warp tiling below is written for 64 x 64 x 16 tiles and 8 warps");
  static_assert(Tile::TM * Tile::TN == 16, "2 x 2 mma tiles x 4 accumulators per thread");
  CNNKERN_HD static int warp_m0(int t) { return 32 * ((t / 32) % 2); }
  CNNKERN_HD static int warp_n0(int t) { return 16 * ((t / 32) / 2); }
  CNNKERN_HD static int row(int t, int i, int j) {
    return warp_m0(t) + 16 * (i / 2) + (t % 32) / 4 + 8 * (j / 2);
  }
  CNNKERN_HD static int col(int t, int i, int j) {
    return warp_n0(t) + 8 * (i % 2) + 2 * (t % 4) + (j % 2);
  }
};

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 (float16/bfloat16).
// PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type":
//   A (16 x 16, row): element e of 8 -> row gid + 8*((e/2)%2), column 2*tig + (e%2) + 8*(e/4)
//   B (16 x 8, col):  element e of 4 -> row (k) 2*tig + (e%2) + 8*(e/2), column gid
// Pairs of consecutive elements share one 32-bit register, the lower index in the low half.
struct MmaShapeK16 {
  static constexpr int kK = 16, kAElems = 8, kBElems = 4, kElemsPerReg = 2;
  CNNKERN_HD static void a_frag(int lane, int e, int& r, int& k) {
    r = lane / 4 + 8 * ((e / 2) % 2);
    k = 2 * (lane % 4) + (e % 2) + 8 * (e / 4);
  }
  CNNKERN_HD static void b_frag(int lane, int e, int& k, int& n) {
    k = 2 * (lane % 4) + (e % 2) + 8 * (e / 2);
    n = lane / 4;
  }
};

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (float32 when TF32 is allowed).
// PTX ISA, "Matrix Fragments for mma.m16n8k8" (the .tf32 figures), cross-checked against
// CUTLASS's cute/atom/mma_traits_sm80.hpp, MMA_Traits<SM80_16x8x8_F32TF32TF32F32_TN>:
// ALayout ((4,8),(2,2)):((16,1),(8,64)) and BLayout ((4,8),2):((8,1),32), column-major
// (m,k) / (n,k) indices of the thread (tig + 4*gid) and value, which decode to:
//   A (16 x 8, row):  element e of 4 -> row gid + 8*(e%2), column (k) tig + 4*(e/2)
//                     (a0: (gid, tig), a1: (gid+8, tig), a2: (gid, tig+4), a3: (gid+8, tig+4))
//   B (8 x 8, col):   element e of 2 -> row (k) tig + 4*e, column gid
// One tf32 per 32-bit register (an fp32 bit pattern whose low 13 bits the tensor core ignores),
// so each element is rounded first: cvt.rna.tf32.f32, round to nearest, ties away from zero,
// to 10 explicit mantissa bits (tf32_round below is the CPU emulation's model of it).
struct MmaShapeK8Tf32 {
  static constexpr int kK = 8, kAElems = 4, kBElems = 2, kElemsPerReg = 1;
  CNNKERN_HD static void a_frag(int lane, int e, int& r, int& k) {
    r = lane / 4 + 8 * (e % 2);
    k = lane % 4 + 4 * (e / 2);
  }
  CNNKERN_HD static void b_frag(int lane, int e, int& k, int& n) {
    k = lane % 4 + 4 * e;
    n = lane / 4;
  }
};

// The CPU model of cvt.rna.tf32.f32 (host only; the GPU uses the instruction): round a float
// to 10 explicit mantissa bits, to nearest, ties away from zero, kept as a float whose low 13
// bits are zero. Adding half a tf32 ulp (0x1000) to the magnitude bits and truncating does
// exactly that for normal and subnormal numbers alike (a carry moves into the exponent; the
// largest floats round to infinity); infinities pass through, NaN stays a (quiet) NaN.
inline float tf32_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u) {
    u += 0x1000u;
  } else if ((u & 0x007fffffu) != 0) {
    u |= 0x00400000u;  // NaN: keep a mantissa bit that the truncation below leaves
  }
  u &= 0xffffe000u;
  float r;
  std::memcpy(&r, &u, sizeof r);
  return r;
}

// Runs the tile loop of block (m0, n0) over the reduction range [k_begin, k_end) and leaves
// the accumulators in st[slot]. Double-buffered: while a thread computes from shared buffer
// `buf` it has already issued the global loads of the next k-tile (into registers), and
// stores them into buffer buf ^ 1 after its compute; one barrier per k-tile. Buffer buf ^ 1
// was last read in the previous iteration, which every thread finished before that
// iteration's barrier.
template <class Cvt, class Compute, class Exec, class Acc, class Map, class In>
CNNKERN_HD void block_mainloop(const Exec& ex, const Map& map, const In* a_src, const In* b_src,
                               int64_t m0, int64_t n0, int64_t k_begin, int64_t k_end,
                               SharedTiles<Acc>& sm,
                               ThreadState<Acc, typename Map::ARow>* st) {
  for (int t = ex.begin(); t < ex.end(); ++t) {
    ThreadState<Acc, typename Map::ARow>& s = st[ex.slot(t)];
    if (Map::a_m_contiguous) s.a_row = map.a_row(m0 + t % Tile::BM);
CNNKERN_UNROLL
    for (int i = 0; i < Tile::TM; ++i)
CNNKERN_UNROLL
      for (int j = 0; j < Tile::TN; ++j) s.acc[i][j] = Acc(0);
    if (k_begin < k_end) {
      load_tiles<Cvt>(map, a_src, b_src, t, m0, n0, k_begin, k_end, s);
      store_tiles<Acc, Map>(s, t, sm, 0);
    }
  }
  ex.sync();
  int buf = 0;
  for (int64_t k0 = k_begin; k0 < k_end; k0 += Tile::BK) {
    const bool more = k0 + Tile::BK < k_end;
    for (int t = ex.begin(); t < ex.end(); ++t) {
      ThreadState<Acc, typename Map::ARow>& s = st[ex.slot(t)];
      if (more) load_tiles<Cvt>(map, a_src, b_src, t, m0, n0, k0 + Tile::BK, k_end, s);
      Compute::compute(sm, buf, t, s);
      if (more) store_tiles<Acc, Map>(s, t, sm, buf ^ 1);
    }
    ex.sync();
    buf ^= 1;
  }
}

// Calls out(c_offset, channel, value) for each element of thread t's micro-tile inside C.
template <class Compute, class Acc, class Map, class Out>
CNNKERN_HD void block_epilogue(const Map& map, int64_t m0, int64_t n0, int t,
                               const ThreadState<Acc, typename Map::ARow>& s, Out& out) {
  CNNKERN_UNROLL
  for (int i = 0; i < Tile::TM; ++i) {
    CNNKERN_UNROLL
    for (int j = 0; j < Tile::TN; ++j) {
      const int64_t m = m0 + Compute::row(t, i, j), n = n0 + Compute::col(t, i, j);
      if (m >= map.M || n >= map.N) continue;
      out(map.c_offset(m, n), map.channel(n), s.acc[i][j]);
    }
  }
}

}  // namespace igemm
}  // namespace cnnkern
