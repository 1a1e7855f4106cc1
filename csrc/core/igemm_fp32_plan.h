#pragma once
// Index math of the fp32 implicit-GEMM forward on the fp32 GEMM core
// (cuda/conv2d_igemm_fp32.cu), host + device and torch-free, so that the CPU tests run the
// same gather and tap walk as the kernel (tests/internals/test_igemm_fp32_plan.py).
//
// The GEMM, per group g:  Y[Kg x NPQ] = W[Kg x CRS] * X[CRS x NPQ], with
//   A (m = output channel, k = (c, r, s)): the weights, contiguous in k: 4-byte copies
//      consecutive along k (gemm32's "k fastest" staging; a 32-byte sector per 8 lanes);
//   B (k, n = (img, p, q)): the input patches, gathered per element with 4-byte zero-filling
//      copies, consecutive lanes on consecutive n (coalesced along q for stride 1).
// Neither operand can take 16-byte copies in NCHW: the shared tiles are [k][mn] (mn contiguous,
// read as float4 by the core), the weights are contiguous in k, and 4 consecutive n of a patch
// are 4 consecutive input elements only for stride 1, no padding hole and no row end.
// Putting the output channels on m makes the epilogue's 4 consecutive columns 4 consecutive
// (p, q) of one output plane: one float4 store when P*Q % 4 == 0.
//
// The reduction index k = (c, r, s) is walked as mixed-radix digits (Cg, R, S) kept scaled by
// the dilation (rd = r*dil_h, sd = s*dil_w): a thread's taps advance by a constant per k-tile
// with two compare-and-subtract carries, so the main loop has no division or modulo; only the
// block's start is decoded (tap_of, one division per digit).

#include <cstdint>

#include "core/conv2d_problem.h"
#include "core/gemm_fp32_tile.h"
#include "core/implicit_gemm.h"
#include "core/macros.h"

