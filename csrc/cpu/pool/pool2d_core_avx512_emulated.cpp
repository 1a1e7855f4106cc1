// Pooling kernels, the AVX-512 variant's vector width on AVX2 instructions, a test vehicle
// for CPUs without AVX-512 (CNNKERN_CPU_ISA=avx512_emulated; never chosen otherwise).
// Every header is included before the target pragma, so the only code compiled for this ISA
// is this file's own, in its namespace (see cpu/common/avx512_emulated_begin.h).
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/pool/pool2d_core.h"
#include "cpu/pool/pool2d_nhwc.h"

#include "cpu/common/avx512_emulated_begin.h"
#include "cpu/pool/pool2d_core_impl.h"
#include "cpu/pool/pool2d_nhwc_impl.h"
#include "cpu/common/avx2_end.h"
