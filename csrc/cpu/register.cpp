// Registers the CPU implementations of every cnnkern op (ops/register_backend.h). The CPU conv
// algorithms register themselves in their own files (CONV2D_REGISTER_ALGO); the pooling and
// BN+ReLU kernel tables are in pool/pool2d_cpu.cpp and bn_relu/bn_relu_cpu.cpp.

#include <torch/library.h>

#include "ops/register_backend.h"
#include "cpu/bn_relu/bn_relu_cpu.h"
#include "cpu/pool/pool2d_cpu.h"

TORCH_LIBRARY_IMPL(cnnkern, CPU, m) {
  using namespace cnnkern;
  register_backend_ops<
      BackendOps<Backend::CPU, pool2d_cpu_kernels, bn_relu_cpu_kernels, NoDeviceGuard>>(m);
}
