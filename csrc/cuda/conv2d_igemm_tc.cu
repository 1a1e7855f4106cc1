// The tensor-core implicit-GEMM forward: float16/bfloat16, and float32 with TF32 allowed;
// channels_last activations, KRSC weights (plan and limits: core/igemm_tc_plan.h). Torch-free.
//
// TF32 (T = float) is the same kernel byte for byte: a stage row is 64 bytes = 16 floats of k
// (the k-tile), a cp.async chunk 4 channels, and the ldmatrix addresses are unchanged, since an
// 8x8 b16 matrix read from floats hands lane t the float (t / 4, t % 4): the m16n8k8 .tf32
// fragment (igemm_tc::TcMma<float> rounds it with cvt.rna and issues the k8 MMA).
//
// Per block (4 warps, 2 x 2): a BM x BN output tile (128 x 128, or 64 x 64 for small grids),
// over k-tiles of 32 (R*S*C, C fastest; 16 for float). Each k-tile's A (BM pixels x 32 k) and B (BN output
// channels x 32 k) go global -> shared by 16-byte cp.async.cg, one per 8 channels, in a ring of
// kStages stages with one commit group per k-tile; an out-of-image (padding) or out-of-range
// chunk is a cp.async with src-size 0, which zero-fills it. Tiles stay in their b16 dtype in
// shared memory, rows of 64 bytes XOR-swizzled (core/smem_swizzle.h) so that every ldmatrix
// phase and every cp.async row hits 8 distinct bank groups. Each warp reads its A and B
// fragments with ldmatrix.x4 (A row-major [m][k] and B [n][k] are exactly the m16n8k16 .row
// and .col fragment layouts, so no .trans) and issues mma.sync m16n8k16 into fp32 accumulators.
//
// The im2col gather: each thread always loads chunk column t % 4 of rows t / 4 + 32 i, so its
// pixels (image pointer, h0, w0) are decoded once before the loop, and its (r, s, c) position
// advances by 32 channels per k-tile with compares and adds only: no division in the loop.
//
// Epilogue: bias, ReLU, pairs of channels stored as one 32-bit half2/bfloat162 (NHWC keeps the
// two channels adjacent); with split-K, raw fp32 partial sums to the workspace instead, and a
// reduce kernel sums the slices in order and applies the bias and ReLU.

#include "cuda/conv2d_igemm_tc.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/smem_swizzle.h"
#include "cuda/igemm_tc_common.cuh"

