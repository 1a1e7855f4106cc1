#pragma once
// A Conv2dProblem plus its divisors precomputed as multiply-shift FastDivmods, for the
// implicit-GEMM maps (core/implicit_gemm.h). The maps decode a GEMM coordinate into tensor
// coordinates on every load of the tile loop (k -> (c, r, s), a stride test, (n, p, q)); a GPU
// has no integer divider, so a runtime n / d there is a ~20-instruction sequence (64-bit: a
// subroutine call) where FastDivmod is a multiply-high, an add and a shift. Built on the host,
// once per launch, and passed to the kernel by value (kernel parameters live in the constant
// bank, so the divisors cost no registers).
//
// FastDivmod is exact for divisors and dividends in [0, 2^31): index32_why_not (implicit_gemm.h)
// guarantees that for every divided value below where the CUDA kernels run (reduction
// coordinates and window positions < 2^30). The (n, p, q) decode of grad-weight's reduction
// coordinate ranges over N*P*Q, which it does not bound: fast only when npq32.

#include <cstdint>

#include "core/conv2d_problem.h"
#include "core/fast_divmod.h"
#include "core/macros.h"

namespace cnnkern {
namespace igemm {

// The divisor as a FastDivmod, or 1 where it is out of FastDivmod's range (a problem that
// index32_why_not rejects, so no kernel divides by it; the CPU emulation never meets one).
inline FastDivmod fast_divisor(int64_t d) {
  return FastDivmod(d >= 1 && d < (int64_t(1) << 31) ? static_cast<uint32_t>(d) : 1u);
}

// q = n / d, rem = n % d for 0 <= n < 2^31.
CNNKERN_HD int32_t divmod32(const FastDivmod& d, int32_t n, int32_t& rem) {
  uint32_t r;
  const uint32_t q = d.divmod(static_cast<uint32_t>(n), r);
  rem = static_cast<int32_t>(r);
  return static_cast<int32_t>(q);
}

struct ConvDivParams : Conv2dProblem {
  FastDivmod div_R, div_S, div_RS;           // filter taps: crs -> (c, r, s), krs -> (k, rs)
  FastDivmod div_stride_h, div_stride_w;     // grad-input: output row/column of a position
  FastDivmod div_P, div_Q, div_PQ;           // grad-weight: npq -> (n, p, q)
  bool npq32 = false;                        // N*P*Q (+ a k-tile) < 2^30: div_P/Q/PQ apply

  ConvDivParams() = default;
  // Implicit on purpose: every host call site that builds a map or a plan from a problem
  // gets the divisors computed for it.
  ConvDivParams(const Conv2dProblem& p)  // NOLINT(google-explicit-constructor)
      : Conv2dProblem(p),
        div_R(fast_divisor(p.R)),
        div_S(fast_divisor(p.S)),
        div_RS(fast_divisor(p.R * p.S)),
        div_stride_h(fast_divisor(p.stride_h)),
        div_stride_w(fast_divisor(p.stride_w)),
        div_P(fast_divisor(p.P)),
        div_Q(fast_divisor(p.Q)),
        div_PQ(fast_divisor(p.P * p.Q)),
        npq32(p.P >= 1 && p.Q >= 1 && p.P * p.Q < (int64_t(1) << 30) &&
              p.N * p.P * p.Q < (int64_t(1) << 30)) {}
};

}  // namespace igemm
}  // namespace cnnkern
