// Glue of the tensor-core backward passes (core/igemm_tc_bwd.h): layouts, plans, workspace.
//
// grad-input, stride 1, is the forward kernel on dgrad_problem(p): grad_output is its input
// (read channels_last: a copy of N*K*P*Q elements when the caller's is NCHW), and its weight
// is W flipped in R and S with K and C swapped, in KRSC order: two device copies of the
// K*C*R*S weight here, per call (at::flip, then the channels_last copy). For VGG16 conv3_2
// (256 x 256 x 3 x 3, fp16) that is 2 x 1.2 MB read and written, ~1.4 us of H100 HBM time
// beside a 118 GFLOP GEMM (predicted, not measured). grad-weight reads grad_output and the
// input channels_last (copies when the caller's are NCHW) and writes KRSC, which is the
// channels_last K x C x R x S tensor returned.

#include <ATen/ops/empty.h>

#include <string>

#include "core/igemm_tc_bwd.h"
#include "cuda/conv2d_igemm_tc.h"
#include "cuda/conv2d_igemm_tc_cuda.h"
#include "cuda/conv2d_igemm_tc_wgrad.h"
#include "cuda/cuda_glue.h"
#include "cuda/device_context.h"
#include "cuda/dgrad_weight.h"

namespace cnnkern {

std::string igemm_tc_dgrad_why_not(const Conv2dProblem& p, at::ScalarType dtype) {
  const std::string no = igemm_tc_dtype_why_not(dtype);
  return no.empty() ? igemm_tc::dgrad_why_not(p) : no;
}

std::string igemm_tc_wgrad_why_not(const Conv2dProblem& p, at::ScalarType dtype) {
  const std::string no = igemm_tc_dtype_why_not(dtype);
  return no.empty() ? igemm_tc::wgrad_why_not(p) : no;
}

Conv2dWorkspace igemm_tc_backward_workspace(const Conv2dProblem& p, at::ScalarType dtype,
                                            ConvPass pass) {
  Conv2dWorkspace ws;
  const bool dgrad = pass == ConvPass::BackwardInput;
  const std::string no = dgrad ? igemm_tc_dgrad_why_not(p, dtype) : igemm_tc_wgrad_why_not(p, dtype);
  if (!no.empty()) {
    // grad-input's general kernel gathers in place; grad-weight's is igemm_workspace's.
    ws.what = "none: general implicit-GEMM kernel (NCHW, reads its operands in place): " + no;
    return ws;
  }
  const int sms = igemm_tc_sm_count();
  const igemm_tc::Plan pl =
      dgrad ? igemm_tc::make_plan(igemm_tc::dgrad_problem(p), sms) : igemm_tc::make_wgrad_plan(p, sms);
  const int64_t elem = 2;  // float16 / bfloat16
  // Upper bound: the activations' layout copies are made only for an NCHW call.
  ws.per_call = pl.workspace_elems() * 4 +
                (dgrad ? p.output_numel() + 2 * p.weight_numel() : p.output_numel() + p.input_numel()) * elem;
  ws.what = std::string(dgrad ? "tensor-core kernel (the forward on the flipped, transposed "
                                "weight; stride 1), "
                              : "tensor-core grad-weight kernel (NHWC, cp.async + "
                                "ldmatrix.trans + mma.sync), ") +
            pl.reason + " (" + std::to_string(pl.tiles_m * pl.tiles_n) + " tiles x " +
            std::to_string(pl.splits) + " split" + (pl.splits > 1 ? "s" : "") +
            "); bytes: split-K fp32 partial sums, " +
            (dgrad ? "the re-laid weight (two copies), plus the channels_last copy of "
                     "grad_output that an NCHW call makes"
                   : "plus the channels_last copies of grad_output and input that an NCHW "
                     "call makes");
  return ws;
}

at::Tensor igemm_tc_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                   const Conv2dProblem& p) {
  // W'[c][k][r][s] = W[k][c][R-1-r][S-1-s] (a view of the flip); igemm_tc_forward copies it
  // to KRSC.
  const at::Tensor w_flipped = dgrad_weight(weight, p.groups);
  Conv2dEpilogue none;
  return igemm_tc_forward(grad_output, w_flipped, c10::nullopt, igemm_tc::dgrad_problem(p), none);
}

at::Tensor igemm_tc_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                    const Conv2dProblem& p) {
  const at::Tensor dy = channels_last_aligned(grad_output);
  const at::Tensor x = channels_last_aligned(input);
  at::Tensor gw = at::empty({p.K, p.C, p.R, p.S},
                            input.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (gw.numel() == 0) return gw;
  const igemm_tc::Plan pl = igemm_tc::make_wgrad_plan(p, igemm_tc_sm_count());
  at::Tensor ws;
  if (pl.splits > 1) ws = at::empty({pl.workspace_elems()}, input.options().dtype(at::kFloat));
  CNNKERN_CUDA_CHECK(launch_igemm_tc_wgrad(
      cuda_dtype_of(input), p, pl, dy.const_data_ptr(), x.const_data_ptr(),
      gw.mutable_data_ptr(), ws.defined() ? ws.mutable_data_ptr<float>() : nullptr,
      current_cuda_stream()));
  return gw;
}

}  // namespace cnnkern
