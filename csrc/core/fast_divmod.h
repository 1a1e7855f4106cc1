#pragma once
// Division of 32-bit indices by a divisor fixed for a whole kernel launch, without a divide
// instruction: a multiply-high, an add and a shift (Granlund & Montgomery, "Division by
// invariant integers using multiplication", 1994; the form of PyTorch's IntDivider and
// CUTLASS's FastDivmod). A GPU has no integer divider: n / d on 32-bit operands compiles to
// a ~20-instruction sequence, on 64-bit operands to a call of a much longer one, while the
// magic-number division is three instructions. The CUDA kernels precompute one per divisor on
// the host and pass it by value; the tests-only op cnnkern_testing.fast_divmod runs this very
// header on the CPU (tests/internals/test_fast_divmod.py).
//
// Valid for a divisor in [1, 2^31 - 1] and a dividend in [0, 2^31 - 1]: the sum t + n below
// then stays under 2^32. Callers guarantee both (the 32-bit kernel paths are chosen only when
// every index they form fits; see cuda/pool2d_kernels.cu).

#include <cstdint>

#include "core/macros.h"

namespace cnnkern {

CNNKERN_HD uint32_t mulhi_u32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

struct FastDivmod {
  uint32_t divisor = 1;
  uint32_t multiplier = 1;  // m = floor(2^32 * (2^shift - d) / d) + 1, always < 2^32
  uint32_t shift = 0;       // the smallest s with 2^s >= d

  FastDivmod() = default;
  // Host side, once per launch; d must be in [1, 2^31 - 1] (checked by the caller).
  explicit FastDivmod(uint32_t d) : divisor(d) {
    while ((uint64_t(1) << shift) < d) ++shift;
    const uint64_t excess = (uint64_t(1) << shift) - d;  // < d <= 2^31: no overflow below
    multiplier = static_cast<uint32_t>((excess << 32) / d + 1);
  }

  CNNKERN_HD uint32_t div(uint32_t n) const { return (mulhi_u32(n, multiplier) + n) >> shift; }
  // n / d and n % d (the remainder from the quotient: a multiply and a subtract).
  CNNKERN_HD uint32_t divmod(uint32_t n, uint32_t& rem) const {
    const uint32_t q = div(n);
    rem = n - q * divisor;
    return q;
  }
};

// The 64-bit fallback with the same interface: plain division, for sizes past 2^31.
struct PlainDivmod {
  int64_t divisor = 1;

  PlainDivmod() = default;
  explicit PlainDivmod(int64_t d) : divisor(d) {}

  CNNKERN_HD int64_t div(int64_t n) const { return n / divisor; }
  CNNKERN_HD int64_t divmod(int64_t n, int64_t& rem) const {
    const int64_t q = n / divisor;
    rem = n - q * divisor;
    return q;
  }
};

}  // namespace cnnkern
