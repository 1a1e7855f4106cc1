#pragma once
// The element types the CUDA kernels are built for. Torch-free, so the .cu launchers can take
// a dtype tag and a void* instead of an at::Tensor (keeps torch headers out of nvcc builds).

namespace cnnkern {

enum class CudaDType { Float, Double, Half, BFloat16 };

}  // namespace cnnkern
