#pragma once
// The weight of grad-input as a forward convolution (core/conv2d_dgrad.h), for the kernels
// that run it so (tensor-core: conv2d_igemm_tc_bwd_cuda.cpp; fp32 core:
// conv2d_igemm_fp32_bwd_cuda.cpp).

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace cnnkern {

// W'[g*Cg + c][k][r][s] = W[g*Kg + k][c][R-1-r][S-1-s]: the filter flipped in R and S, and per
// group its K/groups and C/groups swapped; a C x K/groups x R x S tensor. One device copy (the
// flip) for groups == 1, where the result is a transposed view of it (the caller lays it out as
// its kernel reads it); two (the flip, then the regrouping) otherwise.
at::Tensor dgrad_weight(const at::Tensor& weight, int64_t groups);

}  // namespace cnnkern
