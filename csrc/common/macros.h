#pragma once
// Qualifiers for code shared by the CPU (g++) and CUDA (nvcc) backends.

#if defined(__CUDACC__)
#define CNNKERN_HD __host__ __device__ __forceinline__
#else
#define CNNKERN_HD inline
#endif
