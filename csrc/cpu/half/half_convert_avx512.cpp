// float16 / bfloat16 <-> float32 runs, AVX-512 variant (16 values a step, _mm512_cvtph_ps).
// Every header is included before the ISA's target pragma (see cpu/common/avx2_begin.h).
#include <cstdint>
#include <cstring>

#include "cpu/half/half_convert.h"

#include "cpu/common/avx512_begin.h"
#include "cpu/half/half_convert_impl.h"
#include "cpu/common/avx2_end.h"
