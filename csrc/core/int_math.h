#pragma once
// Integer rounding shared by every backend: tile counts, padded widths, block sizes.
// (Non-negative a, positive b.)

#include <cstdint>

#include "core/macros.h"

namespace cnnkern {

CNNKERN_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
CNNKERN_HD int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

}  // namespace cnnkern
