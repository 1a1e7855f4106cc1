// Registers the CUDA implicit-GEMM convolution as algo "im2col" (the same name as the CPU's
// explicit im2col + GEMM: the same mathematics, without the column buffer) and glues
// at::Tensor to the torch-free launchers in conv2d_implicit_gemm.cu. Inputs arrive contiguous
// NCHW on the current (guarded) device.
//
// The forward applies the registry's epilogue (bias, then ReLU if asked) as it stores. Every
// pass takes the call's Conv2dMath: float32 runs on the TF32 tensor cores when it allows TF32.

#include <ATen/ops/empty.h>

#include <algorithm>
#include <string>

#include "ops/conv2d_algo.h"
#include "cuda/conv2d_igemm_fp32.h"
#include "cuda/conv2d_igemm_fp32_bwd_cuda.h"
#include "cuda/conv2d_igemm_tc.h"
#include "cuda/conv2d_implicit_gemm.h"
#include "cuda/conv2d_igemm_tc_cuda.h"
#include "cuda/conv2d_implicit_gemm_cuda.h"
#include "cuda/cuda_glue.h"
#include "cuda/device_context.h"
#include "cuda/tensor_core_switch.h"

namespace cnnkern {
namespace {

std::string im2col_why_not(const Conv2dProblem& p, at::ScalarType dtype) {
  const auto dtypes = cuda_kernel_dtypes();
  if (std::find(dtypes.begin(), dtypes.end(), dtype) == dtypes.end())
    return std::string("im2col (CUDA) supports float32, float64, float16 and bfloat16; got ") +
           c10::toString(dtype);
  const char* grid = igemm_cuda_why_not(p);
  if (grid[0] != '\0') return std::string("im2col (CUDA): ") + grid;
  return "";
}

// float32 without TF32 (allowed and not switched off): the fp32 GEMM core's kernel
// (conv2d_igemm_fp32.cu), wherever its 32-bit offsets reach.
bool takes_fp32_core(const Conv2dProblem& p, at::ScalarType dtype, const Conv2dMath& math) {
  const bool tf32 = math.allow_tf32 && !tensor_cores_disabled();
  return dtype == at::kFloat && !tf32 && igemm_fp32_why_not(p)[0] == '\0';
}

// float16/bfloat16 with C % 8 == 0 and groups 1 run on the tensor-core kernel
// (conv2d_igemm_tc.cu: NHWC, cp.async, ldmatrix), and so does float32 with TF32 allowed and
// C % 4 == 0 (its m16n8k8 TF32 variant); float32 without TF32 on the fp32 core's (above);
// everything else on the general kernel below,
// which reads NCHW (a channels_last call is copied to it here).
at::Tensor im2col_forward(const at::Tensor& input_any, const at::Tensor& weight_any,
                          const c10::optional<at::Tensor>& bias, const Conv2dProblem& p,
                          const Conv2dEpilogue& epi, const Conv2dMath& math) {
  const bool tf32 = math.allow_tf32 && input_any.scalar_type() == at::kFloat;
  if (igemm_tc_why_not(p, input_any.scalar_type(), tf32).empty())
    return igemm_tc_forward(input_any, weight_any, bias, p, epi);
  const at::Tensor input = input_any.contiguous(), weight = weight_any.contiguous();
  at::Tensor output = at::empty({p.N, p.K, p.P, p.Q}, input.options());
  if (output.numel() == 0) return output;
  if (takes_fp32_core(p, input.scalar_type(), math)) {
    const igemm32::Schedule s = igemm32::make_schedule(p, igemm_tc_sm_count());
    at::Tensor ws;  // split-K partial sums, from PyTorch's caching allocator
    if (s.workspace_elems() > 0)
      ws = at::empty({s.workspace_elems()}, input.options().dtype(at::kFloat));
    CNNKERN_CUDA_CHECK(launch_igemm_fp32_forward(
        p, s, input.const_data_ptr<float>(), weight.const_data_ptr<float>(),
        static_cast<const float*>(bias_data(bias)), epi.relu, output.mutable_data_ptr<float>(),
        ws.defined() ? ws.mutable_data_ptr<float>() : nullptr, current_cuda_stream()));
    return output;
  }
  CNNKERN_CUDA_CHECK(launch_igemm_forward(cuda_dtype_of(input), p, input.const_data_ptr(),
                                          weight.const_data_ptr(),
                                          bias_data(bias),
                                          epi.relu, output.mutable_data_ptr(), math.allow_tf32,
                                          current_cuda_stream()));
  return output;
}

// float16/bfloat16 grad-input with stride 1 (and K % 8 == 0, groups 1) runs on the tensor-core
// forward kernel (conv2d_igemm_tc_bwd_cuda.cpp), float32's with stride 1 (TF32 off) on the fp32
// core's forward kernel (conv2d_igemm_fp32_bwd_cuda.cpp); strided ones on the general kernel's
// gather.
at::Tensor im2col_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                 const Conv2dProblem& p, const Conv2dMath& math) {
  if (igemm_tc_dgrad_why_not(p, grad_output.scalar_type()).empty())
    return igemm_tc_backward_input(grad_output, weight, p);
  if (igemm_fp32_dgrad_why_not(p, grad_output.scalar_type(), math.allow_tf32).empty())
    return igemm_fp32_backward_input(grad_output, weight, p);
  at::Tensor grad_input = at::empty({p.N, p.C, p.H, p.W}, grad_output.options());
  if (grad_input.numel() == 0) return grad_input;
  CNNKERN_CUDA_CHECK(launch_igemm_backward_input(
      cuda_dtype_of(grad_output), p, grad_output.const_data_ptr(), weight.const_data_ptr(),
      grad_input.mutable_data_ptr(), math.allow_tf32, current_cuda_stream()));
  return grad_input;
}

}  // namespace

