// The CUDA kernel table of the fused conv + BN + ReLU training op and its backward (registered
// by cuda/register.cpp): glue from at::Tensor to the torch-free launchers in bn_relu_kernels.cu.

#include "cuda/bn_relu_cuda.h"
#include "cuda/bn_relu_kernels.h"
#include "cuda/cuda_glue.h"
#include "cuda/device_context.h"

namespace cnnkern {
namespace {

BnShape shape_of(const at::Tensor& z) { return {z.size(0), z.size(1), z.size(2) * z.size(3)}; }

void stats(const at::Tensor& z, double eps, at::Tensor& mean, at::Tensor& var,
           at::Tensor& invstd) {
  CNNKERN_CUDA_CHECK(launch_bn_stats(cuda_dtype_of(z), shape_of(z), z.const_data_ptr(), eps,
                                     mean.mutable_data_ptr(), var.mutable_data_ptr(),
                                     invstd.mutable_data_ptr(), current_cuda_stream()));
}

void apply(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift,
           const BnActivation& act, at::Tensor& out) {
  CNNKERN_CUDA_CHECK(launch_bn_apply(cuda_dtype_of(z), shape_of(z), z.const_data_ptr(),
                                     scale.const_data_ptr(), shift.const_data_ptr(), act,
                                     out.mutable_data_ptr(), current_cuda_stream()));
}

void grad_sums(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
               const at::Tensor& shift, const at::Tensor& mean, const BnActivation& act,
               at::Tensor& sum_g, at::Tensor& sum_gx) {
  CNNKERN_CUDA_CHECK(launch_bn_grad_sums(cuda_dtype_of(z), shape_of(z), dy.const_data_ptr(),
                                         z.const_data_ptr(), scale.const_data_ptr(),
                                         shift.const_data_ptr(), mean.const_data_ptr(), act,
                                         sum_g.mutable_data_ptr(), sum_gx.mutable_data_ptr(),
                                         current_cuda_stream()));
}

void grad_z(const at::Tensor& dy, const at::Tensor& z, const at::Tensor& scale,
            const at::Tensor& shift, const at::Tensor& mean, const at::Tensor& a,
            const at::Tensor& b, const at::Tensor& c, const BnActivation& act, at::Tensor& gz) {
  CNNKERN_CUDA_CHECK(launch_bn_grad_z(cuda_dtype_of(z), shape_of(z), dy.const_data_ptr(),
                                      z.const_data_ptr(), scale.const_data_ptr(),
                                      shift.const_data_ptr(), mean.const_data_ptr(),
                                      a.const_data_ptr(), b.const_data_ptr(), c.const_data_ptr(),
                                      act, gz.mutable_data_ptr(), current_cuda_stream()));
}

}  // namespace

const BnReluKernels& bn_relu_cuda_kernels() {
  static const BnReluKernels k{stats, apply, grad_sums, grad_z,
                               /*backward_reads_channels_last=*/false};
  return k;
}

}  // namespace cnnkern
