#pragma once
// CNNKERN_IGEMM_SIMT=1 (read once per process) keeps every convolution off the tensor cores:
// float16/bfloat16 run on the general kernel's SIMT path instead of the mma.sync kernels
// (conv2d_igemm_tc.cu and the general kernel's mma policy), and float32 stays exact even when
// TF32 is allowed. A switch for diagnosing the mma paths on a new GPU; host code only.

#include <cstdlib>
#include <cstring>

namespace cnnkern {

inline bool tensor_cores_disabled() {
  static const bool off = [] {
    const char* v = std::getenv("CNNKERN_IGEMM_SIMT");
    return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
  }();
  return off;
}

}  // namespace cnnkern
