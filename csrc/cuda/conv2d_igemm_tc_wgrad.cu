// The tensor-core grad-weight (wgrad): float16/bfloat16, channels_last activations and
// grad_output, KRSC result (plan and limits: core/igemm_tc_bwd.h). Torch-free.
//
// GEMM: dW[k][n] = sum over pixels j of dY[j][k] * X(j, n), k < K (M), n = (r, s, c) < R*S*C
// (N), j = (image, p, q) < N*P*Q (the reduction, kBK = 32 pixels per k-tile). Both operands are
// contiguous along their GEMM row, not along the reduction: dY (NHWC) along k, X along c. So a
// stage holds each operand k-major: 32 rows (pixels) of BM (resp. BN) b16 values, filled by
// 16-byte cp.async.cg (8 output channels of dY; 8 input channels of X at one (r, s); src-size
// 0 zero-fills padding, stride holes never arise: every pixel j reads its own window
// position), rows XOR-swizzled (core/smem_swizzle.h: 8 consecutive rows of one chunk column
// in 8 bank groups), and ldmatrix.x4.trans turns each 8 x 8 block into the row-major A and
// column-major B fragments of mma.sync m16n8k16.
//
// Each thread copies one chunk column of rows t / chunks + i * (rows per pass) of both
// operands: its dY column and its (r, s, c) are fixed for the block, and its pixels advance by
// 32 per k-tile with adds and single carries (32 = step_n images + step_p rows + step_q
// columns, step_q < Q, step_p < P), an X offset kept beside them: no division in the loop. Split-K over the pixels: fp32 partial sums and the
// fixed-order reduce (igemm_tc_common.cuh), so the result does not depend on scheduling.

#include "cuda/conv2d_igemm_tc_wgrad.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/igemm_tc_bwd.h"
#include "core/smem_swizzle.h"
#include "cuda/igemm_tc_common.cuh"

