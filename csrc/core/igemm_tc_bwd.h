#pragma once
// Which backward passes run on the tensor cores (float16/bfloat16, channels_last), and how.
// Torch-free and CUDA-free, so the CPU tests call it directly.
//
// grad-input (dgrad), stride 1: the forward kernel (conv2d_igemm_tc.cu) on dgrad_problem(p)
// (core/conv2d_dgrad.h: the flipped, K<->C-transposed weight); the glue re-lays the weight out
// (two device copies of K*C*R*S elements: the flip, then the channels_last copy). Stride > 1
// keeps the general kernel.
//
// grad-weight (wgrad): dW[k][(r, s, c)] = sum over pixels j = (n, p, q) of
// dY[j][k] * X[n][p stride + r dil - pad][q stride + s dil - pad][c], a K x (R*S*C) GEMM
// reduced over N*P*Q (conv2d_igemm_tc_wgrad.cu). NHWC makes both operands contiguous along
// their GEMM row (dY along k, X along c), so the tiles land in shared memory k-major and
// ldmatrix .trans reads them; split-K over the pixels when the grid is under one wave, the
// slices summed in a fixed order (deterministic).

#include <cstdint>

#include "core/conv2d_dgrad.h"
#include "core/conv2d_problem.h"
#include "core/igemm_tc_plan.h"

namespace cnnkern {
namespace igemm_tc {

// dgrad_problem (core/conv2d_dgrad.h), in this namespace as its callers name it.
using ::cnnkern::dgrad_problem;

// "" when grad-input runs on the tensor-core forward kernel, else why not.
inline const char* dgrad_why_not(const Conv2dProblem& p) {
  if (p.stride_h != 1 || p.stride_w != 1)
    return "the tensor-core grad-input needs stride 1 (a strided one keeps the general kernel)";
  if (p.pad_h > p.dil_h * (p.R - 1) || p.pad_w > p.dil_w * (p.S - 1))
    return "the tensor-core grad-input needs padding <= dilation * (kernel - 1)";
  if (p.groups != 1) return "the tensor-core kernel needs groups == 1";
  if (p.K % kChunk != 0)
    return "the tensor-core grad-input needs K % 8 == 0 (16-byte channel runs of grad_output)";
  return why_not(dgrad_problem(p));
}

// "" when grad-weight runs on the tensor-core wgrad kernel, else why not.
inline const char* wgrad_why_not(const Conv2dProblem& p) {
  if (p.groups != 1) return "the tensor-core kernel needs groups == 1";
  if (p.C % kChunk != 0 || p.K % kChunk != 0)
    return "the tensor-core grad-weight needs C % 8 == 0 and K % 8 == 0 (16-byte channel runs)";
  const int64_t npq = p.gemm_m();
  // 32-bit byte offsets into X (up to one image past the end: the rows of the last k-tile
  // past N*P*Q), element offsets into dY and dW, and the pixel index.
  if ((p.N + 1) * p.H * p.W * p.C >= (kMax32 >> 1) || npq * p.K >= kMax32 ||
      p.weight_numel() >= kMax32)
    return "the tensor-core grad-weight needs (N+1)*H*W*C below 2^30, N*P*Q*K and K*R*S*C "
           "below 2^31";
  const int64_t reach_h = (p.R - 1) * p.dil_h + p.pad_h + p.P * p.stride_h;
  const int64_t reach_w = (p.S - 1) * p.dil_w + p.pad_w + p.Q * p.stride_w;
  if (reach_h >= (kMax32 >> 2) || reach_w >= (kMax32 >> 2))
    return "the tensor-core kernel needs every window position below 2^29";
  return "";
}

// grad-weight: M = K output channels, N = R*S*C filter taps, reduction over N*P*Q pixels
// (long: split the big tile first; VGG16 conv3_2 at batch 32 on 132 SMs: 36 tiles x 7 slices).
inline Plan make_wgrad_plan(const Conv2dProblem& p, int sm_count) {
  return make_gemm_plan(p.K, p.R * p.S * p.C, p.gemm_m(), sm_count, /*split_large_first=*/true);
}

}  // namespace igemm_tc
}  // namespace cnnkern