namespace cnnkern {
namespace {

using igemm_tc::kStages;
using igemm_tc::kTcThreads;
using igemm_tc::Plan;
using igemm_tc::TcOut;
// a row of 32 b16 (or 16 floats) = 4 chunks of 16 bytes
using Swizzle = XorSwizzle<igemm_tc::kStageRowBytes / 16>;
constexpr int kRowBytes = Swizzle::kRowBytes;

template <class T>
struct Args {
  const T* x;     // N x H x W x C
  const T* w;     // K x R x S x C
  // out: N x P x Q x K (the M x K result), bias by K; ws: splits x M x K partial sums or
  // nullptr (then the epilogue stores out)
  TcOut<T> o;
  int H, W, C, K, R, S, Q, PQ, M, Ktot;
  int pad_h, pad_w, stride_h, stride_w, dil_h, dil_w;
  int k_tiles, k_tiles_per_split;
  // What one carry of c into s (and of s into r) adds to a row's offset, in elements.
  int delta_s, delta_r;
};

// grid: x = m tile, y = n tile, z = split-K slice.
// kC32: C % (k per tile: 32 b16, 16 floats) == 0, so a k-tile never spans two filter
// positions (one carry at most).
template <class T, int BM, int BN, bool kC32>
__global__ void __launch_bounds__(kTcThreads, 2) igemm_tc_fprop_kernel(const Args<T> a) {
  constexpr int WM = BM / 2, WN = BN / 2;   // warp tile (warps 2 x 2)
  constexpr int MT = WM / 16, NT = WN / 8;  // mma tiles per warp
  constexpr int kABytes = BM * kRowBytes, kStageBytes = (BM + BN) * kRowBytes;
  constexpr int AR = BM / 32, BR = BN / 32;  // rows each thread copies per stage
  // Elements of k per k-tile (one 64-byte row) and per 16-byte chunk: 32 and 8 for b16,
  // 16 and 4 for float.
  constexpr int BKE = igemm_tc::bk_elems(sizeof(T)), CH = igemm_tc::chunk_elems(sizeof(T));
  constexpr int KSTEPS = igemm_tc::TcMma<T>::kStepsPerTile;
  __shared__ uint4 smem_raw[kStages * kStageBytes / 16];
  unsigned char* const smem = reinterpret_cast<unsigned char*>(smem_raw);

  const int t = static_cast<int>(threadIdx.x), lane = t & 31, warp = t >> 5;
  const int m0 = static_cast<int>(blockIdx.x) * BM, n0 = static_cast<int>(blockIdx.y) * BN;
  const int split = static_cast<int>(blockIdx.z);
  const igemm_tc::KRange kr(split, a.k_tiles, a.k_tiles_per_split);
  const int kt_begin = kr.begin;

  // --- the loader's fixed part: chunk column cc of rows lrow + 32 i ---
  const int cc = t & 3, lrow = t >> 2;
  // Row i's pixel: where its window's (r, s) = (0, 0) would start (possibly outside the image;
  // only ever read at valid positions), and its top-left corner for the bounds checks.
  const T* a_base[AR];
  int a_h0[AR], a_w0[AR];
#pragma unroll
  for (int i = 0; i < AR; ++i) {
    const int m = m0 + lrow + 32 * i;
    // A pixel past M gets an h0 far below 0: its every (r, s) fails the image check.
    a_base[i] = a.x;
    a_h0[i] = -(1 << 30);
    a_w0[i] = 0;
    if (m < a.M) {
      const int n = m / a.PQ, pq = m - n * a.PQ, p = pq / a.Q, q = pq - p * a.Q;
      a_h0[i] = p * a.stride_h - a.pad_h;
      a_w0[i] = q * a.stride_w - a.pad_w;
      a_base[i] = a.x + static_cast<int64_t>(n) * a.H * a.W * a.C +
                  (static_cast<int64_t>(a_h0[i]) * a.W + a_w0[i]) * a.C;
    }
  }
  // B rows inside K, as bits (fixed for the block).
  unsigned b_rows_ok = 0;
#pragma unroll
  for (int i = 0; i < BR; ++i) b_rows_ok |= (n0 + lrow + 32 * i < a.K ? 1u : 0u) << i;
  // The moving part: this thread's k = (r S + s) C + c, decomposed once here; `delta` is its
  // offset from a row's base, (r dil_h W + s dil_w) C + c, kept up to date with adds.
  int k = kt_begin * BKE + cc * CH;
  int c = k % a.C, r = (k / a.C) / a.S, s = (k / a.C) % a.S;
  int rd = r * a.dil_h, sd = s * a.dil_w;
  int delta = (rd * a.W + sd) * a.C + c;
  const T* b_row = a.w + static_cast<int64_t>(n0 + lrow) * a.Ktot + k;
  const int64_t b_step = static_cast<int64_t>(32) * a.Ktot;
  // Where this thread's chunk of row i lands in a stage: rows 32 apart share the XOR
  // (row / 2 % 4 repeats every 8 rows), so row i is row 0's slot + 32 i rows.
  const int st_off = Swizzle::byte_offset(lrow, cc * 16);

  auto load_stage = [&](int stage_off) {
    unsigned char* sa = smem + stage_off + st_off;
    unsigned char* sb = sa + kABytes;
    const bool k_ok = r < a.R;  // k < R*S*C
#pragma unroll
    for (int i = 0; i < AR; ++i) {
      const bool ok = k_ok &&
                      static_cast<unsigned>(a_h0[i] + rd) < static_cast<unsigned>(a.H) &&
                      static_cast<unsigned>(a_w0[i] + sd) < static_cast<unsigned>(a.W);
      // src-size 0 reads nothing (PTX: the rest of cp-size is zero-filled): the address of a
      // padding position is formed but never dereferenced.
      cuda_async::cp_async_cg(sa + i * 32 * kRowBytes, a_base[i] + delta, ok ? 16 : 0);
    }
#pragma unroll
    for (int i = 0; i < BR; ++i) {
      const bool ok = k_ok && ((b_rows_ok >> i) & 1u);
      cuda_async::cp_async_cg(sb + i * 32 * kRowBytes, b_row + i * b_step, ok ? 16 : 0);
    }
  };
  // One carry of c into (s, r), with delta following.
  auto carry = [&]() {
    c -= a.C;
    sd += a.dil_w;
    delta += a.delta_s;
    if (++s == a.S) {
      s = 0;
      sd = 0;
      rd += a.dil_h;
      delta += a.delta_r;
      ++r;
    }
  };
  auto advance = [&]() {  // to the next k-tile: BKE channels on
    b_row += BKE;
    c += BKE;
    delta += BKE;
    if constexpr (kC32) {
      if (c >= a.C) carry();  // C % BKE == 0: c was < C - BKE + 1, so one carry at most
    } else {
      // At most BKE / CH carries (C >= CH). Unrolled compares rather than a while loop:
      // the k-tile loop stays the innermost loop, with no data-dependent trip count.
#pragma unroll
      for (int j = 0; j < BKE / CH; ++j)
        if (c >= a.C) carry();
    }
  };

  // --- the warp's fixed part: its tile and its lane's ldmatrix rows ---
  const int wm0 = (warp >> 1) * WM, wn0 = (warp & 1) * WN;
  const int li = lane >> 3, lr = lane & 7;  // ldmatrix: lane 8 li + lr gives row lr of matrix li
  // Byte offsets in a stage of this lane's ldmatrix rows for each k16 step: A matrices rows
  // +0/+8 (li & 1), k +0/+8 (li >> 1) = fragment registers a0..a3; B matrices k +0/+8 (li & 1),
  // channels +0/+8 (li >> 1) = b0, b1 of two n8 tiles. The m16 / n16 tiles further down are
  // 16 rows on, which keeps the XOR (row / 2 % 4): a constant offset of 16 rows.
  int a_ld[KSTEPS], b_ld[KSTEPS];
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ++ks) {
    a_ld[ks] = Swizzle::byte_offset(wm0 + (li & 1) * 8 + lr, (ks * 2 + (li >> 1)) * 16);
    b_ld[ks] = kABytes +
               Swizzle::byte_offset(wn0 + (li >> 1) * 8 + lr, (ks * 2 + (li & 1)) * 16);
  }
  float acc[MT][NT][4];
  igemm_tc::zero(acc);

