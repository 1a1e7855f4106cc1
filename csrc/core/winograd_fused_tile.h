#pragma once
// The block shape of the fused CUDA Winograd kernel (cuda/conv2d_winograd_fused.cu), host +
// device and torch-free, so the launcher, the kernel and the static report's model
// (bench/sass_bounds.py) read one definition.
//
// A block computes, for one group, KB output channels x TB Winograd tiles at all aa = a*a
// points at once: aa small GEMMs [KB x C] x [C x TB] accumulated in registers, C walked in
// chunks of BC channels. Each point gets 8 threads (4 along k x 2 along t), each an 8 x 8
// register tile, so a block is aa * 8 threads (F(4x4): 288, F(2x2): 128). Per chunk the block
//   - transforms BC x TB input tiles (halo included) into shared memory: V_s[xi][c][t],
//   - copies the chunk's transformed filters U (precomputed, possibly cached) with cp.async:
//     U_s[xi][c][k],
//   - and every thread does, per channel, 2 + 2 LDS.128 and 64 FFMA for its point.
// After the last chunk the accumulators go through shared memory in passes of EP rows per
// thread, and the output transform (+ bias, ReLU) writes the m x m outputs: neither V nor the
// Winograd-domain products touch DRAM.

#include <cstdint>

#include "core/conv2d_problem.h"
#include "core/macros.h"

namespace cnnkern {
namespace wino_fused {

template <int M>
struct Cfg {
  static constexpr int a = M + 2, aa = a * a;
  static constexpr int KB = 32, TB = 16;     // output channels, tiles per block
  static constexpr int TK = 4, TT = 2;       // threads per point along k, along t
  static constexpr int RK = KB / TK, RT = TB / TT;  // register tile per thread: 8 x 8
  static constexpr int kPointThreads = TK * TT;
  static constexpr int kThreads = aa * kPointThreads;
  // Channels per chunk: one column and one row of one input tile per thread and chunk (the
  // 1-D transforms a x BC x TB of each kind), so every thread has the same work in every
  // chunk and keeps where its column lies in registers: F(4x4) 3, F(2x2) 2.
  static constexpr int BC = kThreads / (a * TB);
  // Point rows are padded by 4 floats (16 bytes: float4 reads stay aligned).
  static constexpr int kUStride = BC * KB + 4, kVStride = BC * TB + 4;
  static constexpr int kUFloats = aa * kUStride, kVFloats = aa * kVStride;
  static constexpr int kSmemFloats = kUFloats + kVFloats;  // F(4x4) 21.4 KiB, F(2x2) 6.5 KiB
  // Epilogue: EP of a thread's RK accumulator rows per pass, staged as E_s[xi][TK*EP][TB]
  // in the same shared memory.
  static constexpr int EP = M == 4 ? 2 : 1;
  static constexpr int kEpiRows = TK * EP;
  static constexpr int kUCopies = aa * BC * KB / 4 / kThreads;  // float4 copies per thread
  // A thread's copies are kUPointStep points apart (the block covers BC x KB / 4 float4 of
  // kUPointStep points per step).
  static constexpr int kUPointStep = kThreads / (BC * KB / 4);
};
static_assert(Cfg<4>::kThreads == 288 && Cfg<2>::kThreads == 128, "8 threads per point");
static_assert(Cfg<4>::kSmemFloats * 4 <= 48 * 1024 && Cfg<2>::kSmemFloats * 4 <= 48 * 1024,
              "static shared memory within 48 KiB");
static_assert(Cfg<4>::aa * Cfg<4>::kEpiRows * Cfg<4>::TB <= Cfg<4>::kSmemFloats &&
                  Cfg<2>::aa * Cfg<2>::kEpiRows * Cfg<2>::TB <= Cfg<2>::kSmemFloats,
              "an epilogue pass fits in the main loop's shared memory");
static_assert(Cfg<4>::kUCopies * Cfg<4>::kThreads * 4 == Cfg<4>::aa * Cfg<4>::BC * Cfg<4>::KB &&
                  Cfg<2>::kUCopies * Cfg<2>::kThreads * 4 == Cfg<2>::aa * Cfg<2>::BC * Cfg<2>::KB,
              "the U chunk divides evenly among the threads");
static_assert(Cfg<4>::kUPointStep * Cfg<4>::BC * Cfg<4>::KB / 4 == Cfg<4>::kThreads &&
                  Cfg<2>::kUPointStep * Cfg<2>::BC * Cfg<2>::KB / 4 == Cfg<2>::kThreads,
              "whole points per copy step");
static_assert(Cfg<4>::a * Cfg<4>::BC * Cfg<4>::TB == Cfg<4>::kThreads &&
                  Cfg<2>::a * Cfg<2>::BC * Cfg<2>::TB == Cfg<2>::kThreads,
              "one window column and one window row per thread and chunk");

// Tiles of the (turned, for grad-input) problem q: TH x TW per image, T in all.
struct Tiles {
  int64_t TH = 0, TW = 0, T = 0;
};
template <int M>
CNNKERN_HD Tiles tiles_of(const Conv2dProblem& q) {
  Tiles t;
  t.TH = (q.P + M - 1) / M;
  t.TW = (q.Q + M - 1) / M;
  t.T = q.N * t.TH * t.TW;
  return t;
}

// Grid: x = tile blocks x channel blocks, the channel block fastest, so the blocks that read
// the same input tiles run at about the same time and share them through L2 (the input is
// read from DRAM about once, not once per 32 output channels); z over the groups.
struct Grid {
  int64_t tile_blocks = 0, k_blocks = 0;
  int64_t x = 0, z = 0;
};
template <int M>
CNNKERN_HD Grid grid_of(const Conv2dProblem& q) {
  Grid g;
  g.tile_blocks = (tiles_of<M>(q).T + Cfg<M>::TB - 1) / Cfg<M>::TB;
  g.k_blocks = (q.K_per_group() + Cfg<M>::KB - 1) / Cfg<M>::KB;
  g.x = g.tile_blocks * g.k_blocks;
  g.z = q.groups;
  return g;
}

// "" when the fused kernel can run q (3x3 / stride / dilation are the caller's check), else
// why not: the grid must fit CUDA's limits, and one input plane 32-bit offsets (the kernel's
// in-plane index math is int; plane and image offsets are 64-bit).
template <int M>
CNNKERN_HD const char* why_not(const Conv2dProblem& q) {
  const Grid g = grid_of<M>(q);
  if (g.x > 2147483647 || g.z > 65535)
    return "the fused kernel's grid exceeds CUDA's limits ((tiles / 16) x (output channels "
           "per group / 32) up to 2^31 - 1, groups up to 65535)";
  if (q.H * q.W > 2147483647 - 64 || q.P * q.Q > 2147483647 - 64)
    return "an input or output plane of 2^31 elements or more";
  return "";
}

}  // namespace wino_fused
}  // namespace cnnkern
