#pragma once
// The host-side plan of the tensor-core implicit-GEMM forward (cuda/igemm_tc_kernel.cuh): which
// problems it takes, which block tile it runs, and how far it splits the GEMM's K dimension.
// Torch-free and CUDA-free, so the CPU tests call it directly (torch.ops.cnnkern_testing).
//
// GEMM view (channels_last): M = N*P*Q output pixels, N = K output channels, K = R*S*C with
// C fastest (KRSC weights, NHWC activations), so every 8 consecutive k are one 16-byte run of
// channels at one (pixel, r, s): one cp.async each. Hence C % 8 == 0.
//
// float32 with TF32 allowed (the TF32 variant of the forward) keeps the byte layout: a stage row
// is still 64 bytes, i.e. 16 floats of k per k-tile, and a 16-byte chunk is 4 floats, hence
// C % 4 == 0. `elem_bytes` (2, or 4 for TF32) below picks the element counts.

#include <cstdint>

#include "core/conv2d_problem.h"

namespace cnnkern {
namespace igemm_tc {

constexpr int kBK = 32;        // k per pipeline stage (4 chunks of 8 b16 elements per row)
constexpr int kStages = 3;     // cp.async ring depth
// 4 warps, 2 x 2 over the block tile. A name of its own: bench/launch_config.py resolves launch
// constants by name, and kThreads is 256 elsewhere.
constexpr int kTcThreads = 128;
constexpr int kChunk = 8;      // b16 elements per 16-byte cp.async
constexpr int kStageRowBytes = 64;  // bytes of k per stage row (kBK b16, or 16 floats with TF32)
// Elements of k per k-tile and per 16-byte chunk for an element of `elem_bytes` (2 or 4).
inline constexpr int bk_elems(int elem_bytes) { return kStageRowBytes / elem_bytes; }
inline constexpr int chunk_elems(int elem_bytes) { return 16 / elem_bytes; }
// A split-K slice keeps at least this many k-tiles: fewer and the fixed cost of the
// pipeline's prologue and of the workspace round trip outweighs the parallelism gained.
constexpr int kMinKTilesPerSplit = 4;
constexpr int kMaxSplits = 16;
// grad-weight's big tile (split_large_first below): its reduction over N*P*Q pixels is hundreds
// of k-tiles long, so more slices stay long; the fp32 partial sums are slices x K x R*S*C.
constexpr int kMaxSplitsLarge = 32;
constexpr int64_t kMax32 = int64_t(1) << 31;

// The two block tiles: 128 x 128 (warp tile 64 x 64) is the main one; 64 x 64 (warp tile
// 32 x 32) for grids that the big tile leaves under one wave.
enum class Tile { Large, Small };

struct Plan {
  Tile tile = Tile::Large;
  int64_t gemm_m = 0, gemm_n = 0;  // the GEMM's output rows and columns
  int bm = 128, bn = 128;
  int64_t tiles_m = 0, tiles_n = 0;
  int k_tiles = 0;            // ceil(R*S*C / kBK)
  int splits = 1;             // slices of the k-tiles; > 1: fp32 workspace + reduce kernel
  int k_tiles_per_split = 0;  // the last slice may have fewer
  const char* reason = "";    // why this tile and split, in words (explain() shows it)