namespace cnnkern {
namespace {

using igemm_tc::kBK;
using igemm_tc::kChunk;
using igemm_tc::kTcThreads;
using igemm_tc::Plan;
using igemm_tc::TcOut;

template <class T>
struct WgradArgs {
  const T* dy;  // N x P x Q x K
  const T* x;   // N x H x W x C
  TcOut<T> o;   // K x (R*S*C): the K x R x S x C grad-weight; no bias, no ReLU
  int H, W, C, K, S, P, Q, NPQ, RSC;
  int pad_h, pad_w, stride_h, stride_w, dil_h, dil_w;
  int k_tiles, k_tiles_per_split;
  // kBK pixels = step_n images + step_p rows + step_q columns (step_p < P, step_q < Q); in
  // the loader's terms: p stride_h moves by step_ps, q stride_w by step_qs, the element offset
  // in X by d_step; a carry of q (q stride_w >= Qs = Q stride_w) adds d_qcarry, a carry of p
  // (p stride_h >= Ps = P stride_h) adds d_pcarry.
  int step_ps, step_qs, Ps, Qs, d_step, d_qcarry, d_pcarry;
};

// grid: x = m tile (output channels), y = n tile (filter taps), z = split-K slice.
template <class T, int BM, int BN>
__global__ void __launch_bounds__(kTcThreads, 2) igemm_tc_wgrad_kernel(const WgradArgs<T> a) {
  using SwA = XorSwizzle<BM / kChunk>;  // a row: BM b16 = BM / 8 chunks
  using SwB = XorSwizzle<BN / kChunk>;
  constexpr int WM = BM / 2, WN = BN / 2;   // warp tile (warps 2 x 2)
  constexpr int MT = WM / 16, NT = WN / 8;  // mma tiles per warp
  constexpr int kABytes = kBK * SwA::kRowBytes, kStageBytes = kABytes + kBK * SwB::kRowBytes;
  static_assert(BM == BN, "one loader row layout for both operands");
  constexpr int ACH = BM / kChunk;                       // chunks per row
  constexpr int PASS = kTcThreads / ACH, ROWS = kBK / PASS;  // rows per pass, passes per stage
  static_assert(PASS % 8 == 0, "rows a pass apart share their XOR");
  __shared__ uint4 smem_raw[igemm_tc::kStages * kStageBytes / 16];
  unsigned char* const smem = reinterpret_cast<unsigned char*>(smem_raw);

  const int t = static_cast<int>(threadIdx.x), lane = t & 31, warp = t >> 5;
  const int m0 = static_cast<int>(blockIdx.x) * BM, n0 = static_cast<int>(blockIdx.y) * BN;
  const int split = static_cast<int>(blockIdx.z);
  const igemm_tc::KRange kr(split, a.k_tiles, a.k_tiles_per_split);

  // --- the loaders: chunk column cc of pixel rows lrow + PASS i, of dY and of X ---
  // (BM == BN: both operands have the same rows per pass, so row i is one pixel j for both.)
  const int cc = t % ACH, lrow = t / ACH;
  int j0 = kr.begin * kBK + lrow;  // the pixel of pass 0
  // dY: channels m0 + 8 cc.. (K % 8 == 0: a chunk is all in or all out).
  const bool a_col_ok = m0 + cc * kChunk < a.K;
  const T* a_src = a.dy + static_cast<int64_t>(j0) * a.K + m0 + cc * kChunk;
  const int64_t a_pass = static_cast<int64_t>(PASS) * a.K;
  // X: filter taps n0 + 8 cc.. = (r, s, c..c+7), fixed for the block; x_tap is where the tap
  // of the pixel at offset 0 (image 0, p = q = 0) would read.
  const int n_tap = n0 + cc * kChunk;
  const bool b_col_ok = n_tap < a.RSC;
  const int c = n_tap % a.C, rs = n_tap / a.C;
  const int h_tap = (rs / a.S) * a.dil_h - a.pad_h, w_tap = (rs % a.S) * a.dil_w - a.pad_w;
  const char* const x_tap = reinterpret_cast<const char*>(
      a.x + (static_cast<int64_t>(h_tap) * a.W + w_tap) * a.C + c);
  // Each pass's pixel as the input row and column its tap reads (h = p stride_h + h_tap,
  // w = q stride_w + w_tap) and its byte offset from x_tap, all kept up to date with adds; a
  // carry of q is w reaching w_end = Q stride_w + w_tap, one of p h reaching h_end.
  const int h_end = a.Ps + h_tap, w_end = a.Qs + w_tap;
  int b_h[ROWS], b_w[ROWS], b_off[ROWS];
#pragma unroll
  for (int i = 0; i < ROWS; ++i) {
    const int j = j0 + PASS * i, PQ = a.P * a.Q;
    const int img = j / PQ, p = (j - img * PQ) / a.Q, q = j - img * PQ - p * a.Q;
    b_h[i] = p * a.stride_h + h_tap;
    b_w[i] = q * a.stride_w + w_tap;
    b_off[i] = ((img * a.H + p * a.stride_h) * a.W + q * a.stride_w) * a.C *
               static_cast<int>(sizeof(T));
  }
  const int a_st = SwA::byte_offset(lrow, cc * 16);
  const int b_st = kABytes + SwB::byte_offset(lrow, cc * 16);

  auto load_next = [&](int stage_off) {
    unsigned char* const st = smem + stage_off;
#pragma unroll
    for (int i = 0; i < ROWS; ++i) {
      const bool row_ok = j0 + PASS * i < a.NPQ;
      cuda_async::cp_async_cg(st + a_st + i * PASS * SwA::kRowBytes, a_src + i * a_pass,
                              row_ok && a_col_ok ? 16 : 0);
      const bool ok = row_ok && b_col_ok &&
                      static_cast<unsigned>(b_h[i]) < static_cast<unsigned>(a.H) &&
                      static_cast<unsigned>(b_w[i]) < static_cast<unsigned>(a.W);
      // src-size 0 reads nothing: an out-of-image address is formed, never dereferenced.
      cuda_async::cp_async_cg(st + b_st + i * PASS * SwB::kRowBytes, x_tap + b_off[i],
                              ok ? 16 : 0);
    }
    // On to the next k-tile: kBK pixels further (single carries: step_q < Q, step_p < P).
    j0 += kBK;
    a_src += static_cast<int64_t>(kBK) * a.K;
#pragma unroll
    for (int i = 0; i < ROWS; ++i) {
      b_w[i] += a.step_qs;
      b_h[i] += a.step_ps;
      b_off[i] += a.d_step;
      if (b_w[i] >= w_end) {  // q >= Q: q -= Q, p += 1
        b_w[i] -= a.Qs;
        b_h[i] += a.stride_h;
        b_off[i] += a.d_qcarry;
      }
      if (b_h[i] >= h_end) {  // p >= P: p -= P, image += 1
        b_h[i] -= a.Ps;
        b_off[i] += a.d_pcarry;
      }
    }
  };

  // --- the warp's tile and its lane's ldmatrix.trans rows (rows are pixels, k) ---
  const int wm0 = (warp >> 1) * WM, wn0 = (warp & 1) * WN;
  const int li = lane >> 3, lr = lane & 7;  // lane 8 li + lr gives row lr of matrix li
  // A matrices a0..a3: (k +0, m +0), (k +0, m +8), (k +8, m +0), (k +8, m +8);
  // B matrices: (k +0, n +0), (k +8, n +0) = b0, b1 of one n8 tile; then n +8 for the next.
  // The second k16 step is 16 rows on: the same XOR (row % 8), a constant offset.
  int a_ld[MT], b_ld[NT / 2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
    a_ld[mt] = SwA::byte_offset((li >> 1) * 8 + lr, (wm0 + mt * 16 + (li & 1) * 8) * 2);
#pragma unroll
  for (int np = 0; np < NT / 2; ++np)
    b_ld[np] = kABytes + SwB::byte_offset((li & 1) * 8 + lr, (wn0 + np * 16 + (li >> 1) * 8) * 2);

  float acc[MT][NT][4];
  igemm_tc::zero(acc);

  igemm_tc::run_pipeline<kStageBytes>(kr.count, load_next, [&](int stage_off) {
    igemm_tc::warp_mma_ktile<T, MT, NT, true>(
        acc, smem + stage_off, [&](int ks, int mt) { return a_ld[mt] + ks * 16 * SwA::kRowBytes; },
        [&](int ks, int np) { return b_ld[np] + ks * 16 * SwB::kRowBytes; });
  });
  igemm_tc::store_warp_tile(a.o, acc, m0 + wm0, n0 + wn0, lane, split);
}

template <class T>
cudaError_t launch_typed(const Conv2dProblem& p, const Plan& pl, const T* dy, const T* x,
                         T* grad_weight, float* ws, cudaStream_t stream) {
  WgradArgs<T> a{dy, x, TcOut<T>{grad_weight, pl.splits > 1 ? ws : nullptr, nullptr, false,
                                 static_cast<int>(p.K), static_cast<int>(p.R * p.S * p.C)}};
  a.H = static_cast<int>(p.H), a.W = static_cast<int>(p.W);
  a.C = static_cast<int>(p.C), a.K = static_cast<int>(p.K), a.S = static_cast<int>(p.S);
  a.NPQ = static_cast<int>(p.gemm_m()), a.RSC = static_cast<int>(p.R * p.S * p.C);
  a.pad_h = static_cast<int>(p.pad_h), a.pad_w = static_cast<int>(p.pad_w);
  a.stride_h = static_cast<int>(p.stride_h), a.stride_w = static_cast<int>(p.stride_w);
  a.dil_h = static_cast<int>(p.dil_h), a.dil_w = static_cast<int>(p.dil_w);
  a.k_tiles = pl.k_tiles, a.k_tiles_per_split = pl.k_tiles_per_split;
  a.P = static_cast<int>(p.P), a.Q = static_cast<int>(p.Q);
  const int PQ = a.P * a.Q, step_n = kBK / PQ, step_p = (kBK % PQ) / a.Q, step_q = kBK % a.Q;
  const int row = a.W * a.C * static_cast<int>(sizeof(T));  // bytes per input row
  const int pix = a.C * static_cast<int>(sizeof(T));        // bytes per input pixel
  a.step_ps = step_p * a.stride_h, a.step_qs = step_q * a.stride_w;
  a.Ps = a.P * a.stride_h, a.Qs = a.Q * a.stride_w;
  a.d_step = step_n * a.H * row + a.step_ps * row + a.step_qs * pix;
  a.d_qcarry = a.stride_h * row - a.Qs * pix;
  a.d_pcarry = (a.H - a.Ps) * row;
  const dim3 grid(static_cast<unsigned>(pl.tiles_m), static_cast<unsigned>(pl.tiles_n),
                  static_cast<unsigned>(pl.splits));
  if (pl.tile == igemm_tc::Tile::Large)
    igemm_tc_wgrad_kernel<T, 128, 128><<<grid, kTcThreads, 0, stream>>>(a);
  else
    igemm_tc_wgrad_kernel<T, 64, 64><<<grid, kTcThreads, 0, stream>>>(a);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || pl.splits == 1) return err;
  return igemm_tc::launch_splitk_reduce(a.o, pl.splits, stream);
}

}  // namespace

cudaError_t launch_igemm_tc_wgrad(CudaDType dt, const Conv2dProblem& p, const Plan& plan,
                                  const void* grad_output, const void* x, void* grad_weight,
                                  float* workspace, cudaStream_t stream) {
  if (igemm_tc::wgrad_why_not(p)[0] != '\0') return cudaErrorInvalidValue;
  if (plan.splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  if (p.weight_numel() == 0) return cudaSuccess;
  if (dt == CudaDType::Half)
    return launch_typed(p, plan, static_cast<const __half*>(grad_output),
                        static_cast<const __half*>(x), static_cast<__half*>(grad_weight),
                        workspace, stream);
  if (dt == CudaDType::BFloat16)
    return launch_typed(p, plan, static_cast<const __nv_bfloat16*>(grad_output),
                        static_cast<const __nv_bfloat16*>(x),
                        static_cast<__nv_bfloat16*>(grad_weight), workspace, stream);
  return cudaErrorInvalidValue;
}

}  // namespace cnnkern
