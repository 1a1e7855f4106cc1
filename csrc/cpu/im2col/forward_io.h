#pragma once
// How the im2col forward reads and writes its tensors when they are stored in another type
// than the one it computes in (torch-free). PlainIO: float32 / float64 tensors, used as they
// are. HalfIO: float16 / bfloat16 tensors (16-bit patterns) computed in float32 -- the image
// converted while the GEMM's column panels are packed (cpu/im2col/im2col_pack.h), the weights
// while they are packed once per call, and each output block rounded back as it is stored,
// so no float32 copy of a whole tensor is made (the first design, via_float32, made three).

#include <algorithm>
#include <cstdint>

#include "cpu/half/half_convert.h"
#include "cpu/im2col/im2col_pack.h"

namespace cnnkern {
namespace cpu {

template <typename T>
struct PlainIO {
  using S = T;  // the stored type
  CopyRead<T> read;
  void load(T* dst, const S* src, int64_t n) const { std::copy(src, src + n, dst); }
  void store(S* dst, const T* src, int64_t n) const { std::copy(src, src + n, dst); }
};

struct HalfIO {
  using S = uint16_t;
  HalfRead read;
  void (*from_float)(const float* src, uint16_t* dst, int64_t n);
  explicit HalfIO(const HalfConvert& cv) : read{cv.to_float}, from_float(cv.from_float) {}
  void load(float* dst, const S* src, int64_t n) const { read.run(dst, src, n); }
  void store(S* dst, const float* src, int64_t n) const { from_float(src, dst, n); }
};

}  // namespace cpu
}  // namespace cnnkern
