#pragma once
// The CPU direct algorithm's depthwise path: when groups == in_channels (> 1), every pass
// works one (image, channel) plane at a time with the kernels of depthwise_core.h instead
// of the channel-blocked flat correlation, which has no channel reuse to exploit there.
// conv2d_direct.cpp calls these from its passes; the arguments are theirs (contiguous NCHW,
// output buffers already allocated, problem not empty).

#include <ATen/core/Tensor.h>

#include "core/conv2d_problem.h"
#include "ops/conv2d_algo.h"

namespace cnnkern {
namespace depthwise {

// Every output channel reads exactly one input channel (channel multiplier K / C >= 1).
inline bool applies(const Conv2dProblem& p) { return p.groups > 1 && p.groups == p.C; }

template <typename T>
void forward(const at::Tensor& input, const at::Tensor& weight, const T* bias, T* out,
             const Conv2dProblem& p, bool relu);

template <typename T>
void backward_input(const at::Tensor& grad_output, const at::Tensor& weight, T* gi,
                    const Conv2dProblem& p);

template <typename T>
void backward_weight(const at::Tensor& grad_output, const at::Tensor& input, T* gw,
                     const Conv2dProblem& p);

// What the three passes above allocate (per call, per thread).
Conv2dWorkspace workspace(const Conv2dProblem& p, at::ScalarType dtype, ConvPass pass);

}  // namespace depthwise
}  // namespace cnnkern
