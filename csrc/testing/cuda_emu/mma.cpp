// mma.sync and cvt.rna.tf32.f32 for the CUDA emulator, written from the PTX ISA (sections
// "Matrix Fragments for mma.m16n8k16 with floating point type" and "Matrix Fragments for
// mma.m16n8k8", and the cvt instruction) and from nothing in the project's kernels, so that a
// kernel that builds its fragments wrongly gets a wrong product here, as it would on a GPU.
//
// Per PTX: groupID = %laneid >> 2, threadID_in_group = %laneid % 4; a register holding two
// 16-bit elements keeps the lower-numbered element in its low half.
//
// The product is exact (the operands have at most 11 significant bits) and summed in double,
// then rounded once to the fp32 accumulator; a tensor core's internal summation order and
// rounding are not modelled.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>

#include "cuda_emu/device.h"
#include "warp_ops.h"

namespace cuda_emu {
namespace {

constexpr int kWarp = 32;

float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// IEEE binary16 -> binary32 (exact).
float half_bits_to_float(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1u, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(man), -24);  // zero or subnormal
  } else if (exp == 31) {
    v = man == 0 ? INFINITY : NAN;
  } else {
    v = std::ldexp(static_cast<float>(man | 0x400u), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

// bfloat16 is the top half of a binary32.
float bf16_bits_to_float(uint16_t b) { return bits_to_float(static_cast<uint32_t>(b) << 16); }

// A .tf32 operand: a binary32 bit pattern of which the tensor core reads sign, exponent and
// the top 10 mantissa bits.
float tf32_operand(uint32_t u) { return bits_to_float(u & 0xffffe000u); }

enum class Kind { F16K16, BF16K16, TF32K8 };

bool parse_shape(const char* s, Kind& kind) {
  if (std::strcmp(s, "m16n8k16.row.col.f32.f16.f16.f32") == 0) { kind = Kind::F16K16; return true; }
  if (std::strcmp(s, "m16n8k16.row.col.f32.bf16.bf16.f32") == 0) { kind = Kind::BF16K16; return true; }
  if (std::strcmp(s, "m16n8k8.row.col.f32.tf32.tf32.f32") == 0) { kind = Kind::TF32K8; return true; }
  return false;
}

float element16(Kind kind, uint32_t reg, int half) {
  const uint16_t bits = static_cast<uint16_t>(half == 0 ? reg & 0xffffu : reg >> 16);
  return kind == Kind::F16K16 ? half_bits_to_float(bits) : bf16_bits_to_float(bits);
}

}  // namespace

std::string complete_mma(unsigned mask, const std::array<WarpPayload*, 32>& lanes) {
  if (mask != 0xffffffffu) return "mma.sync.aligned needs all 32 lanes of the warp (mask 0xffffffff)";
  Kind kind;
  if (!parse_shape(lanes[0]->mma_shape, kind))
    return std::string("shape/types '") + lanes[0]->mma_shape + "' are not emulated";
  for (int l = 1; l < kWarp; ++l)
    if (std::strcmp(lanes[l]->mma_shape, lanes[0]->mma_shape) != 0)
      return "the lanes of the warp run different mma shapes";

  const int K = kind == Kind::TF32K8 ? 8 : 16;
  double A[16][16] = {}, B[16][8] = {}, C[16][8] = {};
  for (int lane = 0; lane < kWarp; ++lane) {
    const WarpPayload& p = *lanes[lane];
    const int group = lane >> 2, tig = lane % 4;
    if (kind == Kind::TF32K8) {
      // A (16 x 8): a0..a3, one per register. row: groupID for a0 and a2, groupID + 8 for a1
      // and a3; col: threadID_in_group for a0 and a1, threadID_in_group + 4 for a2 and a3.
      for (int i = 0; i < 4; ++i) {
        const int row = (i == 0 || i == 2) ? group : group + 8;
        const int col = (i == 0 || i == 1) ? tig : tig + 4;
        A[row][col] = tf32_operand(static_cast<uint32_t>(p.in[i]));
      }
      // B (8 x 8): b0, b1. row: threadID_in_group for b0, threadID_in_group + 4 for b1;
      // col: groupID.
      for (int i = 0; i < 2; ++i) {
        const int row = i == 0 ? tig : tig + 4;
        B[row][group] = tf32_operand(static_cast<uint32_t>(p.in[4 + i]));
      }
    } else {
      // A (16 x 16): a0..a7, two per register. row: groupID for ai with 0 <= i < 2 or
      // 4 <= i < 6, groupID + 8 otherwise; col: threadID_in_group * 2 + (i & 1), plus 8 for
      // i >= 4.
      for (int i = 0; i < 8; ++i) {
        const int row = (i < 2 || (i >= 4 && i < 6)) ? group : group + 8;
        const int col = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
        A[row][col] = element16(kind, static_cast<uint32_t>(p.in[i / 2]), i % 2);
      }
      // B (16 x 8): b0..b3, two per register. row: threadID_in_group * 2 + (i & 1), plus 8
      // for i >= 2; col: groupID.
      for (int i = 0; i < 4; ++i) {
        const int row = tig * 2 + (i & 1) + (i >= 2 ? 8 : 0);
        B[row][group] = element16(kind, static_cast<uint32_t>(p.in[4 + i / 2]), i % 2);
      }
    }
    // C and D (16 x 8, f32): c0..c3. row: groupID for c0 and c1, groupID + 8 for c2 and c3;
    // col: threadID_in_group * 2 + (i & 1).
    for (int i = 0; i < 4; ++i) {
      const int row = i < 2 ? group : group + 8;
      C[row][tig * 2 + (i & 1)] = bits_to_float(static_cast<uint32_t>(p.in[6 + i]));
    }
  }
  for (int lane = 0; lane < kWarp; ++lane) {
    WarpPayload& p = *lanes[lane];
    const int group = lane >> 2, tig = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = i < 2 ? group : group + 8, col = tig * 2 + (i & 1);
      double d = C[row][col];
      for (int k = 0; k < K; ++k) d += A[row][k] * B[k][col];
      p.out[i] = float_to_bits(static_cast<float>(d));
    }
  }
  return "";
}

void mma_sync(const char* shape_types, float (&c)[4], const uint32_t (&a)[4],
              const uint32_t (&b)[2], SourceLoc loc) {
  WarpPayload p{};
  for (int i = 0; i < 4; ++i) p.in[i] = a[i];
  for (int i = 0; i < 2; ++i) p.in[4 + i] = b[i];
  for (int i = 0; i < 4; ++i) p.in[6 + i] = float_to_bits(c[i]);
  p.mma_shape = shape_types;
  warp_collective(WarpOp::Mma, 0xffffffffu, p, loc);
  for (int i = 0; i < 4; ++i) c[i] = bits_to_float(static_cast<uint32_t>(p.out[i]));
}

// PTX: cvt.rna.tf32.f32 rounds to the nearest tf32 value (10 explicit mantissa bits), ties
// away from zero; the result is a binary32 bit pattern with the low 13 bits zero. Adding half
// a tf32 ulp to the magnitude bits and truncating does exactly that, a carry moving into the
// exponent (to infinity past the largest tf32). Infinities pass; a NaN stays a NaN.
uint32_t cvt_rna_tf32(float x) {
  uint32_t u = float_to_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0x007fffffu) != 0 ? 0x7fffffffu : u;
  return (u + 0x1000u) & 0xffffe000u;
}

}  // namespace cuda_emu
