#pragma once
// Qualifiers for code shared by the CPU (g++) and CUDA (nvcc) backends.

#if defined(__CUDACC__)
#define CNNKERN_HD __host__ __device__ __forceinline__
#else
#define CNNKERN_HD inline
#endif

// `#pragma unroll` for nvcc's device pass; nothing for a host compiler (g++ would warn on it).
#if defined(__CUDA_ARCH__)
#define CNNKERN_UNROLL _Pragma("unroll")
#else
#define CNNKERN_UNROLL
#endif
