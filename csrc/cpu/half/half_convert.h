#pragma once
// float16 / bfloat16 <-> float32 conversion of runs of values, for kernels that read half
// tensors straight into their float32 packing stages and round their float32 results back as
// they store them (no float32 copy of a whole tensor). Torch-free: values are the 16-bit
// patterns (uint16_t), so the ISA translation units need no c10 headers.
//
// Rounding float32 -> half is to nearest, ties to even, as c10::Half / c10::BFloat16 round
// (bfloat16 NaN -> quiet NaN 0x7FC0, overflow -> inf): a kernel that converts its inputs
// exactly (half -> float32 is exact) and rounds each float32 result once gives the bits of the
// float32 kernel run on float32 copies and rounded after, which is what the tests check.
//
// Variants per instruction set (half_convert_<isa>.cpp from half_convert_impl.h): F16C
// (_mm256_cvtph_ps / _mm256_cvtps_ph) and 16-bit shifts for bfloat16 on AVX2, the 512-bit
// forms (_mm512_cvtph_ps) on AVX-512, a 16-wide loop of AVX2 pairs for avx512_emulated, and
// portable scalar code (GCC's _Float16) for generic.

#include <cstdint>
#include <cstring>

#include "cpu/common/cpu_isa.h"

namespace cnnkern {
namespace cpu {

enum class HalfKind { float16, bfloat16 };

struct HalfConvert {
  // dst[i] = float(src[i]) for i < n (exact).
  void (*to_float)(const uint16_t* src, float* dst, int64_t n);
  // dst[i] = src[i] rounded to the half type, to nearest even, for i < n.
  void (*from_float)(const float* src, uint16_t* dst, int64_t n);
};

// The conversions `isa` runs for `kind` (an AVX2-class ISA on a CPU without F16C: generic's).
const HalfConvert& half_convert(HalfKind kind, Isa isa);

// Scalar conversions (the reference the vector code follows bit for bit).
inline float bf16_to_float(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;  // NaN: quiet, as c10::BFloat16
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

#define CNNKERN_DECLARE_HALF_CONVERT(ns)           \
  namespace ns {                                   \
  const HalfConvert& half_convert(HalfKind kind);  \
  }
CNNKERN_DECLARE_HALF_CONVERT(generic)
CNNKERN_DECLARE_HALF_CONVERT(avx2)
CNNKERN_DECLARE_HALF_CONVERT(avx512)
CNNKERN_DECLARE_HALF_CONVERT(avx512_emulated)
#undef CNNKERN_DECLARE_HALF_CONVERT

}  // namespace cpu
}  // namespace cnnkern
