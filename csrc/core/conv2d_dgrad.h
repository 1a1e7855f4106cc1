#pragma once
// grad-input as a forward convolution, shared by the kernels that run it so (the tensor-core
// one, core/igemm_tc_bwd.h; the fp32 core's, core/igemm_fp32_bwd.h; Winograd's turned problem,
// core/winograd.h). Torch-free, host + device.
//
// Stride 1: dX = conv(dY, W') with W'[c][k][r][s] = W[k][c][R-1-r][S-1-s] (per group: the
// filter flipped in R and S, K/groups and C/groups swapped), padding dil (R-1) - pad, the same
// dilation and groups; its output size is P + dil (R-1) - 2 pad = H. A stride > 1 would need a
// map that skips the stride holes, and padding past dil a negative padding: neither maps.

#include "core/conv2d_problem.h"
#include "core/macros.h"

namespace cnnkern {

// Whether p's grad-input is the forward dgrad_problem(p).
CNNKERN_HD bool dgrad_is_forward(const Conv2dProblem& p) {
  return p.stride_h == 1 && p.stride_w == 1 && p.pad_h <= p.dil_h * (p.R - 1) &&
         p.pad_w <= p.dil_w * (p.S - 1);
}

// The forward problem whose output is p's grad-input (meaningful when dgrad_is_forward).
CNNKERN_HD Conv2dProblem dgrad_problem(const Conv2dProblem& p) {
  Conv2dProblem q = p;
  q.C = p.K;
  q.K = p.C;
  q.H = p.P;
  q.W = p.Q;
  q.P = p.H;
  q.Q = p.W;
  q.pad_h = p.dil_h * (p.R - 1) - p.pad_h;
  q.pad_w = p.dil_w * (p.S - 1) - p.pad_w;
  return q;
}

}  // namespace cnnkern
