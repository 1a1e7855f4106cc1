#pragma once
// The GCC vector type of the portable CPU Winograd code: 32 bytes, one AVX register or two
// SSE registers on a CPU without AVX (these files are compiled for the default target).

namespace cnnkern {
namespace cpu {
namespace wino {

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using vec_t = typename Vec<T>::type;
template <typename T>
constexpr int kLanes = 32 / sizeof(T);

}  // namespace wino
}  // namespace cpu
}  // namespace cnnkern
