#pragma once
// The CUDA emulator's cuda_runtime.h: NVIDIA's own (types, host API declarations, half and
// bfloat16), then the device side as the emulator provides it. This include directory comes
// first on the emulated build's include path (csrc/testing/cuda_emu/build.py).
#include_next <cuda_runtime.h>
#include "cuda_emu/device.h"
