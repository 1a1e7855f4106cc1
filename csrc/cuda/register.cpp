// Registers the CUDA implementations of every cnnkern op (ops/register_backend.h). The CUDA
// conv algorithms register themselves in their own files (CONV2D_REGISTER_ALGO); the pooling
// and BN+ReLU kernel tables are in pool2d_cuda.cpp and bn_relu_cuda.cpp.

#include <torch/library.h>

#include "ops/library.h"
#include "ops/register_backend.h"
#include "cuda/bn_relu_cuda.h"
#include "cuda/device_context.h"
#include "cuda/pool2d_cuda.h"

CNNKERN_TORCH_LIBRARY_IMPL(CNNKERN_CUDA_DISPATCH_KEY, m) {
  using namespace cnnkern;
  register_backend_ops<
      BackendOps<Backend::CUDA, pool2d_cuda_kernels, bn_relu_cuda_kernels, CudaDeviceGuard>>(m);
}
