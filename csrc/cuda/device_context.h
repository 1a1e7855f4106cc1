#pragma once
// The one seam between the CUDA glue (cuda/*_cuda.cpp: op -> launcher) and the device it runs
// on: the current stream, the device guard and the launch-error check. On a GPU build these are
// torch's; in the CUDA emulator's build (CNNKERN_CUDA_EMU, csrc/testing/cuda_emu) the same glue
// runs against the emulator, so "what a GPU runs" is "what CI ran" from the op down.

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#if defined(CNNKERN_CUDA_EMU)

#include "cuda_emu/engine.h"

namespace cnnkern {

// Emulated launches are synchronous and ignore the stream.
inline cudaStream_t current_cuda_stream() { return nullptr; }

// One emulated device: nothing to make current.
struct CudaDeviceGuard {
  explicit CudaDeviceGuard(const at::Tensor&) {}
};

}  // namespace cnnkern

// A failed launch raises like C10_CUDA_CHECK, with the engine's account of what went wrong
// (which thread, barrier, lane or bound, and where).
#define CNNKERN_CUDA_CHECK(expr)                                                         \
  do {                                                                                   \
    const cudaError_t cnnkern_err_ = (expr);                                             \
    TORCH_CHECK(cnnkern_err_ == cudaSuccess, "CUDA error (emulated): ",                  \
                cudaGetErrorString(cnnkern_err_), ": ", ::cuda_emu::last_error_detail()); \
  } while (0)

#else

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

namespace cnnkern {

inline cudaStream_t current_cuda_stream() { return at::cuda::getCurrentCUDAStream(); }

// Makes the tensor's device current for the duration of an op call.
struct CudaDeviceGuard {
  explicit CudaDeviceGuard(const at::Tensor& t) : guard(t.device()) {}
  c10::cuda::CUDAGuard guard;
};

}  // namespace cnnkern

#define CNNKERN_CUDA_CHECK(expr) C10_CUDA_CHECK(expr)

#endif
