// Direct-convolution inner kernels, AVX-512 variant. Only called when the running CPU has AVX-512 F/BW/DQ/VL and the
// calibration (or CNNKERN_CPU_ISA) chose it (cpu/common/cpu_isa.h).
// Every header is included before the target pragma, so the only code compiled for this ISA
// is this file's own, in its namespace (see cpu/common/avx512_begin.h).
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/direct/conv2d_direct_core.h"

#include "cpu/common/avx512_begin.h"
#include "cpu/direct/conv2d_direct_core_impl.h"
#include "cpu/common/avx2_end.h"
