// float16 / bfloat16 <-> float32 runs, portable scalar variant (GCC _Float16 for float16), any CPU.
// Every header is included before the ISA's target pragma (see cpu/common/avx2_begin.h).
#include <cstdint>
#include <cstring>

#include "cpu/half/half_convert.h"

#define CNNKERN_ISA_NS generic
#include "cpu/half/half_convert_impl.h"

