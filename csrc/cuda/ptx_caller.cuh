#pragma once
// For the device helpers that wrap one PTX instruction (async_copy.cuh, ldmatrix.cuh): under
// the CUDA emulator (CNNKERN_CUDA_EMU) each takes its caller's file and line as trailing default
// arguments, so a fault the emulator finds (a misaligned address, a read of a copy still in
// flight) names the kernel's line, not the helper's; under nvcc they take nothing.
//   CNNKERN_PTX_CALLER       after the last declared parameter (", file, line")
//   CNNKERN_PTX_CALLER_ONLY  as the whole parameter list of a helper without parameters
//   CNNKERN_PTX_HERE         the ::cuda_emu::SourceLoc to pass on (emulator only)

#if defined(CNNKERN_CUDA_EMU)
#define CNNKERN_PTX_CALLER , CUDA_EMU_HERE_PARAMS
#define CNNKERN_PTX_CALLER_ONLY CUDA_EMU_HERE_PARAMS
#define CNNKERN_PTX_HERE CUDA_EMU_HERE
#else
#define CNNKERN_PTX_CALLER
#define CNNKERN_PTX_CALLER_ONLY
#endif
