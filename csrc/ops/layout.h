#pragma once
// Output memory formats, as torch decides them (host only). The kernels compute in
// NCHW-contiguous memory (the pooling kernels also in channels_last); the op bodies hand a
// channels_last input to them as an NCHW copy and give the result back in the layout torch's
// own op would return, so a channels_last model stays channels_last. README ("Memory
// format") lists where these copies happen.

#include <ATen/core/Tensor.h>

namespace cnnkern {

// torch's convolution rule (mkldnn_conv_use_channels_last, cudnn_conv_suggest_memory_format):
// channels_last when either operand's strides suggest it, else NCHW. Used for a conv's
// output and, with the backward ops' operands, for their results.
at::MemoryFormat conv_memory_format(const at::Tensor& a, const at::Tensor& b);

// `t` itself when its strides are those at::empty(t.sizes(), memory_format=fmt) gives, else a
// copy with those strides. (Not t.contiguous(fmt): for an N x C x 1 x 1 tensor that keeps NCHW
// strides, which also count as channels_last-contiguous; the fake kernels promise
// at::empty's strides, and torch.compile checks them.)
at::Tensor in_memory_format(const at::Tensor& t, at::MemoryFormat fmt);

}  // namespace cnnkern
