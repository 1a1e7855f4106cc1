// BN+ReLU backward plane kernels, portable variant (GCC vector extensions, any CPU).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/bn_relu/bn_relu_core.h"

#define CNNKERN_ISA_NS generic
#include "cpu/bn_relu/bn_relu_core_impl.h"
