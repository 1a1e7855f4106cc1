#pragma once
// Launchers of the planted-bug kernels (planted_bugs.cu). Torch-free.

#include <cuda_runtime_api.h>

namespace cnnkern {
namespace planted {

enum class Bug {
  MissingBarrier,       // y[t] = x[t + 1 mod 64] through shared memory, no barrier (64 threads)
  WithBarrier,          // the same with the barrier: correct
  DynamicSharedReverse, // correct: y = x reversed through extern __shared__ (n threads)
  EngineFeatures,       // correct: 3-D grid (2,1,3) x block (8,4,2); for g = global thread id,
                        // n = 384: y[g] = g, y[n+g] warp sum of x, y[2n+g] warp inclusive
                        // prefix, y[3n+g] lane 5's x, y[4n+g] ballot count of x > 0,
                        // y[5n+g] any(x > 10) + 2 all(x > -10), y[6n] atomic sum of x
  DivergentBarrier,     // two __syncthreads for two halves of the block
  ShuffleMissingLanes,  // __shfl_down_sync(full mask) reached by 16 of 32 lanes
  AboveLaunchBounds,    // __launch_bounds__(128), 256 threads
  WithinLaunchBounds,   // the same kernel with 128 threads: fine
  UnwrittenShared,      // reads a shared array whose second half nobody wrote (64 threads)
  MmaSwappedFragment,   // m16n8k16 f16 with two A registers swapped: y = x (16x16) @ x2^T (8x16)^T
  MmaCorrect,           // the same with the PTX fragment layout
  Trap,                 // thread 5 of 64 calls __trap()
  SharedPastEnd,        // 64 threads store into a 32-element __shared__ array
  ReadPastEnd,          // y[t] = x[t + 1] for t < n = x.numel(): reads x[n]
  WritePastEnd,         // y[t + 1] = x[t] for t < n: writes y[n] (y has n elements)
  // Shared-memory budget: 64 threads, y[t] = 3 x[t] through 2 KiB of static shared memory
  // and a dynamic shared memory as large as x (d = 4 n bytes; x has n >= 64 elements):
  SharedWithinDefault,  // 2 KiB + d <= 48 KiB, no opt-in: fine
  SharedAboveDefault,   // 2 KiB + d > 48 KiB without cudaFuncSetAttribute: the launch fails
  SharedOptedIn,        // cudaFuncSetAttribute(MaxDynamicSharedMemorySize, d) first: fine
  SharedAboveOptIn,     // opted in to 64 KiB, launched with d > 64 KiB: the launch fails
};

// `n` is x's element count.
cudaError_t launch(Bug bug, const float* x, const float* x2, float* y, int n);

}  // namespace planted
}  // namespace cnnkern
