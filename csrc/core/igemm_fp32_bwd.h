#pragma once
// Which float32 backward passes run on the fp32 GEMM core, and the grad-weight kernel's index
// math (cuda/conv2d_igemm_fp32_wgrad.cu), host + device and torch-free, so that the CPU tests
// run the same pixel walk and tap decode as the kernel.
//
// grad-input, stride 1: the fp32 forward kernel (cuda/conv2d_igemm_fp32.cu) on
// dgrad_problem(p) (core/conv2d_dgrad.h), any groups; strided ones keep the general kernel.
//
// grad-weight, per group g: dW[Kg x CRS] = dY[Kg x NPQ] * im2col(X)[NPQ x CRS], CRS = (c, r, s)
// with s fastest (the K x C/groups x R x S weight's own order: C is dW itself), the reduction
// over the pixels j = (image, p, q). In NCHW both operands are contiguous along j (dY along
// (p, q); X along q for stride 1), so both are staged k-fastest (gemm32::scalar_slot(true):
// lanes t % 8 on 8 consecutive pixels, a 32-byte sector per 8 lanes): a thread's 4 copies of
// either operand share one pixel per k-tile, and its 4 filter taps (columns n0 + t/8 + 32e)
// are fixed for the block. The pixel advances by BK = 8 per k-tile as mixed-radix digits
// (images, rows, columns) with one carry each (PixelWalk), no division in the main loop.
// Split-K over the pixels where the grid is under a wave (make_wgrad_plan): fp32 partial sums
// per slice, summed by a reduce kernel in slice order (deterministic).

#include <cstdint>

#include "core/conv2d_dgrad.h"
#include "core/conv2d_problem.h"
#include "core/gemm_fp32_tile.h"
#include "core/igemm_fp32_plan.h"
#include "core/igemm_fp32_schedule.h"  // kNarrowBM
#include "core/implicit_gemm.h"
#include "core/macros.h"

