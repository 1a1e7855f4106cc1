#pragma once
// The host-side schedule of the fp32 implicit-GEMM forward (cuda/conv2d_igemm_fp32.cu): which
// block tile it runs and how far it splits the reduction. Torch-free and CUDA-free, so the CPU
// tests call it directly (torch.ops.cnnkern_testing.igemm32_schedule,
// tests/internals/test_igemm_fp32_schedule.py).
//
// The tile: per group, output channels (K/groups) on the GEMM's m, pixels (N*P*Q) on n.
//   128 x 128 (8 x 8 per thread) is the main one; with K/groups <= 64 half of its rows would
//   be idle and still issue their FFMAs, so the 64 x 128 tile (4 x 8 per thread, same 256
//   threads and patch gather) runs instead: half the block's work, no idle rows.
// The split: the SMs' busy share, blocks / (SMs x rounds) with rounds = ceil(blocks / SMs),
//   is the fraction of the launch's SM time doing work. Under kMinBusy (e.g. 98 blocks on 132
//   SMs: 74%, or 196: two rounds, the second 48% full) the k-tiles are split into slices, each
//   slice's blocks writing fp32 partial sums to a workspace that a reduce kernel then sums in
//   slice order (deterministic), adds the bias and applies the ReLU. The smallest split that
//   reaches kMinBusy is taken (fewer partial sums to move), else the busiest one.

#include <cstdint>

#include "core/conv2d_problem.h"
#include "core/gemm_fp32_tile.h"

namespace cnnkern {
namespace igemm32 {

constexpr int kNarrowBM = 64;  // the narrow tile's output channels; its n stays Tile::BN
// A slice keeps at least this many k-tiles of 8 (64 reduction elements): shorter ones spend
// more on the pipeline's fill and the partial sums' round trip than the idle SMs would.
constexpr int kMinKTilesPerSlice = 8;
constexpr int kMaxSlices = 16;
// Split only below this busy share (per mille, to stay in integers).
constexpr int kMinBusyPerMille = 900;

struct Schedule {
  int bm = 128;  // the tile's output channels: 128, or kNarrowBM for K/groups <= 64
  int64_t tiles_m = 0, tiles_n = 0, groups = 1;
  int k_tiles = 0;             // ceil(C/groups*R*S / BK)
  int splits = 1;              // > 1: partial sums in the workspace + the reduce kernel
  int k_tiles_per_split = 0;   // the last slice may have fewer (none is empty)
  int64_t output_elems = 0;    // N*K*P*Q: one workspace slice
  const char* reason = "";     // why this tile and split, in words (explain() shows it)

  int64_t tiles() const { return tiles_m * tiles_n * groups; }
  int64_t blocks() const { return tiles() * splits; }
  // fp32 partial sums, one output-shaped slice per split (0 without a split).
  int64_t workspace_elems() const { return splits > 1 ? splits * output_elems : 0; }
};

// Busy share (per mille) of `blocks` blocks on `sms` SMs, each SM taking ceil(blocks / sms).
inline int64_t busy_per_mille(int64_t blocks, int64_t sms) {
  const int64_t rounds = (blocks + sms - 1) / sms;
  return rounds == 0 ? 1000 : blocks * 1000 / (sms * rounds);
}

// The schedule for a GPU of `sm_count` SMs (>= 1).
inline Schedule make_schedule(const Conv2dProblem& p, int sm_count) {
  Schedule s;
  const int64_t Kg = p.K_per_group(), kr = p.gemm_k();
  s.bm = Kg <= kNarrowBM ? kNarrowBM : gemm32::Tile::BM;
  s.groups = p.groups;
  s.tiles_m = (Kg + s.bm - 1) / s.bm;
  s.tiles_n = (p.gemm_m() + gemm32::Tile::BN - 1) / gemm32::Tile::BN;
  s.k_tiles = static_cast<int>((kr + gemm32::Tile::BK - 1) / gemm32::Tile::BK);
  s.k_tiles_per_split = s.k_tiles;
  s.output_elems = p.output_numel();
  const int64_t tiles = s.tiles();
  const int64_t sms = sm_count < 1 ? 1 : sm_count;
  s.reason = s.bm == kNarrowBM ? "64x128 tile (K/groups <= 64)" : "128x128 tile";
  if (tiles == 0 || busy_per_mille(tiles, sms) >= kMinBusyPerMille) return s;
  int64_t most = s.k_tiles / kMinKTilesPerSlice;
  if (most > kMaxSlices) most = kMaxSlices;
  if (most > 65535 / s.groups) most = 65535 / s.groups;  // grid z: groups x slices
  int best = 1, best_per = s.k_tiles;
  int64_t best_busy = busy_per_mille(tiles, sms);
  for (int64_t want = 2; want <= most; ++want) {
    // Slices of ceil(k_tiles / want): the count that leaves none empty.
    const int per = static_cast<int>((s.k_tiles + want - 1) / want);
    const int n = (s.k_tiles + per - 1) / per;
    const int64_t busy = busy_per_mille(tiles * n, sms);
    if (busy > best_busy) {
      best = n;
      best_per = per;
      best_busy = busy;
    }
    if (best_busy >= kMinBusyPerMille) break;
  }
  s.splits = best;
  s.k_tiles_per_split = best_per;
  if (best > 1)
    s.reason = s.bm == kNarrowBM ? "64x128 tile (K/groups <= 64) + split-K: the grid left SMs idle"
                                 : "128x128 tile + split-K: the grid left SMs idle";
  else
    s.reason = s.bm == kNarrowBM
                   ? "64x128 tile (K/groups <= 64), no split: SMs idle, too few k-tiles to split"
                   : "128x128 tile, no split: SMs idle, too few k-tiles to split";
  return s;
}

}  // namespace igemm32
}  // namespace cnnkern
