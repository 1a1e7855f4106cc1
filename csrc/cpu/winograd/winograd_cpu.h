#pragma once
// Winograd F(m x m, 3x3) convolution kernels on the CPU (m = 2 or 4), on raw pointers.
//
// Problems: 3x3 filter, stride 1, dilation 1, any groups, and any padding -- negative
// included (a crop of the padding-0 result), which is what grad-input needs when pad > 2.
// Tensors are contiguous: input N x C x H x W, weight K x C/groups x 3 x 3,
// output N x K x P x Q.
//
// Results do not depend on the thread count: the tile blocks are a function of the problem
// alone, and every output element is computed by one thread in a fixed order.

#include <cstdint>

#include "core/conv2d_problem.h"

namespace cnnkern {
namespace cpu {

// out = conv2d(input, weight) + bias (bias may be null), then max(out, 0) when relu (applied
// as each output tile is written: the fused ReLU epilogue).
// flipped_weight: `weight` is the filter tensor of the convolution whose grad-input this is
// (p.C x p.K/groups x 3 x 3), used turned by 180 degrees with its K and C axes swapped per
// group -- read in place, never copied.
template <int M, typename T>
void winograd_forward(const T* input, const T* weight, const T* bias, T* output,
                      const Conv2dProblem& p, bool flipped_weight = false, bool relu = false);

// grad_weight = d(sum(output * grad_output)) / d(weight), accumulated in the Winograd domain:
// dU = sum over tiles of (A dY A^T) x (B^T d B), then grad_weight = G^T dU G.
template <int M, typename T>
void winograd_backward_weight(const T* grad_output, const T* input, T* grad_weight,
                              const Conv2dProblem& p);

// X(M, T) for every (tile size, dtype) the CPU Winograd is built for: the explicit
// instantiations of the kernels above, in their .cpp files.
#define CNNKERN_WINOGRAD_CPU_VARIANTS(X) X(2, float) X(2, double) X(4, float) X(4, double)

}  // namespace cpu
}  // namespace cnnkern
