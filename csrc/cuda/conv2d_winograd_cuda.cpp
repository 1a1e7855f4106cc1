// Registers the CUDA Winograd convolutions ("winograd" = F(4x4,3x3), "winograd_f2" =
// F(2x2,3x3)) and glues at::Tensor to conv2d_winograd.cu. grad-weight is the implicit GEMM's
// (exact summation order does not matter to Winograd's accuracy there). Inputs arrive
// contiguous NCHW on the current (guarded) device. The forward applies the registry's epilogue
// (bias, then ReLU if asked) in the output transform.

#include <ATen/ops/empty.h>

#include <algorithm>
#include <string>

#include "ops/conv2d_algo.h"
#include "cuda/conv2d_implicit_gemm.h"
#include "cuda/conv2d_implicit_gemm_cuda.h"
#include "cuda/conv2d_winograd.h"
#include "cuda/cuda_glue.h"
#include "cuda/device_context.h"
#include "cuda/winograd_filter_cache.h"

namespace cnnkern {
namespace {


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

at::Tensor workspace(const at::Tensor& like, size_t bytes) {
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

template <int M>
at::Tensor forward(const at::Tensor& input, const at::Tensor& weight,
                   const c10::optional<at::Tensor>& bias, const Conv2dProblem& p,
                   const Conv2dEpilogue& epi, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor output = at::empty({p.N, p.K, p.P, p.Q}, input.options());
  if (output.numel() == 0) return output;
  const CudaDType dt = cuda_dtype_of(input);
  at::Tensor ws = workspace(input, winograd_workspace_bytes(dt, M, p, false));
  const at::Tensor U = winograd_filter(weight, M, p, /*grad_input=*/false);
  CNNKERN_CUDA_CHECK(launch_winograd(dt, M, p, /*grad_input=*/false, input.const_data_ptr(),
                                     U.const_data_ptr(),
                                     bias_data(bias), epi.relu,
                                     output.mutable_data_ptr(), ws.mutable_data_ptr(),
                                     current_cuda_stream()));
  return output;
}

template <int M>
at::Tensor backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                          const Conv2dProblem& p, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor grad_input = at::empty({p.N, p.C, p.H, p.W}, grad_output.options());
  if (grad_input.numel() == 0) return grad_input;
  const CudaDType dt = cuda_dtype_of(grad_output);
  at::Tensor ws = workspace(grad_output, winograd_workspace_bytes(dt, M, p, true));
  const at::Tensor U = winograd_filter(weight, M, p, /*grad_input=*/true);
  CNNKERN_CUDA_CHECK(launch_winograd(dt, M, p, /*grad_input=*/true, grad_output.const_data_ptr(),
                                     U.const_data_ptr(), nullptr, false,
                                     grad_input.mutable_data_ptr(), ws.mutable_data_ptr(),
                                     current_cuda_stream()));
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
  ws.per_call = static_cast<int64_t>(winograd_workspace_bytes(dt, M, p, gi) +
                                     winograd_filter_bytes(dt, M, p, gi));
  ws.what = "the input tiles and their products for one batch chunk (device memory, per "
            "call), and the transformed filters (kept across calls per weight version with "
            "CNNKERN_WINOGRAD_FILTER_CACHE=1)";
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