  auto compute = [&](int stage_off) {
    igemm_tc::warp_mma_ktile<T, MT, NT, false>(
        acc, smem + stage_off, [&](int ks, int mt) { return a_ld[ks] + mt * 16 * kRowBytes; },
        [&](int ks, int np) { return b_ld[ks] + np * 16 * kRowBytes; });
  };
  igemm_tc::run_pipeline<kStageBytes>(
      kr.count,
      [&](int stage_off) {
        load_stage(stage_off);
        advance();
      },
      compute);
  igemm_tc::store_warp_tile(a.o, acc, m0 + wm0, n0 + wn0, lane, split);
}

template <class T, int BM, int BN>
cudaError_t launch_tile(const Args<T>& a, const Plan& pl, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(pl.tiles_m), static_cast<unsigned>(pl.tiles_n),
                  static_cast<unsigned>(pl.splits));
  if (a.C % igemm_tc::bk_elems(sizeof(T)) == 0)
    igemm_tc_fprop_kernel<T, BM, BN, true><<<grid, kTcThreads, 0, stream>>>(a);
  else
    igemm_tc_fprop_kernel<T, BM, BN, false><<<grid, kTcThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_typed(const Conv2dProblem& p, const Plan& pl, const T* x, const T* w,
                         const T* bias, bool relu, T* out, float* ws, cudaStream_t stream) {
  Args<T> a{x, w, TcOut<T>{out, pl.splits > 1 ? ws : nullptr, bias, relu,
                            static_cast<int>(p.gemm_m()), static_cast<int>(p.K)}};
  a.H = static_cast<int>(p.H), a.W = static_cast<int>(p.W), a.C = static_cast<int>(p.C);
  a.K = static_cast<int>(p.K), a.R = static_cast<int>(p.R), a.S = static_cast<int>(p.S);
  a.Q = static_cast<int>(p.Q), a.PQ = static_cast<int>(p.P * p.Q);
  a.M = static_cast<int>(p.gemm_m()), a.Ktot = static_cast<int>(p.R * p.S * p.C);
  a.pad_h = static_cast<int>(p.pad_h), a.pad_w = static_cast<int>(p.pad_w);
  a.stride_h = static_cast<int>(p.stride_h), a.stride_w = static_cast<int>(p.stride_w);
  a.dil_h = static_cast<int>(p.dil_h), a.dil_w = static_cast<int>(p.dil_w);
  a.k_tiles = pl.k_tiles, a.k_tiles_per_split = pl.k_tiles_per_split;
  // c -= C and s += 1: -C + dil_w C; then s = 0 and r += 1: -S dil_w C + dil_h W C.
  a.delta_s = (a.dil_w - 1) * a.C;
  a.delta_r = (a.dil_h * a.W - a.S * a.dil_w) * a.C;
  const cudaError_t err = pl.tile == igemm_tc::Tile::Large ? launch_tile<T, 128, 128>(a, pl, stream)
                                                           : launch_tile<T, 64, 64>(a, pl, stream);
  if (err != cudaSuccess || pl.splits == 1) return err;
  return igemm_tc::launch_splitk_reduce(a.o, pl.splits, stream);
}

}  // namespace

