// Glue of the tensor-core implicit-GEMM forward (conv2d_igemm_tc.cu): layouts, plan, workspace.
//
// The kernel reads channels_last activations (N x H x W x C) and KRSC weights, and writes a
// channels_last output. A channels_last call (input or weight in that format: the op then
// hands them over as they are, see forward_takes_channels_last) pays nothing extra. An NCHW
// call pays, on the device, one transposing copy of the input (N*C*H*W elements read and
// written), one of the weight (K*C*R*S), and one of the output back to NCHW (N*K*P*Q, done by
// the op when it restores the caller's format): for VGG16 conv3_2 at batch 32 in fp16, 3 x
// ~51 MB read and written, ~0.09 ms of H100 HBM time beside a GEMM of 118 GFLOP (~0.17 ms at
// 70% of the fp16 tensor peak), i.e. ~50% on top: models should run channels_last.

#include "cuda/conv2d_igemm_tc_cuda.h"

#include <ATen/ops/empty.h>

#include <cstdint>

#include "core/igemm_tc_plan.h"
#include "cuda/conv2d_igemm_tc.h"
#include "cuda/tensor_core_switch.h"
#include "cuda/cuda_glue.h"
#include "cuda/device_context.h"

namespace cnnkern {

// cp.async copies 16 bytes from 16-byte aligned addresses: a view with an odd storage offset
// (rare: a slice) is copied to fresh, aligned memory.
at::Tensor channels_last_aligned(const at::Tensor& t) {
  at::Tensor c = t.contiguous(at::MemoryFormat::ChannelsLast);
  if (reinterpret_cast<std::uintptr_t>(c.const_data_ptr()) % 16 != 0)
    c = c.clone(at::MemoryFormat::ChannelsLast);
  return c;
}

std::string igemm_tc_dtype_why_not(at::ScalarType dtype, bool allow_tf32) {
  if (dtype == at::kFloat && !allow_tf32)
    return "the tensor-core kernel takes float16 and bfloat16; got Float (float32 only with "
           "TF32 allowed)";
  if (dtype != at::kHalf && dtype != at::kBFloat16 && dtype != at::kFloat)
    return std::string("the tensor-core kernel takes float16 and bfloat16; got ") +
           c10::toString(dtype);
  if (tensor_cores_disabled())
    return "CNNKERN_IGEMM_SIMT is set: tensor cores are off for this process";
  return "";
}

// Bytes per element in the kernel's shared tiles: 4 for float32 (TF32), 2 otherwise.
int igemm_tc_elem_bytes(at::ScalarType dtype) { return dtype == at::kFloat ? 4 : 2; }

std::string igemm_tc_why_not(const Conv2dProblem& p, at::ScalarType dtype, bool allow_tf32) {
  const std::string no = igemm_tc_dtype_why_not(dtype, allow_tf32);
  return no.empty() ? igemm_tc::why_not(p, igemm_tc_elem_bytes(dtype)) : no;
}

Conv2dWorkspace igemm_tc_forward_workspace(const Conv2dProblem& p, at::ScalarType dtype,
                                           bool allow_tf32) {
  Conv2dWorkspace ws;
  const std::string no = igemm_tc_why_not(p, dtype, allow_tf32);
  if (!no.empty()) {
    ws.what = "general implicit-GEMM kernel (NCHW, no workspace): " + no;
    return ws;
  }
  const int elem = igemm_tc_elem_bytes(dtype);
  const igemm_tc::Plan pl = igemm_tc::make_plan(p, igemm_tc_sm_count(), elem);
  ws.per_call = pl.workspace_elems() * 4 + (p.input_numel() + p.weight_numel()) * elem;
  // Upper bound: the layout copies are made only for an NCHW input / weight.
  ws.what = std::string("tensor-core kernel (NHWC, cp.async + ldmatrix + mma.sync") +
            (dtype == at::kFloat ? " m16n8k8 TF32), " : "), ") +
            pl.reason + " (" + std::to_string(pl.tiles_m * pl.tiles_n) + " tiles x " +
            std::to_string(pl.splits) + " split" + (pl.splits > 1 ? "s" : "") +
            "); bytes: split-K fp32 partial sums, plus the channels_last copies of input and "
            "weight that an NCHW call makes (none when the call is channels_last; an NCHW call "
            "also pays the output's copy back to NCHW)";
  return ws;
}

at::Tensor igemm_tc_forward(const at::Tensor& input, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias, const Conv2dProblem& p,
                            const Conv2dEpilogue& epi) {
  const at::Tensor x = channels_last_aligned(input);
  const at::Tensor w = channels_last_aligned(weight);
  at::Tensor out = at::empty({p.N, p.K, p.P, p.Q},
                             input.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (out.numel() == 0) return out;
  const igemm_tc::Plan pl =
      igemm_tc::make_plan(p, igemm_tc_sm_count(), igemm_tc_elem_bytes(input.scalar_type()));
  at::Tensor ws;
  if (pl.splits > 1) ws = at::empty({pl.workspace_elems()}, input.options().dtype(at::kFloat));
  CNNKERN_CUDA_CHECK(launch_igemm_tc_forward(
      cuda_dtype_of(input), p, pl, x.const_data_ptr(), w.const_data_ptr(), bias_data(bias),
      epi.relu, out.mutable_data_ptr(), ws.defined() ? ws.mutable_data_ptr<float>() : nullptr,
      current_cuda_stream()));
  return out;
}

}  // namespace cnnkern
