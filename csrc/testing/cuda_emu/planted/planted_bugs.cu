// Tiny kernels with one planted bug each, and a correct twin where the bug is a wrong result,
// for the CUDA emulator's own tests (tests/internals/test_cuda_emu_engine.py): each bug must be caught,
// with a message that points here. Plain CUDA: nvcc would build this file as it is.

#include "testing/cuda_emu/planted/planted_bugs.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/implicit_gemm_kernel.cuh"

namespace cnnkern {
namespace planted {
namespace {

constexpr int kThreads = 64;

// Each thread stages its element in shared memory and reads its neighbour's. Without the
// barrier the neighbour may not have written yet: the result depends on the thread order.
__global__ void neighbour_kernel(const float* __restrict__ x, float* __restrict__ y,
                                 bool with_barrier) {
  __shared__ float s[kThreads];
  const int t = threadIdx.x;
  s[t] = x[t];
  if (with_barrier) __syncthreads();
  y[t] = s[(t + 1) % kThreads];
}

// Correct: reverses x through dynamic shared memory (the launch's third argument).
__global__ void reverse_dynamic_shared_kernel(const float* __restrict__ x, float* __restrict__ y) {
  extern __shared__ float buf[];
  const int t = threadIdx.x, n = blockDim.x;
  buf[t] = x[t];
  __syncthreads();
  y[t] = buf[n - 1 - t];
}

// Correct, and no bug: the engine's 3-D indexing, warp collectives and atomics on 6 blocks of
// 8 x 4 x 2 threads (two warps each), one output row per feature (see Bug::EngineFeatures).
__global__ void engine_features_kernel(const float* __restrict__ x, float* __restrict__ y) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned in_block = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
  const unsigned n = threads * gridDim.x * gridDim.y * gridDim.z;
  const unsigned g = block * threads + in_block;
  const unsigned full = 0xffffffffu;
  const float v = x[g];
  y[g] = static_cast<float>(g);
  float sum = v;
  for (int m = 16; m > 0; m /= 2) sum += __shfl_xor_sync(full, sum, m);
  y[n + g] = sum;
  float prefix = v;
  for (int d = 1; d < 32; d *= 2) {
    const float other = __shfl_up_sync(full, prefix, d);
    if (in_block % 32 >= static_cast<unsigned>(d)) prefix += other;
  }
  y[2 * n + g] = prefix;
  y[3 * n + g] = __shfl_sync(full, v, 5);
  __syncwarp();
  y[4 * n + g] = static_cast<float>(__popc(__ballot_sync(full, v > 0.0f)));
  y[5 * n + g] = static_cast<float>(__any_sync(full, v > 10.0f) + 2 * __all_sync(full, v > -10.0f));
  atomicAdd(&y[6 * n], v);
}

// Two halves of the block wait at two different __syncthreads.
__global__ void divergent_barrier_kernel(float* y) {
  const int t = threadIdx.x;
  if (t < kThreads / 2) {
    __syncthreads();
    y[t] = 1.0f;
  } else {
    __syncthreads();
    y[t] = 2.0f;
  }
}

// Only the lower half of the warp shuffles, but the mask names all 32 lanes.
__global__ void shuffle_missing_lanes_kernel(const float* __restrict__ x, float* __restrict__ y) {
  const int t = threadIdx.x;
  float v = x[t];
  if (t < 16) v = __shfl_down_sync(0xffffffffu, v, 1);
  y[t] = v;
}

// Declares at most 128 threads per block; launched with 256.
__global__ void __launch_bounds__(128) bounded_kernel(float* y) { y[threadIdx.x] = 1.0f; }

// Only the first half of the shared array is ever written before the block reads all of it.
__global__ void unwritten_shared_kernel(const float* __restrict__ x, float* __restrict__ y) {
  __shared__ float s[kThreads];
  const int t = threadIdx.x;
  if (t < kThreads / 2) s[t] = x[t];
  __syncthreads();
  y[t] = s[t];
}

// One warp, one m16n8k16 float16 mma: D (16 x 8) = A (16 x 16, row-major) * B (16 x 8, given
// as its 8 x 16 transpose, column-major B). The fragments follow the PTX tables (through the
// project's MmaShapeK16); `swap_a12` exchanges the second and third A registers, a classic
// slip in hand-written fragment code.
__global__ void mma_kernel(const float* __restrict__ a, const float* __restrict__ bt,
                           float* __restrict__ d, bool swap_a12) {
  using Shape = igemm::MmaShapeK16;
  using Op = igemm_cuda::MmaOp<__half>;
  const int lane = threadIdx.x;
  // Register q of a fragment holds elements 2q and 2q + 1; element e is at m[offset(e)].
  const auto pack = [lane](uint32_t* regs, int n, const float* m, auto offset) {
    for (int q = 0; q < n; ++q) {
      float v[2] = {m[offset(lane, 2 * q)], m[offset(lane, 2 * q + 1)]};
      regs[q] = Op::to_reg(v);
    }
  };
  uint32_t ar[4], br[2];
  pack(ar, 4, a, [](int l, int e) { int r, k; Shape::a_frag(l, e, r, k); return r * 16 + k; });
  pack(br, 2, bt, [](int l, int e) { int k, n; Shape::b_frag(l, e, k, n); return n * 16 + k; });
  if (swap_a12) {
    const uint32_t tmp = ar[1];
    ar[1] = ar[2];
    ar[2] = tmp;
  }
  float c[4] = {0.f, 0.f, 0.f, 0.f};
  Op::mma(c, ar, br);
  for (int j = 0; j < 4; ++j) {
    const int row = igemm::MmaLayout::row(lane, 0, j), col = igemm::MmaLayout::col(lane, 0, j);
    d[row * 8 + col] = c[j];
  }
}

// Thread 5 traps while the others wait at a barrier.
__global__ void trap_kernel(float* y) {
  const int t = threadIdx.x;
  if (t == 5) __trap();
  __syncthreads();
  y[t] = 1.0f;
}

// A 32-element shared array written by 64 threads: the upper half writes past its end.
__global__ void shared_past_end_kernel(const float* __restrict__ x, float* __restrict__ y) {
  __shared__ float s[kThreads / 2];
  const int t = threadIdx.x;
  s[t] = 2.0f * x[t];
  __syncthreads();
  y[t] = s[t % (kThreads / 2)];
}

// One thread per element of x (n of them); the last one reads past the end of x.
__global__ void read_past_end_kernel(const float* __restrict__ x, float* __restrict__ y, int n) {
  const int t = threadIdx.x;
  if (t < n) y[t] = x[t + 1];
}

// One thread per element of y (n of them); the last one writes past the end of y.
__global__ void write_past_end_kernel(const float* __restrict__ x, float* __restrict__ y, int n) {
  const int t = threadIdx.x;
  if (t < n) y[t + 1] = x[t];
}

// y = 3 x for 64 threads, through 2 KiB of static and the launch's dynamic shared memory
// (x staged in the first, 2 x in the second). `Opt` only makes the opted-in kernel another
// function, so that its attribute cannot leak into the no-opt-in cases.
template <int Opt>
__global__ void shared_budget_kernel(const float* __restrict__ x, float* __restrict__ y) {
  __shared__ float stat[512];
  extern __shared__ float dyn[];
  const int t = threadIdx.x;
  stat[t] = x[t];
  dyn[t] = 2.0f * x[t];
  __syncthreads();
  y[t] = stat[t] + dyn[t];
}

}  // namespace

cudaError_t launch(Bug bug, const float* x, const float* x2, float* y, int n) {
  switch (bug) {
    case Bug::MissingBarrier:
    case Bug::WithBarrier:
      neighbour_kernel<<<1, kThreads>>>(x, y, bug == Bug::WithBarrier);
      break;
    case Bug::DynamicSharedReverse:
      reverse_dynamic_shared_kernel<<<1, n, n * sizeof(float)>>>(x, y);
      break;
    case Bug::EngineFeatures:
      engine_features_kernel<<<dim3(2, 1, 3), dim3(8, 4, 2)>>>(x, y);
      break;
    case Bug::DivergentBarrier:
      divergent_barrier_kernel<<<1, kThreads>>>(y);
      break;
    case Bug::ShuffleMissingLanes:
      shuffle_missing_lanes_kernel<<<1, 32>>>(x, y);
      break;
    case Bug::AboveLaunchBounds:
      bounded_kernel<<<1, 256>>>(y);
      break;
    case Bug::WithinLaunchBounds:
      bounded_kernel<<<1, 128>>>(y);
      break;
    case Bug::UnwrittenShared:
      unwritten_shared_kernel<<<1, kThreads>>>(x, y);
      break;
    case Bug::MmaSwappedFragment:
    case Bug::MmaCorrect:
      mma_kernel<<<1, 32>>>(x, x2, y, bug == Bug::MmaSwappedFragment);
      break;
    case Bug::Trap:
      trap_kernel<<<1, kThreads>>>(y);
      break;
    case Bug::SharedPastEnd:
      shared_past_end_kernel<<<1, kThreads>>>(x, y);
      break;
    case Bug::ReadPastEnd:
      read_past_end_kernel<<<1, 32>>>(x, y, n);
      break;
    case Bug::SharedWithinDefault:
    case Bug::SharedAboveDefault:
      shared_budget_kernel<0><<<1, kThreads, n * sizeof(float)>>>(x, y);
      break;
    case Bug::SharedOptedIn:
    case Bug::SharedAboveOptIn: {
      const int opt_in = bug == Bug::SharedOptedIn ? n * static_cast<int>(sizeof(float)) : 64 * 1024;
      const cudaError_t err = cudaFuncSetAttribute(
          shared_budget_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, opt_in);
      if (err != cudaSuccess) return err;
      shared_budget_kernel<1><<<1, kThreads, n * sizeof(float)>>>(x, y);
      break;
    }
    case Bug::WritePastEnd:
      write_past_end_kernel<<<1, 32>>>(x, y, n);
      break;
  }
  return cudaGetLastError();
}

}  // namespace planted
}  // namespace cnnkern