cudaError_t launch_igemm_tc_forward(CudaDType dt, const Conv2dProblem& p, const Plan& plan,
                                    const void* x, const void* w, const void* bias, bool relu,
                                    void* out, float* workspace, cudaStream_t stream) {
  const int elem_bytes = dt == CudaDType::Float ? 4 : 2;
  if (igemm_tc::why_not(p, elem_bytes)[0] != '\0') return cudaErrorInvalidValue;
  if (plan.splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  // The plan's k-tiles must be this dtype's (16 floats, or 32 b16, per k-tile).
  if (plan.k_tiles != igemm_tc::ceil_div(p.R * p.S * p.C, igemm_tc::bk_elems(elem_bytes)))
    return cudaErrorInvalidValue;
  if (p.output_numel() == 0) return cudaSuccess;
  if (dt == CudaDType::Half)
    return launch_typed(p, plan, static_cast<const __half*>(x), static_cast<const __half*>(w),
                        static_cast<const __half*>(bias), relu, static_cast<__half*>(out),
                        workspace, stream);
  if (dt == CudaDType::BFloat16)
    return launch_typed(p, plan, static_cast<const __nv_bfloat16*>(x),
                        static_cast<const __nv_bfloat16*>(w),
                        static_cast<const __nv_bfloat16*>(bias), relu,
                        static_cast<__nv_bfloat16*>(out), workspace, stream);
  if (dt == CudaDType::Float)  // TF32: the caller allowed it (allow_tf32)
    return launch_typed(p, plan, static_cast<const float*>(x), static_cast<const float*>(w),
                        static_cast<const float*>(bias), relu, static_cast<float*>(out),
                        workspace, stream);
  return cudaErrorInvalidValue;
}

int igemm_tc_sm_count() {
  int dev = 0, n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) {
    (void)cudaGetLastError();  // a failed query is not the next launch's error
    return 132;
  }
  return n;
}

}  // namespace cnnkern