namespace cnnkern {
namespace igemm32 {

using gemm32::Tile;

// One filter tap of the reduction: channel c (in the group), rd = r*dil_h, sd = s*dil_w.
struct Tap {
  int32_t c = 0, rd = 0, sd = 0;
};

// A constant stride `by` of the reduction index, as digits of the same radix, and the wraps.
struct TapStep {
  int32_t dc = 0, drd = 0, dsd = 0;  // the digits of `by` (drd, dsd scaled)
  int32_t rd_wrap = 0, sd_wrap = 0;  // R*dil_h, S*dil_w: one past the last digit value
  int32_t rd_one = 0;                // dil_h: a carry into r
};

// The decode (block setup and tests only: it divides).
CNNKERN_HD Tap tap_of(const Conv2dProblem& p, int64_t k) {
  const int32_t S = static_cast<int32_t>(p.S), R = static_cast<int32_t>(p.R);
  const int32_t k32 = static_cast<int32_t>(k);
  Tap tp;
  tp.sd = (k32 % S) * static_cast<int32_t>(p.dil_w);
  tp.rd = ((k32 / S) % R) * static_cast<int32_t>(p.dil_h);
  tp.c = k32 / (S * R);
  return tp;
}

CNNKERN_HD TapStep tap_step(const Conv2dProblem& p, int64_t by) {
  const Tap d = tap_of(p, by);
  TapStep st;
  st.dc = d.c;
  st.drd = d.rd;
  st.dsd = d.sd;
  st.rd_wrap = static_cast<int32_t>(p.R * p.dil_h);
  st.sd_wrap = static_cast<int32_t>(p.S * p.dil_w);
  st.rd_one = static_cast<int32_t>(p.dil_h);
  return st;
}

// The tap `st` further on: each digit plus the step's digit plus the carry from below; one
// subtraction suffices since both addends are below the wrap.
CNNKERN_HD Tap advance(const Tap& a, const TapStep& st) {
  Tap b;
  b.sd = a.sd + st.dsd;
  const bool carry_s = b.sd >= st.sd_wrap;
  if (carry_s) b.sd -= st.sd_wrap;
  b.rd = a.rd + st.drd + (carry_s ? st.rd_one : 0);
  const bool carry_r = b.rd >= st.rd_wrap;
  if (carry_r) b.rd -= st.rd_wrap;
  b.c = a.c + st.dc + (carry_r ? 1 : 0);
  return b;
}

// What the gather reads in the main loop, in 32 bits (the problem's fields are 64-bit and
// C_per_group() divides).
struct Geom {
  int32_t H = 0, W = 0, Cg = 0;
};
CNNKERN_HD Geom geom_of(const Conv2dProblem& p) {
  return {static_cast<int32_t>(p.H), static_cast<int32_t>(p.W),
          static_cast<int32_t>(p.C_per_group())};
}

// Whether tap `tp` of the window `row` (igemm::image_row: its image and group's base,
// h0 = p*stride_h - pad_h, w0 likewise) reads an input element, and which: `off` from
// row.base (set either way: a zero-fill copy reads nothing at its address, so the kernel
// uses it unchecked). False for padding, and for a channel past the group (the zero-filled
// tail of the last k-tile). 32-bit: why_not keeps Cg*H*W below 2^31.
CNNKERN_HD bool patch_at(const Geom& g, const igemm::ImageRow& row, const Tap& tp, int32_t& off) {
  const int32_t h = row.h0 + tp.rd, w = row.w0 + tp.sd;
  // In unsigned arithmetic: for a tap that reads nothing (a column past N*P*Q sits at
  // kNoRow) the product may wrap, which is defined there and harmless (the offset is unused).
  off = static_cast<int32_t>((static_cast<uint32_t>(tp.c) * static_cast<uint32_t>(g.H) +
                              static_cast<uint32_t>(h)) * static_cast<uint32_t>(g.W) +
                             static_cast<uint32_t>(w));
  // One unsigned compare per bound also catches the negative side.
  return static_cast<uint32_t>(h) < static_cast<uint32_t>(g.H) &&
         static_cast<uint32_t>(w) < static_cast<uint32_t>(g.W) && tp.c < g.Cg;
}

// A column past N*P*Q gathers nothing: its window is moved this far above the image, which
// no tap reaches back from (index32_why_not keeps (R-1)*dil_h below 2^30).
constexpr int32_t kNoRow = -(int32_t(1) << 30);
CNNKERN_HD igemm::ImageRow patch_row(const Conv2dProblem& p, int64_t g, int64_t npq) {
  if (npq >= p.gemm_m()) {
    igemm::ImageRow none;
    none.h0 = kNoRow;
    return none;
  }
  return igemm::image_row(p, g, npq);
}

// The pointwise gather: a 1x1 filter without padding reads, for every column, the window's one
// pixel (h0, w0), always inside the image (h0 = p*stride_h <= H - 1), at each channel: k = c.
// A thread's copy then sits a constant 2*H*W elements past its previous one and k-tiles
// 8*H*W apart, so a copy costs an add and one channel compare instead of the tap walk's carries
// and bounds (half of the narrow tile's main loop on the general walk).
CNNKERN_HD bool pointwise(const Conv2dProblem& p) {
  return p.R == 1 && p.S == 1 && p.pad_h == 0 && p.pad_w == 0;
}
// Offset from row.base of channel c of the pointwise window `row` (32-bit: why_not).
CNNKERN_HD int32_t pointwise_offset(const Geom& g, const igemm::ImageRow& row, int32_t c) {
  return (c * g.H + row.h0) * g.W + row.w0;
}

// Thread t's copies of the patch operand in a k-tile: copy e takes k = 2e + t/128 and
// n = t % 128 of the tile (gemm32::scalar_slot along mn); consecutive copies are 2 taps apart.
constexpr int kCopyKStride = 2;
CNNKERN_HD gemm32::CopySlot patch_slot(int t, int e) { return gemm32::scalar_slot(false, t, e); }

// The GEMM of one group as the core describes it (its strides unused: the kernel gathers):
// M = K/groups, N = N*P*Q, K = C/groups*R*S, one batch per group; gemm32::grid_of gives the
// launch (x = tiles along N*P*Q, y = along K/groups, z = group).
CNNKERN_HD gemm32::GemmDesc gemm_of(const Conv2dProblem& p) {
  gemm32::GemmDesc d;
  d.batches = p.groups;
  d.M = p.K_per_group();
  d.N = p.gemm_m();
  d.K = p.gemm_k();
  return d;
}

// "" when this kernel takes the problem (else the general implicit-GEMM kernel runs it).
CNNKERN_HD const char* why_not(const Conv2dProblem& p) {
  const char* r = igemm::index32_why_not(p);
  if (r[0] != '\0') return r;
  if (p.C_per_group() * p.H * p.W >= (int64_t(1) << 31))
    return "the fp32 core kernel needs C/groups*H*W < 2^31 (32-bit patch offsets)";
  return gemm32::why_not(gemm_of(p));
}

}  // namespace igemm32
}  // namespace cnnkern
