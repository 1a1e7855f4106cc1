#pragma once
// Which outputs along one axis read an in-bounds input through one filter tap.
//
// Output q reads input column q*stride - pad + tap (tap = s*dilation). It is in bounds for
// q in [begin, end); `offset` = tap - pad, so the input column is q*stride + offset.
// Computing this once per tap lets inner loops run branch-free (and vectorise).

#include <cstdint>

#include "core/macros.h"
#include "core/pool2d_problem.h"

namespace cnnkern {

struct RowRange {
  int64_t begin;
  int64_t end;
  int64_t offset;
};

CNNKERN_HD RowRange row_range(int64_t out_size, int64_t in_size, int64_t stride, int64_t pad,
                              int64_t tap) {
  const int64_t offset = tap - pad;
  // q*stride + offset >= 0  <=>  q >= ceil(-offset / stride)
  int64_t begin = -floor_div(offset, stride);
  // q*stride + offset <= in_size - 1  <=>  q <= floor((in_size - 1 - offset) / stride)
  int64_t end = floor_div(in_size - 1 - offset, stride) + 1;
  if (begin < 0) begin = 0;
  if (end > out_size) end = out_size;
  if (end < begin) end = begin;
  return {begin, end, offset};
}

}  // namespace cnnkern
