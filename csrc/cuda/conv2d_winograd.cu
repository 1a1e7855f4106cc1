// Winograd F(m x m, 3x3) convolution on CUDA, m = 2 or 4: input-transform kernel -> one
// batched GEMM launch for the a*a*groups Winograd-domain GEMMs (float32 and the half types:
// the fp32 GEMM core, cuda/gemm_fp32.h; float64: the implicit-GEMM tile loop of algo "im2col",
// cuda/implicit_gemm_kernel.cuh) -> output-transform kernel with the bias. The filter
// transform is a launch of its own (launch_winograd_filter), whose result the glue can cache per
// weight version (cuda/winograd_filter_cache.h, opt-in). The batch is processed in chunks
// so the workspace stays bounded (wino_gemm::kMaxChunkElems). All stage math is in
// core/winograd_gemm.h; the transforms in core/winograd.h. Everything accumulates in fp32
// (fp64 for float64); float16/bfloat16 are converted on load and rounded once on store.

#include "cuda/conv2d_winograd.h"

#include <type_traits>

#include "core/winograd_gemm.h"
#include "cuda/gemm_fp32.h"
#include "cuda/implicit_gemm_kernel.cuh"

namespace cnnkern {
namespace {

using namespace cuda_detail;
using igemm_cuda::GpuCvt;
using igemm_cuda::OutputEpilogue;
using wino_gemm::Geom;

template <int M, class T>
__global__ void wino_input_kernel(const Conv2dProblem q, const Geom<M> gm,
                                  const T* __restrict__ x, acc_t<T>* __restrict__ V) {
  const int64_t total = q.C * gm.T;
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count())
    wino_gemm::input_item<M, acc_t<T>, GpuCvt<T>>(q, gm, x, V, i);
}

template <int M, class T>
__global__ void wino_filter_kernel(const Conv2dProblem q, const T* __restrict__ w, bool flipped,
                                   acc_t<T>* __restrict__ U) {
  const int64_t total = q.K * q.C_per_group();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count())
    wino_gemm::filter_item<M, acc_t<T>, GpuCvt<T>>(q, w, flipped, U, i);
}

template <int M, class T>
__global__ void wino_output_kernel(const Conv2dProblem q, const Geom<M> gm,
                                   const acc_t<T>* __restrict__ Mo, const T* __restrict__ bias,
                                   bool relu, T* __restrict__ y) {
  OutputEpilogue<T> out{y, bias, relu};
  const int64_t total = q.N * q.K * gm.TH * gm.TW;
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count())
    wino_gemm::output_item<M>(q, gm, Mo, i, out);
}

// Buffer sizes in accumulator elements, each rounded up to 64 (256-byte aligned for float):
// U (its own buffer), then V and Mo in the workspace.
struct Layout {
  int64_t u = 0, v = 0, mo = 0, images = 0;
  int64_t workspace() const { return v + mo; }
};
int64_t round64(int64_t n) { return (n + 63) / 64 * 64; }

template <int M>
Layout layout_for(const Conv2dProblem& q) {
  constexpr int aa = Geom<M>::aa;
  Layout l;
  l.images = wino_gemm::images_per_chunk<M>(q, wino_gemm::kMaxChunkElems);
  Conv2dProblem qc = q;
  qc.N = l.images;
  const Geom<M> gm(qc);
  l.u = round64(aa * q.K * q.C_per_group());
  l.v = round64(aa * q.C * gm.T);
  l.mo = round64(aa * q.K * gm.T);
  return l;
}

template <int M>
const char* why_not_m(const Conv2dProblem& p) {
  for (const Conv2dProblem& q : {p, wino_gemm::turned_problem(p)}) {
    Conv2dProblem qc = q;
    qc.N = wino_gemm::images_per_chunk<M>(q, wino_gemm::kMaxChunkElems);
    const Geom<M> gm(qc);
    const wino_gemm::GemmParams wp = wino_gemm::gemm_params<M>(qc, gm);
    // float32 / half types: the fp32 core; float64: the implicit-GEMM plan.
    const char* r = gemm_fp32_why_not(wino_gemm::gemm_desc(wp));
    if (r[0] == '\0') r = igemm::plan_why_not(igemm::make_plan<wino_gemm::GemmMap>(wp));
    if (r[0] != '\0') return r;
  }
  return "";
}

template <int M, class T>
cudaError_t run_filter(const Conv2dProblem& q, bool flipped, const T* w, acc_t<T>* U,
                       cudaStream_t stream) {
  wino_filter_kernel<M, T><<<blocks_for(q.K * q.C_per_group()), kThreads, 0, stream>>>(
      q, w, flipped, U);
  return cudaGetLastError();
}

