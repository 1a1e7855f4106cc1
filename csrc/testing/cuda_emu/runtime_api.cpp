// The CUDA runtime API functions the project's CUDA code calls, for the emulator: errors,
// streams (every launch is synchronous, so there is nothing to wait for) and function
// attributes. The emulated library is linked with -Bsymbolic, so its own calls bind here and
// never to the libcudart that torch loads (which would answer "no CUDA device").

#include <cuda_runtime_api.h>

#include <cstring>

#include "cuda_emu/engine.h"

namespace cuda_emu {
int take_last_error();
int peek_last_error();
}  // namespace cuda_emu

extern "C" {

cudaError_t cudaGetLastError(void) {
  return static_cast<cudaError_t>(cuda_emu::take_last_error());
}

cudaError_t cudaPeekAtLastError(void) {
  return static_cast<cudaError_t>(cuda_emu::peek_last_error());
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorIllegalInstruction: return "cudaErrorIllegalInstruction";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorIllegalInstruction: return "an illegal instruction was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return "unknown error";
  }
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

// Only the multiprocessor count is asked for (the plans' wave size); see set_sm_count.
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0 || attr != cudaDevAttrMultiProcessorCount) return cudaErrorInvalidValue;
  *value = cuda_emu::sm_count();
  return cudaSuccess;
}

// Only the dynamic shared-memory opt-in changes what the emulator checks; the other
// attributes (carveout preferences, ...) are hints a launch cannot fail on.
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
  return static_cast<cudaError_t>(cuda_emu::set_max_dynamic_shared(func, value));
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t count, cudaStream_t) {
  std::memset(dst, value, count);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind,
                            cudaStream_t) {
  std::memmove(dst, src, count);
  return cudaSuccess;
}

}  // extern "C"
