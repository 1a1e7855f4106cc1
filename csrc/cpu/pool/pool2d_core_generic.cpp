// Pooling kernels, portable variant (GCC vector extensions, any CPU).
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/pool/pool2d_core.h"
#include "cpu/pool/pool2d_nhwc.h"

#define CNNKERN_ISA_NS generic
#include "cpu/pool/pool2d_core_impl.h"
#include "cpu/pool/pool2d_nhwc_impl.h"