namespace cnnkern {
namespace igemm32 {

// "" when grad-input runs on the fp32 forward kernel, else why not.
CNNKERN_HD const char* dgrad_why_not(const Conv2dProblem& p) {
  if (p.stride_h != 1 || p.stride_w != 1)
    return "the fp32 core grad-input needs stride 1 (a strided one keeps the general kernel)";
  if (!dgrad_is_forward(p))
    return "the fp32 core grad-input needs padding <= dilation * (kernel - 1)";
  return why_not(dgrad_problem(p));
}

// A thread's pixel j = (img, p, q) of the reduction and where it reads: dY at
// dy_off + channel * P*Q, X at x_off + channel * H*W + rd * W + sd for filter tap (c, rd, sd)
// (x_off = img*C*H*W + h*W + w may be negative: the window's corner is in the padding),
// in-bounds when h + rd in [0, H) and w + sd in [0, W).
struct Pixel {
  int32_t j = 0;           // pixel index: past N*P*Q reads nothing
  int32_t h = 0, w = 0;    // window corner: p*stride_h - pad_h, q*stride_w - pad_w
  int32_t dy_off = 0;      // img*K*P*Q + p*Q + q
  int32_t x_off = 0;       // img*C*H*W + h*W + w
};

// A step of kWalk pixels as digits (images, rows, columns; rows < P, columns < Q) and what
// each digit and carry adds to the offsets; one compare-and-subtract per carry.
struct PixelWalk {
  int32_t by = 0;                        // pixels per step
  int32_t dh = 0, dw = 0;                // rows*stride_h, columns*stride_w of the step
  int32_t h_end = 0, w_end = 0;          // P*stride_h - pad_h, Q*stride_w - pad_w: a carry
  int32_t h_wrap = 0, w_wrap = 0;        // P*stride_h, Q*stride_w
  int32_t stride_h = 0;
  int32_t dy_step = 0, dy_pcarry = 0;    // a q carry leaves dy_off as it is
  int32_t x_step = 0, x_qcarry = 0, x_pcarry = 0;
};

CNNKERN_HD Pixel pixel_of(const Conv2dProblem& p, int64_t j) {
  const int64_t PQ = p.P * p.Q;
  const int64_t img = j / PQ, pq = j - img * PQ, op = pq / p.Q, oq = pq - op * p.Q;
  Pixel px;
  px.j = static_cast<int32_t>(j);
  px.h = static_cast<int32_t>(op * p.stride_h - p.pad_h);
  px.w = static_cast<int32_t>(oq * p.stride_w - p.pad_w);
  px.dy_off = static_cast<int32_t>(img * p.K * PQ + pq);
  px.x_off = static_cast<int32_t>(img * p.C * p.H * p.W + int64_t(px.h) * p.W + px.w);
  return px;
}

CNNKERN_HD PixelWalk pixel_walk(const Conv2dProblem& p, int32_t by) {
  const int64_t PQ = p.P * p.Q, HW = p.H * p.W;
  const int64_t step_n = by / PQ, step_p = (by % PQ) / p.Q, step_q = by % p.Q;
  PixelWalk s;
  s.by = by;
  s.dh = static_cast<int32_t>(step_p * p.stride_h);
  s.dw = static_cast<int32_t>(step_q * p.stride_w);
  s.h_wrap = static_cast<int32_t>(p.P * p.stride_h);
  s.w_wrap = static_cast<int32_t>(p.Q * p.stride_w);
  s.h_end = static_cast<int32_t>(s.h_wrap - p.pad_h);
  s.w_end = static_cast<int32_t>(s.w_wrap - p.pad_w);
  s.stride_h = static_cast<int32_t>(p.stride_h);
  s.dy_step = static_cast<int32_t>(step_n * p.K * PQ + step_p * p.Q + step_q);
  s.dy_pcarry = static_cast<int32_t>((p.K - 1) * PQ);
  s.x_step = static_cast<int32_t>(step_n * p.C * HW + s.dh * p.W + s.dw);
  s.x_qcarry = static_cast<int32_t>(p.stride_h * p.W - s.w_wrap);
  s.x_pcarry = static_cast<int32_t>(p.C * HW - int64_t(s.h_wrap) * p.W);
  return s;
}

// The pixel s.by further on (the walk's digits are below their wraps, so a column carry and
// then a row carry, each one subtraction, keep them so).
CNNKERN_HD Pixel advance(const Pixel& a, const PixelWalk& s) {
  Pixel b;
  b.j = a.j + s.by;
  b.w = a.w + s.dw;
  b.h = a.h + s.dh;
  b.dy_off = a.dy_off + s.dy_step;
  b.x_off = a.x_off + s.x_step;
  if (b.w >= s.w_end) {  // q >= Q: q -= Q, p += 1
    b.w -= s.w_wrap;
    b.h += s.stride_h;
    b.x_off += s.x_qcarry;
  }
  if (b.h >= s.h_end) {  // p >= P: p -= P, image += 1
    b.h -= s.h_wrap;
    b.dy_off += s.dy_pcarry;
    b.x_off += s.x_pcarry;
  }
  return b;
}

// Filter tap n = (c, r, s) of a group as the X gather uses it: its offset from the pixel's
// x_off (c*H*W + rd*W + sd, c of the group's first channel) and rd = r*dil_h, sd = s*dil_w
// for the bounds. A tap past C/groups*R*S gets rd = kNoRow: no window reaches back from it.
struct WTap {
  int32_t off = 0, rd = kNoRow, sd = 0;
};
CNNKERN_HD WTap wtap_of(const Conv2dProblem& p, int64_t n) {
  WTap tp;
  if (n >= p.gemm_k()) return tp;
  const Tap t = tap_of(p, n);
  tp.rd = t.rd;
  tp.sd = t.sd;
  tp.off = static_cast<int32_t>((int64_t(t.c) * p.H + t.rd) * p.W + t.sd);
  return tp;
}

// Whether pixel `px` reads X through tap `tp`, and where (offset from the group's channel 0
// of image 0; set either way, used only when true). One unsigned compare per bound.
CNNKERN_HD bool wgrad_x_at(const Geom& g, int32_t npq, const Pixel& px, const WTap& tp,
                           int32_t& off) {
  off = static_cast<int32_t>(static_cast<uint32_t>(px.x_off) + static_cast<uint32_t>(tp.off));
  return px.j < npq && static_cast<uint32_t>(px.h + tp.rd) < static_cast<uint32_t>(g.H) &&
         static_cast<uint32_t>(px.w + tp.sd) < static_cast<uint32_t>(g.W);
}

// The grad-weight plan: a bm x 128 tile of one group's Kg x CRS, split-K over the pixels
// (k-tiles of BK) where the tiles are under one wave of 2 blocks per SM (the core's
// residency): as many slices as fill that wave, each at least kMinKTilesPerSplit k-tiles
// (a 128-pixel slice: shorter ones spend more on the prologue and the partial sums' round
// trip than they gain), at most kMaxSplits: enough to fill a wave from 2 tiles (ResNet-50's
// 1x1 256->64 layer: 32 slices left it at 0.24 of a wave, predicted 0.3x cuDNN).
// bm: 128 (8 x 8 per thread), or kNarrowBM (4 x 8, the forward's narrow tile) for K/groups
// <= 64, where half of the 128 rows would be idle and still issue their FFMAs (ResNet-50's
// 1x1 256->64 grad-weight: M = 64).
constexpr int kMinKTilesPerSplit = 16;
constexpr int kMaxSplits = 128;
struct WgradPlan {
  int32_t bm = Tile::BM;             // the tile's output channels: 128 or kNarrowBM
  int64_t tiles_n = 0, tiles_m = 0;  // along CRS, along Kg
  int32_t k_tiles = 0, splits = 1, k_tiles_per_split = 0;
  int64_t blocks() const { return tiles_n * tiles_m * splits; }
  // The fp32 partial sums: one weight-sized slice per split (0 without a split).
  int64_t workspace_elems(const Conv2dProblem& p) const {
    return splits > 1 ? splits * p.weight_numel() : 0;
  }
};
CNNKERN_HD WgradPlan make_wgrad_plan(const Conv2dProblem& p, int sm_count) {
  WgradPlan pl;
  pl.bm = p.K_per_group() <= kNarrowBM ? kNarrowBM : Tile::BM;
  pl.tiles_n = (p.gemm_k() + Tile::BN - 1) / Tile::BN;
  pl.tiles_m = (p.K_per_group() + pl.bm - 1) / pl.bm;
  pl.k_tiles = static_cast<int32_t>((p.gemm_m() + Tile::BK - 1) / Tile::BK);
  pl.k_tiles_per_split = pl.k_tiles;
  const int64_t tiles = pl.tiles_n * pl.tiles_m * p.groups;
  if (tiles == 0 || tiles >= sm_count) return pl;
  int64_t want = 2 * int64_t(sm_count) / tiles;
  const int64_t most = pl.k_tiles / kMinKTilesPerSplit;
  if (want > most) want = most;
  if (want > kMaxSplits) want = kMaxSplits;
  if (want <= 1) return pl;
  pl.k_tiles_per_split = static_cast<int32_t>((pl.k_tiles + want - 1) / want);
  pl.splits = (pl.k_tiles + pl.k_tiles_per_split - 1) / pl.k_tiles_per_split;  // none empty
  return pl;
}

// "" when grad-weight runs on the fp32 core's wgrad kernel, else why not.
CNNKERN_HD const char* wgrad_why_not(const Conv2dProblem& p) {
  const char* r = igemm::index32_why_not(p);
  if (r[0] != '\0') return r;
  // 32-bit offsets: X's, one image past the end (the last k-tile's pixels past N*P*Q) and a
  // window's reach; dY's likewise; the pixel index and its last k-tile.
  const int64_t reach = (p.R * p.dil_h + p.P * p.stride_h + 1) * p.W;
  if ((p.N + 1) * p.C * p.H * p.W + reach >= igemm::kMax32 ||
      (p.N + 1) * p.K * p.P * p.Q >= igemm::kMax32 || p.gemm_m() + Tile::BK >= igemm::kMax32)
    return "the fp32 core grad-weight needs (N+1)*C*H*W, (N+1)*K*P*Q and N*P*Q below 2^30";
  const int64_t tiles_z = p.groups;
  if ((p.gemm_k() + Tile::BN - 1) / Tile::BN > 2147483647 ||
      (p.K_per_group() + Tile::BM - 1) / Tile::BM > 65535 || tiles_z * kMaxSplits > 65535)
    return "the fp32 core grad-weight's grid needs K/groups < 2^23 and groups <= 511";
  return "";
}

}  // namespace igemm32
}  // namespace cnnkern
