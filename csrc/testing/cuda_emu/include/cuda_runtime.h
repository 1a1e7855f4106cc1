#pragma once
// The CUDA emulator's cuda_runtime.h: NVIDIA's own (types, host API declarations, half and
// bfloat16), then the device side as the emulator provides it. This include directory comes
// first on the emulated build's include path (csrc/testing/cuda_emu/build.py).
#include_next <cuda_runtime.h>
#include "cuda_emu/device.h"

#if !defined(__CUDACC__)
// NVIDIA's header declares the kernel-pointer overload of cudaFuncSetAttribute for nvcc only;
// the emulated build compiles the .cu sources as C++, so it is declared here (the same
// forwarding to the C API that NVIDIA's does).
template <class T>
static inline cudaError_t cudaFuncSetAttribute(T* func, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}
#endif
