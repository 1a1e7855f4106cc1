// float16 / bfloat16 <-> float32 runs, AVX2 + F16C variant (8 values a step).
// Every header is included before the ISA's target pragma (see cpu/common/avx2_begin.h).
#include <cstdint>
#include <cstring>

#include "cpu/half/half_convert.h"

#include "cpu/common/avx2_begin.h"
#include "cpu/half/half_convert_impl.h"
#include "cpu/common/avx2_end.h"
