#pragma once
// The 2-D convolution problem, shared by every algorithm on both backends.
// Plain data + index math only (no torch headers), so .cu kernels can include it.
//
// Naming follows CUTLASS's Conv2dProblemSize:
//   input  N x C x H x W,  filter K x (C/groups) x R x S,  output N x K x P x Q.

#include <cstdint>

#include "core/macros.h"

namespace cnnkern {

// torch's output-size formula: floor((in + 2*pad - dil*(k-1) - 1) / stride) + 1.
// The numerator can be negative for an invalid problem; floor division keeps the result
// <= 0 so callers can reject it (C++ '/' truncates toward zero).
CNNKERN_HD int64_t conv_output_size(int64_t in, int64_t k, int64_t pad, int64_t stride,
                                    int64_t dil) {
  const int64_t num = in + 2 * pad - dil * (k - 1) - 1;
  const int64_t q = num / stride;
  return ((num % stride != 0) && (num < 0) ? q - 1 : q) + 1;
}

struct Conv2dProblem {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t K = 0, R = 0, S = 0;         // filters and their height/width
  int64_t P = 0, Q = 0;                // output height/width
  int64_t pad_h = 0, pad_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dil_h = 1, dil_w = 1;
  int64_t groups = 1;

  CNNKERN_HD int64_t C_per_group() const { return C / groups; }
  CNNKERN_HD int64_t K_per_group() const { return K / groups; }

  // Input row/column read by output position p (q) through filter tap r (s).
  CNNKERN_HD int64_t in_h(int64_t p, int64_t r) const { return p * stride_h - pad_h + r * dil_h; }
  CNNKERN_HD int64_t in_w(int64_t q, int64_t s) const { return q * stride_w - pad_w + s * dil_w; }

  // Implicit-GEMM view, per group: M = N*P*Q, N = K/groups, K = C/groups*R*S.
  CNNKERN_HD int64_t gemm_m() const { return N * P * Q; }
  CNNKERN_HD int64_t gemm_n() const { return K_per_group(); }
  CNNKERN_HD int64_t gemm_k() const { return C_per_group() * R * S; }

  // Direct-convolution FLOP count (a multiply and an add per MAC); Winograd and other
  // algorithms are reported as *effective* FLOP/s on this count.
  CNNKERN_HD int64_t flops() const { return 2 * N * K * C_per_group() * R * S * P * Q; }

  CNNKERN_HD int64_t input_numel() const { return N * C * H * W; }
  CNNKERN_HD int64_t weight_numel() const { return K * C_per_group() * R * S; }
  CNNKERN_HD int64_t output_numel() const { return N * K * P * Q; }
};

}  // namespace cnnkern