template <int M, class T>
cudaError_t run(const Conv2dProblem& q, const T* x, const acc_t<T>* U, const T* bias, bool relu,
                T* y, void* workspace, cudaStream_t stream) {
  using A = acc_t<T>;
  const Layout l = layout_for<M>(q);
  A* V = static_cast<A*>(workspace);
  A* Mo = V + l.v;
  cudaError_t err = cudaSuccess;
  for (int64_t n0 = 0; n0 < q.N; n0 += l.images) {
    Conv2dProblem qc = q;
    qc.N = q.N - n0 < l.images ? q.N - n0 : l.images;
    const Geom<M> gm(qc);
    wino_input_kernel<M, T><<<blocks_for(qc.C * gm.T), kThreads, 0, stream>>>(
        qc, gm, x + n0 * q.C * q.H * q.W, V);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
    const wino_gemm::GemmParams wp = wino_gemm::gemm_params<M>(qc, gm);
    // The Winograd-domain GEMMs stay exact fp32 (no TF32): TF32 rounding would add to the
    // transforms' own error (the TF32 flag reaches only this algorithm's grad-weight).
    if constexpr (std::is_same<A, float>::value) {
      err = launch_gemm_fp32(wino_gemm::gemm_desc(wp), U, V, Mo, stream);
    } else {
      const igemm::Plan pl = igemm::make_plan<wino_gemm::GemmMap>(wp);
      err = igemm_cuda::launch_pass<wino_gemm::GemmMap, A>(wp, pl, V, U, nullptr, false, Mo,
                                                           nullptr, /*tf32=*/false, stream);
    }
    if (err != cudaSuccess) return err;
    wino_output_kernel<M, T><<<blocks_for(qc.N * qc.K * gm.TH * gm.TW), kThreads, 0, stream>>>(
        qc, gm, Mo, bias, relu, y + n0 * q.K * q.P * q.Q);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace

const char* winograd_cuda_why_not(int m, const Conv2dProblem& p) {
  return m == 2 ? why_not_m<2>(p) : why_not_m<4>(p);
}

namespace {
Layout layout_of(int m, const Conv2dProblem& p, bool grad_input) {
  const Conv2dProblem q = grad_input ? wino_gemm::turned_problem(p) : p;
  return m == 2 ? layout_for<2>(q) : layout_for<4>(q);
}
size_t acc_bytes(CudaDType dt) { return dt == CudaDType::Double ? sizeof(double) : sizeof(float); }
}  // namespace

size_t winograd_filter_bytes(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input) {
  return static_cast<size_t>(layout_of(m, p, grad_input).u) * acc_bytes(dt);
}

size_t winograd_workspace_bytes(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input) {
  return static_cast<size_t>(layout_of(m, p, grad_input).workspace()) * acc_bytes(dt);
}

cudaError_t launch_winograd_filter(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input,
                                   const void* weight, void* U, cudaStream_t stream) {
  const Conv2dProblem q = grad_input ? wino_gemm::turned_problem(p) : p;
  if (q.K * q.C_per_group() == 0) return cudaSuccess;
  if (U == nullptr || (m != 2 && m != 4)) return cudaErrorInvalidValue;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* w = static_cast<const T*>(weight);
    acc_t<T>* u = static_cast<acc_t<T>*>(U);
    return m == 2 ? run_filter<2, T>(q, grad_input, w, u, stream)
                  : run_filter<4, T>(q, grad_input, w, u, stream);
  });
}

cudaError_t launch_winograd(CudaDType dt, int m, const Conv2dProblem& p, bool grad_input,
                            const void* src, const void* U, const void* bias, bool relu,
                            void* dst, void* workspace, cudaStream_t stream) {
  const Conv2dProblem q = grad_input ? wino_gemm::turned_problem(p) : p;
  if (q.output_numel() == 0) return cudaSuccess;
  if (workspace == nullptr || U == nullptr || (m != 2 && m != 4)) return cudaErrorInvalidValue;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = static_cast<const T*>(src);
    const acc_t<T>* u = static_cast<const acc_t<T>*>(U);
    const T* b = static_cast<const T*>(bias);
    T* y = static_cast<T*>(dst);
    return m == 2 ? run<2, T>(q, x, u, b, relu, y, workspace, stream)
                  : run<4, T>(q, x, u, b, relu, y, workspace, stream);
  });
}

}  // namespace cnnkern
