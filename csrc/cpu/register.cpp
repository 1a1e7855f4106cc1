// Registers the CPU implementations of every cnnkern op. The CPU conv algorithms register
// themselves in their own files (CONV2D_REGISTER_ALGO); the pooling kernels are listed in
// pool2d_cpu.cpp.

#include <torch/library.h>

#include "common/register_backend.h"
#include "cpu/pool2d_cpu.h"

TORCH_LIBRARY_IMPL(cnnkern, CPU, m) {
  using namespace cnnkern;
  register_backend_ops<BackendOps<Backend::CPU, pool2d_cpu_kernels, NoDeviceGuard>>(m);
}
