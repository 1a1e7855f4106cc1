#pragma once
// Device-side helpers shared by the .cu kernel files: accumulator types and conversions,
// grid-stride loops, launch sizes, dtype dispatch. Torch-free on purpose.
//
// torch builds .cu files with __CUDA_NO_HALF_CONVERSIONS__ & co., so every half/bfloat16
// conversion here is an explicit intrinsic.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cuda_dtype.h"

namespace cnnkern {
namespace cuda_detail {

// fp32 accumulation for fp32/fp16/bf16, fp64 for fp64.
template <class T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };
template <class T> using acc_t = typename Acc<T>::type;

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T> __device__ __forceinline__ T from_acc(acc_t<T> x);
template <> __device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <> __device__ __forceinline__ double from_acc<double>(double x) { return x; }
// Round to nearest even, as static_cast<at::Half / at::BFloat16>(float) does.
template <> __device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Read-only-cache load, converted to the accumulator type.
template <class T> __device__ __forceinline__ acc_t<T> ldg_acc(const T* p) { return to_acc(__ldg(p)); }

__device__ __forceinline__ float neg_inf(float) { return -__int_as_float(0x7f800000); }
__device__ __forceinline__ double neg_inf(double) { return -__longlong_as_double(0x7ff0000000000000LL); }

constexpr int kThreads = 256;
// Grid-stride loops cover the rest; 65535 blocks of 256 threads oversubscribe any current GPU.
constexpr int64_t kMaxBlocks = 65535;

inline unsigned int blocks_for(int64_t work_items, int64_t items_per_block = kThreads) {
  const int64_t b = (work_items + items_per_block - 1) / items_per_block;
  return static_cast<unsigned int>(b < kMaxBlocks ? (b > 0 ? b : 1) : kMaxBlocks);
}

__device__ __forceinline__ int64_t global_thread_id() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t global_thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

template <class T> struct TypeTag { using type = T; };

// Calls f(TypeTag<T>{}) with T the element type named by dt.
template <class F>
cudaError_t dispatch_dtype(CudaDType dt, F&& f) {
  switch (dt) {
    case CudaDType::Float: return f(TypeTag<float>{});
    case CudaDType::Double: return f(TypeTag<double>{});
    case CudaDType::Half: return f(TypeTag<__half>{});
    case CudaDType::BFloat16: return f(TypeTag<__nv_bfloat16>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda_detail
}  // namespace cnnkern
