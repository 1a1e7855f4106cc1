// Implicit-GEMM convolution on CUDA: fprop, dgrad (gather form) and wgrad (deterministic
// split-K), one kernel template per pass and compute policy (SIMT FMAs, or mma.sync for
// float16/bfloat16 and for float32 with TF32 allowed). The gathers, tile schedule and split-K
// plan are in core/implicit_gemm.h (tested on the CPU through an emulation of the same
// loop); the GPU side of that loop is cuda/implicit_gemm_kernel.cuh; this file picks the pass
// and dtype.
//
// Double buffering is register-staged (each thread's next-tile loads are in flight during
// the current tile's FMAs): the gathers are element-wise with zero-fill for padding and
// stride holes, so there is no aligned 16-byte run for cp.async to copy.

#include "cuda/conv2d_implicit_gemm.h"

#include "cuda/implicit_gemm_kernel.cuh"

namespace cnnkern {

using igemm::Plan;
using igemm_cuda::launch_pass;
using igemm_cuda::splitk_reduce_kernel;
using cuda_detail::acc_t;
using cuda_detail::blocks_for;
using cuda_detail::dispatch_dtype;
using cuda_detail::kThreads;

const char* igemm_cuda_why_not(const Conv2dProblem& p) {
  const char* r = igemm::index32_why_not(p);
  if (r[0] != '\0') return r;
  r = igemm::plan_why_not(igemm::make_plan<igemm::FpropMap>(p));
  if (r[0] != '\0') return r;
  r = igemm::plan_why_not(igemm::make_plan<igemm::DgradMap>(p));
  if (r[0] != '\0') return r;
  return igemm::plan_why_not(igemm::make_plan<igemm::WgradMap>(p));
}

cudaError_t launch_igemm_forward(CudaDType dt, const Conv2dProblem& p, const void* input,
                                 const void* weight, const void* bias, bool relu, void* output,
                                 bool allow_tf32, cudaStream_t stream) {
  if (p.output_numel() == 0) return cudaSuccess;
  // (float32 without TF32 on the fp32 GEMM core's kernel is routed by the glue, which owns its
  // split-K workspace: conv2d_implicit_gemm_cuda.cpp.)
  const Plan pl = igemm::make_plan<igemm::FpropMap>(p);
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return launch_pass<igemm::FpropMap, T>(p, pl, static_cast<const T*>(input),
                                           static_cast<const T*>(weight),
                                           static_cast<const T*>(bias), relu,
                                           static_cast<T*>(output), nullptr, allow_tf32,
                                           stream);
  });
}

cudaError_t launch_igemm_backward_input(CudaDType dt, const Conv2dProblem& p,
                                        const void* grad_output, const void* weight,
                                        void* grad_input, bool allow_tf32, cudaStream_t stream) {
  if (p.input_numel() == 0) return cudaSuccess;
  const Plan pl = igemm::make_plan<igemm::DgradMap>(p);
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return launch_pass<igemm::DgradMap, T>(p, pl, static_cast<const T*>(grad_output),
                                           static_cast<const T*>(weight), nullptr, false,
                                           static_cast<T*>(grad_input), nullptr, allow_tf32,
                                           stream);
  });
}

size_t igemm_backward_weight_workspace_bytes(CudaDType dt, const Conv2dProblem& p) {
  const Plan pl = igemm::make_plan<igemm::WgradMap>(p);
  const size_t acc_bytes = dt == CudaDType::Double ? sizeof(double) : sizeof(float);
  return static_cast<size_t>(pl.workspace_elems()) * acc_bytes;
}

cudaError_t launch_igemm_backward_weight(CudaDType dt, const Conv2dProblem& p,
                                         const void* grad_output, const void* input,
                                         void* grad_weight, void* workspace, bool allow_tf32,
                                         cudaStream_t stream) {
  if (p.weight_numel() == 0) return cudaSuccess;
  const Plan pl = igemm::make_plan<igemm::WgradMap>(p);
  if (pl.splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    T* gw = static_cast<T*>(grad_weight);
    if (pl.splits == 1) {
      return launch_pass<igemm::WgradMap, T>(p, pl, static_cast<const T*>(grad_output),
                                          static_cast<const T*>(input), nullptr, false, gw,
                                          nullptr, allow_tf32, stream);
    }
    A* ws = static_cast<A*>(workspace);
    cudaError_t err = launch_pass<igemm::WgradMap, T>(p, pl, static_cast<const T*>(grad_output),
                                                   static_cast<const T*>(input), nullptr, false,
                                                   gw, ws, allow_tf32, stream);
    if (err != cudaSuccess) return err;
    const int64_t numel = p.weight_numel();
    splitk_reduce_kernel<T><<<blocks_for(numel), kThreads, 0, stream>>>(ws, pl.splits, numel, gw);
    return cudaGetLastError();
  });
}

}  // namespace cnnkern