CudaDType cuda_dtype_for(at::ScalarType dtype) {
  // cuda_dtype_of reads a tensor's dtype: an empty host tensor is one (no device touched).
  return cuda_dtype_of(at::empty({0}, at::TensorOptions().dtype(dtype)));
}

Conv2dWorkspace igemm_workspace(const Conv2dProblem& p, at::ScalarType dtype, ConvPass pass) {
  if (pass == ConvPass::Forward) {
    Conv2dWorkspace ws = igemm_tc_forward_workspace(p, dtype);
    // float32 (TF32 off) runs on the fp32 GEMM core's kernel where its offsets reach.
    if (dtype == at::kFloat && igemm_fp32_why_not(p)[0] == '\0') {
      const igemm32::Schedule s = igemm32::make_schedule(p, igemm_tc_sm_count());
      // With TF32 allowed: the tensor-core kernel's TF32 variant where it takes the problem.
      const Conv2dWorkspace tf32 = igemm_tc_forward_workspace(p, dtype, /*allow_tf32=*/true);
      ws.what = std::string("fp32 GEMM core kernel (NCHW, 4-byte cp.async gathers, ") +
                s.reason + ", " + std::to_string(s.splits) + " split" +
                (s.splits > 1 ? "s: fp32 partial sums in device memory, per call" : "") +
                ") unless TF32 is allowed (then the " + tf32.what + ")";
      ws.per_call = std::max<int64_t>(s.workspace_elems() * 4, tf32.per_call);
    }
    return ws;
  }
  // float32 (TF32 off) on the fp32 GEMM core's kernels where they take the problem.
  if (dtype == at::kFloat) {
    Conv2dWorkspace ws = igemm_fp32_backward_workspace(p, pass);
    if (!ws.what.empty()) {
      ws.what += " unless TF32 is allowed (then the general implicit-GEMM kernel)";
      return ws;
    }
  }
  if (pass == ConvPass::BackwardInput) return igemm_tc_backward_workspace(p, dtype, pass);
  const std::string no_tc = igemm_tc_wgrad_why_not(p, dtype);
  if (no_tc.empty()) return igemm_tc_backward_workspace(p, dtype, pass);
  Conv2dWorkspace ws;
  ws.per_call =
      static_cast<int64_t>(igemm_backward_weight_workspace_bytes(cuda_dtype_for(dtype), p));
  ws.what = "general implicit-GEMM kernel (" + no_tc + "): " +
            (ws.per_call > 0 ? "grad-weight's split-K partial sums (device memory, per call)"
                             : "none: grad-weight is not split along K here");
  return ws;
}

// float16/bfloat16 with C % 8 == 0, K % 8 == 0 and groups 1: the tensor-core grad-weight
// kernel (conv2d_igemm_tc_wgrad.cu); float32 (TF32 off): the fp32 core's grad-weight kernel
// (conv2d_igemm_fp32_wgrad.cu); also under the Winograd algorithms that register this.
at::Tensor igemm_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                 const Conv2dProblem& p, const Conv2dMath& math) {
  if (igemm_tc_wgrad_why_not(p, grad_output.scalar_type()).empty())
    return igemm_tc_backward_weight(grad_output, input, p);
  if (igemm_fp32_wgrad_why_not(p, grad_output.scalar_type(), math.allow_tf32).empty())
    return igemm_fp32_backward_weight(grad_output, input, p);
  at::Tensor grad_weight = at::empty({p.K, p.C_per_group(), p.R, p.S}, grad_output.options());
  if (grad_weight.numel() == 0) return grad_weight;
  const CudaDType dt = cuda_dtype_of(grad_output);
  // Split-K partial sums, from PyTorch's caching allocator (bytes as a uint8 tensor).
  const size_t ws_bytes = igemm_backward_weight_workspace_bytes(dt, p);
  at::Tensor ws;
  if (ws_bytes > 0)
    ws = at::empty({static_cast<int64_t>(ws_bytes)}, grad_output.options().dtype(at::kByte));
  CNNKERN_CUDA_CHECK(launch_igemm_backward_weight(dt, p, grad_output.const_data_ptr(),
                                                  input.const_data_ptr(),
                                                  grad_weight.mutable_data_ptr(),
                                                  ws.defined() ? ws.mutable_data_ptr() : nullptr,
                                                  math.allow_tf32, current_cuda_stream()));
  return grad_weight;
}

// Priority 20, above direct's 10: the tiled GEMM reuses every loaded element 64 times where
// the direct kernel reuses none (the lead tunes this from the H100 benchmark).
static Conv2dAlgo im2col_algo() {
  Conv2dAlgo a{"im2col", /*auto_priority=*/20, im2col_why_not, im2col_forward,
               im2col_backward_input, igemm_backward_weight, igemm_workspace};
  a.forward_takes_channels_last = true;  // the tensor-core kernel reads NHWC
  return a;
}
CONV2D_REGISTER_ALGO(Backend::CUDA, im2col_algo());

}  // namespace cnnkern
