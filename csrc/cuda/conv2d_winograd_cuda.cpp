// Registers the CUDA Winograd convolutions ("winograd" = F(4x4,3x3), "winograd_f2" =
// F(2x2,3x3)) and glues at::Tensor to the kernels: the fused one (conv2d_winograd_fused.cu) for
// float32/float16/bfloat16, forward and grad-input, every shape whose grid fits; the unfused
// stages (conv2d_winograd.cu) for float64 and under CNNKERN_WINOGRAD_UNFUSED=1. grad-weight is the implicit GEMM's
// (exact summation order does not matter to Winograd's accuracy there). Inputs arrive
// contiguous NCHW on the current (guarded) device. The forward applies the registry's epilogue
// (bias, then ReLU if asked) in the output transform.

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ops/conv2d_algo.h"
#include "cuda/conv2d_implicit_gemm.h"
#include "cuda/conv2d_implicit_gemm_cuda.h"
#include "cuda/conv2d_winograd.h"
#include "cuda/conv2d_winograd_fused.h"
#include "cuda/cuda_glue.h"
#include "cuda/device_context.h"
#include "cuda/winograd_filter_cache.h"

namespace cnnkern {
namespace {

// Whether a call runs the fused kernel (conv2d_winograd_fused.h): float32/float16/bfloat16
// unless CNNKERN_WINOGRAD_UNFUSED=1 (read at every call: a switch to compare the two paths and
// to keep the unfused one tested); float64 always runs the unfused kernels.
bool fused(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input) {
  const char* v = std::getenv("CNNKERN_WINOGRAD_UNFUSED");
  if (v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0) return false;
  return winograd_fused_why_not(dt, m, p, grad_input)[0] == '\0';
}

// The device workspace of a call: none for the fused kernel.
size_t workspace_bytes(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input) {
  return fused(dt, m, p, grad_input) ? 0 : winograd_workspace_bytes(dt, m, p, grad_input);
}

// The forward (grad_input = false) or grad-input pass on the fused or unfused path.
void launch(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input, const at::Tensor& src,
            const at::Tensor& U, const void* bias, bool relu, at::Tensor& dst) {
  if (fused(dt, m, p, grad_input)) {
    CNNKERN_CUDA_CHECK(launch_winograd_fused(dt, m, p, grad_input, src.const_data_ptr(),
                                             U.const_data_ptr(), bias, relu,
                                             dst.mutable_data_ptr(), current_cuda_stream()));
    return;
  }
  at::Tensor ws = at::empty({static_cast<int64_t>(winograd_workspace_bytes(dt, m, p, grad_input))},
                            src.options().dtype(at::kByte));
  CNNKERN_CUDA_CHECK(launch_winograd(dt, m, p, grad_input, src.const_data_ptr(),
                                     U.const_data_ptr(), bias, relu, dst.mutable_data_ptr(),
                                     ws.mutable_data_ptr(), current_cuda_stream()));
}

template <int M>
const char* name() {
  return M == 4 ? "winograd" : "winograd_f2";
}

// The Winograd shape rule every backend shares, the CUDA dtypes and the CUDA grid limits.
template <int M>
std::string why_not(const Conv2dProblem& p, at::ScalarType dtype) {
  const std::string shape = winograd_shape_why_not(name<M>(), p);
  if (!shape.empty()) return shape;
  const auto dtypes = cuda_kernel_dtypes();
  if (std::find(dtypes.begin(), dtypes.end(), dtype) == dtypes.end())
    return std::string(name<M>()) +
           " (CUDA) supports float32, float64, float16 and bfloat16; got " + c10::toString(dtype);
  const char* grid = winograd_cuda_why_not(M, p);
  if (grid[0] != '\0') return std::string(name<M>()) + " (CUDA): " + grid;
  grid = igemm_cuda_why_not(p);  // its grad-weight
  if (grid[0] != '\0') return std::string(name<M>()) + " (CUDA grad-weight): " + grid;
  return "";
}

template <int M>
at::Tensor forward(const at::Tensor& input, const at::Tensor& weight,
                   const c10::optional<at::Tensor>& bias, const Conv2dProblem& p,
                   const Conv2dEpilogue& epi, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor output = at::empty({p.N, p.K, p.P, p.Q}, input.options());
  if (output.numel() == 0) return output;
  const at::Tensor U = winograd_filter(weight, M, p, /*grad_input=*/false);
  launch(cuda_dtype_of(input), M, p, /*grad_input=*/false, input, U, bias_data(bias), epi.relu,
         output);
  return output;
}

template <int M>
at::Tensor backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                          const Conv2dProblem& p, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor grad_input = at::empty({p.N, p.C, p.H, p.W}, grad_output.options());
  if (grad_input.numel() == 0) return grad_input;
  const at::Tensor U = winograd_filter(weight, M, p, /*grad_input=*/true);
  launch(cuda_dtype_of(grad_output), M, p, /*grad_input=*/true, grad_output, U, nullptr, false,
         grad_input);
  return grad_input;
}

// forward / grad-input: winograd_workspace_bytes, what the passes above allocate; grad-weight
// is the implicit GEMM's.
template <int M>
Conv2dWorkspace wino_workspace(const Conv2dProblem& p, at::ScalarType dtype, ConvPass pass) {
  if (pass == ConvPass::BackwardWeight) return igemm_workspace(p, dtype, pass);
  Conv2dWorkspace ws;
  const CudaDType dt = cuda_dtype_for(dtype);
  const bool gi = pass == ConvPass::BackwardInput;
  ws.per_call = static_cast<int64_t>(workspace_bytes(dt, M, p, gi) +
                                     winograd_filter_bytes(dt, M, p, gi));
  const char* filters = "the transformed filters (kept across calls per weight version with "
                        "CNNKERN_WINOGRAD_FILTER_CACHE=1)";
  ws.what = fused(dt, M, p, gi)
                ? std::string("fused kernel (input transform in its tile loads, output transform "
                              "in its epilogue; no input tiles or products in device memory): ") +
                      filters
                : std::string("unfused kernels: the input tiles and their products for one "
                              "batch chunk (device memory, per call), and ") +
                      filters;
  return ws;
}

}  // namespace

// Below direct's 10, as on the CPU: Winograd trades accuracy for speed (F(4x4)'s float32 error
// is ~10x direct's), so "auto" takes it only once the H100 benchmark shows it pays.
// grad-weight is the implicit GEMM's (cuda/conv2d_implicit_gemm_cuda.h).
CONV2D_REGISTER_ALGO(Backend::CUDA,
                     Conv2dAlgo{"winograd", /*auto_priority=*/5, why_not<4>, forward<4>,
                                backward_input<4>, igemm_backward_weight, wino_workspace<4>});
CONV2D_REGISTER_ALGO(Backend::CUDA,
                     Conv2dAlgo{"winograd_f2", /*auto_priority=*/4, why_not<2>, forward<2>,
                                backward_input<2>, igemm_backward_weight, wino_workspace<2>});

}  // namespace cnnkern
