// Implicit-GEMM convolution on CUDA: fprop, dgrad (gather form) and wgrad (deterministic
// split-K), one SIMT kernel template per pass. The gathers, tile schedule and split-K plan are
// in common/implicit_gemm.h (tested on the CPU through an emulation of the same loop); this
// file only supplies the GPU side of that loop: a block of 256 threads, __syncthreads, __ldg
// loads converted to the accumulator type, and the epilogues.
//
// Double buffering is register-staged (each thread's next-tile loads are in flight during
// the current tile's FMAs): the gathers are element-wise with zero-fill for padding and
// stride holes, so there is no aligned 16-byte run for cp.async to copy.

#include "cuda/conv2d_implicit_gemm.h"

#include "common/implicit_gemm.h"
#include "cuda/kernel_utils.cuh"

namespace cnnkern {
namespace {

using namespace cuda_detail;
using igemm::Plan;
using igemm::Tile;

// The calling thread alone; see block_mainloop in common/implicit_gemm.h.
struct GpuExec {
  __device__ int begin() const { return static_cast<int>(threadIdx.x); }
  __device__ int end() const { return static_cast<int>(threadIdx.x) + 1; }
  __device__ static constexpr int slot(int) { return 0; }
  __device__ void sync() const { __syncthreads(); }
};

template <class T>
struct GpuCvt {
  __device__ static acc_t<T> load(const T* base, int64_t off) { return ldg_acc(base + off); }
};

template <class T>
struct OutputEpilogue {  // fprop / dgrad / wgrad without split: convert and store
  T* out;
  const T* bias;  // indexed by the map's channel(); nullptr for none
  bool relu;
  __device__ void operator()(int64_t off, int64_t channel, acc_t<T> v) const {
    if (bias != nullptr) v += ldg_acc(bias + channel);
    if (relu) v = v < acc_t<T>(0) ? acc_t<T>(0) : v;  // NaN stays NaN, as in torch.relu
    out[off] = from_acc<T>(v);
  }
};

template <class A>
struct WorkspaceEpilogue {  // wgrad split s: raw partial sums into workspace row s
  A* ws;
  __device__ void operator()(int64_t off, int64_t, A v) const { ws[off] = v; }
};

// grid: x = m tile, y = n tile, z = group * splits + split.
template <class T, class Map>
__global__ void __launch_bounds__(Tile::kThreads)
    igemm_kernel(const Conv2dProblem p, const Plan pl, const T* __restrict__ a_src,
                 const T* __restrict__ b_src, const T* __restrict__ bias, bool relu,
                 T* __restrict__ out, acc_t<T>* __restrict__ ws) {
  using A = acc_t<T>;
  __shared__ igemm::SharedTiles<A> sm;
  igemm::ThreadState<A> st[1];
  const int64_t z = blockIdx.z;
  const int64_t g = z / pl.splits, split = z % pl.splits;
  const Map map(p, g);
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * Tile::BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * Tile::BN;
  const GpuExec ex;
  igemm::block_mainloop<GpuCvt<T>>(ex, map, a_src, b_src, m0, n0, pl.k_begin(split),
                                   pl.k_end(split), sm, st);
  const int t = static_cast<int>(threadIdx.x);
  if (ws != nullptr) {
    WorkspaceEpilogue<A> e{ws + split * pl.groups * pl.M * pl.N};
    igemm::block_epilogue(map, m0, n0, t, st[0], e);
  } else {
    OutputEpilogue<T> e{out, bias, relu};
    igemm::block_epilogue(map, m0, n0, t, st[0], e);
  }
}

// out[e] = sum over splits s = 0, 1, ... (in that order) of ws[s * numel + e].
template <class T>
__global__ void splitk_reduce_kernel(const acc_t<T>* __restrict__ ws, int64_t splits,
                                     int64_t numel, T* __restrict__ out) {
  for (int64_t e = global_thread_id(); e < numel; e += global_thread_count()) {
    acc_t<T> acc = ws[e];
    for (int64_t s = 1; s < splits; ++s) acc += ws[s * numel + e];
    out[e] = from_acc<T>(acc);
  }
}

template <class Map, class T>
cudaError_t launch_pass(const Conv2dProblem& p, const Plan& pl, const T* a_src, const T* b_src,
                        const T* bias, bool relu, T* out, acc_t<T>* ws, cudaStream_t stream) {
  if (igemm::plan_why_not(pl)[0] != '\0') return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(pl.tiles_m), static_cast<unsigned>(pl.tiles_n),
                  static_cast<unsigned>(pl.grid_z()));
  igemm_kernel<T, Map><<<grid, Tile::kThreads, 0, stream>>>(p, pl, a_src, b_src, bias, relu,
                                                             out, ws);
  return cudaGetLastError();
}

}  // namespace

const char* igemm_cuda_why_not(const Conv2dProblem& p) {
  const char* r = igemm::plan_why_not(igemm::make_plan<igemm::FpropMap>(p));
  if (r[0] != '\0') return r;
  r = igemm::plan_why_not(igemm::make_plan<igemm::DgradMap>(p));
  if (r[0] != '\0') return r;
  return igemm::plan_why_not(igemm::make_plan<igemm::WgradMap>(p));
}

cudaError_t launch_igemm_forward(CudaDType dt, const Conv2dProblem& p, const void* input,
                                 const void* weight, const void* bias, bool relu, void* output,
                                 cudaStream_t stream) {
  if (p.output_numel() == 0) return cudaSuccess;
  const Plan pl = igemm::make_plan<igemm::FpropMap>(p);
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return launch_pass<igemm::FpropMap, T>(p, pl, static_cast<const T*>(input),
                                        static_cast<const T*>(weight),
                                        static_cast<const T*>(bias), relu,
                                        static_cast<T*>(output), nullptr, stream);
  });
}

cudaError_t launch_igemm_backward_input(CudaDType dt, const Conv2dProblem& p,
                                        const void* grad_output, const void* weight,
                                        void* grad_input, cudaStream_t stream) {
  if (p.input_numel() == 0) return cudaSuccess;
  const Plan pl = igemm::make_plan<igemm::DgradMap>(p);
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return launch_pass<igemm::DgradMap, T>(p, pl, static_cast<const T*>(grad_output),
                                        static_cast<const T*>(weight), nullptr, false,
                                        static_cast<T*>(grad_input), nullptr, stream);
  });
}

size_t igemm_backward_weight_workspace_bytes(CudaDType dt, const Conv2dProblem& p) {
  const Plan pl = igemm::make_plan<igemm::WgradMap>(p);
  const size_t acc_bytes = dt == CudaDType::Double ? sizeof(double) : sizeof(float);
  return static_cast<size_t>(pl.workspace_elems()) * acc_bytes;
}

cudaError_t launch_igemm_backward_weight(CudaDType dt, const Conv2dProblem& p,
                                         const void* grad_output, const void* input,
                                         void* grad_weight, void* workspace,
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
                                          nullptr, stream);
    }
    A* ws = static_cast<A*>(workspace);
    cudaError_t err = launch_pass<igemm::WgradMap, T>(p, pl, static_cast<const T*>(grad_output),
                                                   static_cast<const T*>(input), nullptr, false,
                                                   gw, ws, stream);
    if (err != cudaSuccess) return err;
    const int64_t numel = p.weight_numel();
    splitk_reduce_kernel<T><<<blocks_for(numel), kThreads, 0, stream>>>(ws, pl.splits, numel, gw);
    return cudaGetLastError();
  });
}

}  // namespace cnnkern
