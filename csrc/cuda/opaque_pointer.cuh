#pragma once
// opaque_pointer(p): p, opaque to the optimiser, so that a gather's source pointer stays one
// 64-bit register. Without it nvcc re-forms `kernel parameter + 64-bit offset` for every
// cp.async source (IADD3, LEA.HI.X.SX32, LEA, LEA.HI.X) instead of one IMAD.WIDE from the
// pointer: the fp32 core's gathers (conv2d_igemm_fp32.cu's PatchStager, the grad-weight's
// WgradStager) issue 10-20 instructions fewer per k-tile with it (sm_90, nvcc 13.0). An empty
// asm: no instruction of its own. The CUDA emulator (CNNKERN_CUDA_EMU, g++) takes p as it is.

namespace cnnkern {

template <class T>
__device__ __forceinline__ T* opaque_pointer(T* p) {
#if !defined(CNNKERN_CUDA_EMU)
  asm("" : "+l"(p));
#endif
  return p;
}

}  // namespace cnnkern
