// Glue of the float32 backward passes on the fp32 GEMM core (core/igemm_fp32_bwd.h).
//
// grad-input, stride 1: the fp32 forward kernel (conv2d_igemm_fp32.cu) on dgrad_problem(p),
// grad_output its input (NCHW, copied only when the caller's is not), its weight the flipped,
// regrouped W (dgrad_weight.h: one device copy of K*C/groups*R*S elements per call for groups
// 1, two otherwise; for VGG16 conv3_2, 2.4 MB read and written beside a 118 GFLOP GEMM at
// batch 32). grad-weight: its own kernel (conv2d_igemm_fp32_wgrad.cu) on NCHW operands, with
// split-K partial sums (fp32, slices x the weight) from PyTorch's caching allocator.

#include "cuda/conv2d_igemm_fp32_bwd_cuda.h"

#include <ATen/ops/empty.h>

#include <string>

#include "core/igemm_fp32_bwd.h"
#include "cuda/conv2d_igemm_fp32.h"
#include "cuda/conv2d_igemm_fp32_wgrad.h"
#include "cuda/conv2d_igemm_tc.h"  // igemm_tc_sm_count
#include "cuda/cuda_glue.h"
#include "cuda/device_context.h"
#include "cuda/dgrad_weight.h"
#include "cuda/tensor_core_switch.h"

namespace cnnkern {
namespace {

std::string fp32_core_dtype_why_not(at::ScalarType dtype, bool allow_tf32) {
  if (dtype != at::kFloat) return "the fp32 core kernels are float32 only";
  if (allow_tf32) return "TF32 is allowed (float32 runs on the general kernel's TF32 mma path)";
  if (tensor_cores_disabled())
    return "CNNKERN_IGEMM_SIMT=1 keeps float32's backward on the general kernel";
  return "";
}

}  // namespace

std::string igemm_fp32_dgrad_why_not(const Conv2dProblem& p, at::ScalarType dtype,
                                     bool allow_tf32) {
  const std::string no = fp32_core_dtype_why_not(dtype, allow_tf32);
  return no.empty() ? igemm32::dgrad_why_not(p) : no;
}

std::string igemm_fp32_wgrad_why_not(const Conv2dProblem& p, at::ScalarType dtype,
                                     bool allow_tf32) {
  const std::string no = fp32_core_dtype_why_not(dtype, allow_tf32);
  return no.empty() ? igemm32::wgrad_why_not(p) : no;
}

Conv2dWorkspace igemm_fp32_backward_workspace(const Conv2dProblem& p, ConvPass pass) {
  Conv2dWorkspace ws;
  if (pass == ConvPass::BackwardInput) {
    if (!igemm_fp32_dgrad_why_not(p, at::kFloat, false).empty()) return ws;
    const igemm32::Schedule s = igemm32::make_schedule(dgrad_problem(p), igemm_tc_sm_count());
    ws.per_call = (p.weight_numel() * (p.groups == 1 ? 1 : 2) + s.workspace_elems()) * 4;
    ws.what = std::string("fp32 GEMM core kernel (the forward on the flipped, transposed "
                          "weight; stride 1; ") + s.reason + ", " + std::to_string(s.splits) +
              " split" + (s.splits > 1 ? "s" : "") + "); bytes: the re-laid weight" +
              (s.splits > 1 ? " and split-K fp32 partial sums" : "");
    return ws;
  }
  if (!igemm_fp32_wgrad_why_not(p, at::kFloat, false).empty()) return ws;
  const igemm32::WgradPlan pl = igemm32::make_wgrad_plan(p, igemm_tc_sm_count());
  ws.per_call = pl.workspace_elems(p) * 4;
  ws.what = "fp32 GEMM core grad-weight kernel (NCHW, " + std::to_string(pl.bm) +
            "x128x8 tiles" + (pl.bm < 128 ? " (K/groups <= 64)" : "") +
            ", 4-byte cp.async gathers; " + std::to_string(pl.tiles_m * pl.tiles_n * p.groups) + " tiles x " +
            std::to_string(pl.splits) + " split" + (pl.splits > 1 ? "s" : "") +
            (pl.splits > 1 ? "); bytes: split-K fp32 partial sums" : "); no workspace");
  return ws;
}

at::Tensor igemm_fp32_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                     const Conv2dProblem& p) {
  const at::Tensor dy = grad_output.contiguous();
  const at::Tensor w = dgrad_weight(weight, p.groups).contiguous();
  at::Tensor dx = at::empty({p.N, p.C, p.H, p.W}, dy.options());
  if (dx.numel() == 0) return dx;
  const Conv2dProblem dp = dgrad_problem(p);
  const igemm32::Schedule s = igemm32::make_schedule(dp, igemm_tc_sm_count());
  at::Tensor ws;  // split-K partial sums
  if (s.workspace_elems() > 0) ws = at::empty({s.workspace_elems()}, dy.options());
  CNNKERN_CUDA_CHECK(launch_igemm_fp32_forward(
      dp, s, dy.const_data_ptr<float>(), w.const_data_ptr<float>(), nullptr,
      /*relu=*/false, dx.mutable_data_ptr<float>(),
      ws.defined() ? ws.mutable_data_ptr<float>() : nullptr, current_cuda_stream()));
  return dx;
}

at::Tensor igemm_fp32_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                      const Conv2dProblem& p) {
  const at::Tensor dy = grad_output.contiguous(), x = input.contiguous();
  at::Tensor gw = at::empty({p.K, p.C_per_group(), p.R, p.S}, x.options());
  if (gw.numel() == 0) return gw;
  const igemm32::WgradPlan pl = igemm32::make_wgrad_plan(p, igemm_tc_sm_count());
  at::Tensor ws;
  if (pl.splits > 1) ws = at::empty({pl.workspace_elems(p)}, x.options());
  CNNKERN_CUDA_CHECK(launch_igemm_fp32_wgrad(
      p, pl, dy.const_data_ptr<float>(), x.const_data_ptr<float>(), gw.mutable_data_ptr<float>(),
      ws.defined() ? ws.mutable_data_ptr<float>() : nullptr, current_cuda_stream()));
  return gw;
}

}  // namespace cnnkern