  int64_t blocks() const { return tiles_m * tiles_n * splits; }
  // fp32 partial sums of the split-K slices (0 without a split).
  int64_t workspace_elems() const { return splits > 1 ? int64_t(splits) * gemm_m * gemm_n : 0; }
};

// "" when the tensor-core forward takes the problem (the dtype is the caller's check: float16
// and bfloat16, elem_bytes 2; float32 with TF32 allowed, elem_bytes 4), else why not.
inline const char* why_not(const Conv2dProblem& p, int elem_bytes = 2) {
  if (p.groups != 1) return "the tensor-core kernel needs groups == 1";
  if (elem_bytes == 2 && p.C % kChunk != 0)
    return "the tensor-core kernel needs C % 8 == 0 (16-byte channel runs for cp.async)";
  if (elem_bytes == 4 && p.C % chunk_elems(4) != 0)
    return "the TF32 tensor-core kernel needs C % 4 == 0 (16-byte channel runs for cp.async)";
  // 32-bit offsets inside one image, one filter row, and for the pixel index.
  // (The kernel's running offset inside a window reaches (R dil_h W + S dil_w) C or so.)
  if (p.H * p.W * p.C >= kMax32 || p.R * p.S * p.C >= kMax32 || p.gemm_m() >= kMax32 ||
      p.K >= kMax32 || ((p.R * p.dil_h + 1) * p.W + p.S * p.dil_w + 1) * p.C >= kMax32)
    return "the tensor-core kernel needs H*W*C, R*S*C, N*P*Q and a window's reach below 2^31";
  const int64_t reach_h = (p.R - 1) * p.dil_h + p.pad_h + p.P * p.stride_h;
  const int64_t reach_w = (p.S - 1) * p.dil_w + p.pad_w + p.Q * p.stride_w;
  if (reach_h >= (kMax32 >> 2) || reach_w >= (kMax32 >> 2))
    return "the tensor-core kernel needs every window position below 2^29";
  return "";
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Splits the plan's k-tiles into `want` slices or fewer (each keeps kMinKTilesPerSplit k-tiles
// or more, at most max_splits, none empty): sets the split fields, returns the slice count.
inline int split_k(Plan& pl, int64_t want, int max_splits = kMaxSplits) {
  const int64_t most = pl.k_tiles / kMinKTilesPerSplit;
  if (want > most) want = most;
  if (want > max_splits) want = max_splits;
  if (want <= 1) return 1;
  pl.k_tiles_per_split = static_cast<int>(ceil_div(pl.k_tiles, want));
  pl.splits = static_cast<int>(ceil_div(pl.k_tiles, pl.k_tiles_per_split));  // no empty slice
  return pl.splits;
}

// The tile and split of an M x N GEMM over `k_elems` reduction elements, for a GPU with
// `sm_count` SMs (the forward here; grad-weight in core/igemm_tc_bwd.h). One wave = one block
// per SM: below it the big tile leaves SMs idle, so the 64 x 64 tile (4x the blocks) is taken;
// if that is still under a wave, its k-tiles are split into slices (at least
// kMinKTilesPerSplit each) until the grid fills one, and a reduce kernel sums the slices in a
// fixed order (deterministic). split_large_first (grad-weight, whose reduction over N*P*Q is
// long): before the small tile, try splitting the 128 x 128 tile, whose main loop has twice the
// MMA share of the small one's, into as many slices (up to kMaxSplitsLarge) as fit its two
// resident blocks per SM (registers) without starting a third round; taken when that grid
// fills a wave. Half as many, twice as long slices (one block per SM) are taken instead when
// they give no SM more k-tiles (rounds of sm_count blocks x k-tiles per slice): the same
// tensor work per SM with half the fp32 partial sums, which bound a short grid by DRAM
// (ResNet-50's 3x3 s2 56->28 at batch 32 on 132 SMs: 9 tiles x 14 slices of 56 k-tiles,
// not 28 of 28).
// k_per_tile: reduction elements per k-tile (kBK; 16 for the TF32 forward).
inline Plan make_gemm_plan(int64_t M, int64_t N, int64_t k_elems, int sm_count,
                           bool split_large_first = false, int k_per_tile = kBK) {
  Plan pl;
  pl.gemm_m = M;
  pl.gemm_n = N;
  pl.k_tiles = static_cast<int>(ceil_div(k_elems, k_per_tile));
  pl.k_tiles_per_split = pl.k_tiles;
  pl.tiles_m = ceil_div(M, 128);
  pl.tiles_n = ceil_div(N, 128);
  if (pl.tiles_m * pl.tiles_n >= sm_count) {
    pl.reason = "128x128 tile: the grid fills at least one wave";
    return pl;
  }
  if (split_large_first) {
    Plan big = pl;
    const int64_t tiles = big.tiles_m * big.tiles_n;
    if (tiles * split_k(big, 2 * int64_t(sm_count) / tiles, kMaxSplitsLarge) >= sm_count) {
      big.reason = "128x128 tile + split-K: the grid is under one wave, its split fills one";
      Plan one = pl;
      split_k(one, int64_t(sm_count) / tiles, kMaxSplitsLarge);
      if (one.splits > 1 && one.splits < big.splits &&
          ceil_div(one.blocks(), sm_count) * one.k_tiles_per_split <=
              ceil_div(big.blocks(), sm_count) * big.k_tiles_per_split) {
        one.reason = "128x128 tile + split-K, one block per SM: no SM gets more k-tiles than "
                     "with two, and the fp32 partial sums halve";
        return one;
      }
      return big;
    }
  }
  pl.tile = Tile::Small;
  pl.bm = pl.bn = 64;
  pl.tiles_m = ceil_div(M, 64);
  pl.tiles_n = ceil_div(N, 64);
  const int64_t tiles = pl.tiles_m * pl.tiles_n;
  if (tiles >= sm_count) {
    pl.reason = "64x64 tile: the 128x128 grid is under one wave, this one fills it";
    return pl;
  }
  split_k(pl, ceil_div(sm_count, tiles));
  pl.reason = pl.splits > 1 ? "64x64 tile + split-K: the 64x64 grid is still under one wave"
                            : "64x64 tile, no split: under one wave, but too few k-tiles to split";
  return pl;
}

// The forward: M = N*P*Q pixels, N = K channels, reduction over R*S*C; elem_bytes 4 for the
// TF32 variant (k-tiles of 16 floats).
inline Plan make_plan(const Conv2dProblem& p, int sm_count, int elem_bytes = 2) {
  return make_gemm_plan(p.gemm_m(), p.K, p.R * p.S * p.C, sm_count, false,
                        bk_elems(elem_bytes));
}

}  // namespace igemm_tc
}  // namespace cnnkern
