// CPU pooling (float32, float64; float16/bfloat16 via float32 copies) in the layout the op body
// chose (Pool2dProblem::channels_last).
// NCHW: parallel over the N*C planes, each plane owned by one thread, so backward scatters
// need no atomics; the forward passes and avg backward run the per-ISA plane kernels of
// cpu/pool/pool2d_core.h (vectorised along W where the stride allows); max and adaptive backward
// are plain scatters here. channels_last: the per-ISA row kernels of cpu/pool/pool2d_nhwc.h
// (vectorised along C), parallel over output rows (forward) or grad_input rows (backward, a
// gather). Either way every element has one owner and results do not depend on the thread
// count. Window math comes from core/pool2d_problem.h, shared with CUDA.

#include "cpu/pool/pool2d_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/pool/pool2d_core.h"
#include "cpu/pool/pool2d_nhwc.h"
#include "cpu/common/half_via_float32.h"

namespace cnnkern {
namespace {

template <typename F>
void for_each_plane(const Pool2dProblem& p, const F& f) {
  at::parallel_for(0, p.planes(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) f(plane);
  });
}

// f(first plane, count) over ranges of planes (each plane in exactly one range).
template <typename F>
void for_plane_ranges(const Pool2dProblem& p, const F& f) {
  at::parallel_for(0, p.planes(), 1, [&](int64_t begin, int64_t end) { f(begin, end - begin); });
}

template <typename T>
const cpu::PoolKernels<T>& kernels() {
  return cpu::pool_kernels<T>(cpu::active_isa(cpu::Family::pool));
}

template <typename T>
const cpu::PoolNhwcKernels<T>& nhwc_kernels() {
  return cpu::pool_nhwc_kernels<T>(cpu::active_isa(cpu::Family::pool));
}

// f(r0, r1) over ranges of `rows` rows of `row_elems` elements each; ranges of at least
// ~32K elements so that small problems do not pay for waking threads.
template <typename F>
void for_row_ranges(int64_t rows, int64_t row_elems, const F& f) {
  const int64_t grain =
      std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, row_elems));
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) { f(r0, r1); });
}

// idx == nullptr: the values alone (max_pool2d without indices).
template <typename T>
void max_forward_kernel(const Pool2dProblem& p, const T* in, T* out, int64_t* idx) {
  if (p.channels_last) {
    const auto& k = nhwc_kernels<T>();
    for_row_ranges(p.N * p.P, p.Q * p.C,
                   [&](int64_t r0, int64_t r1) { k.max(p, r0, r1, in, out, idx); });
    return;
  }
  const auto& k = kernels<T>();
  const T* in_end = in + p.input_numel();
  for_plane_ranges(p, [&](int64_t m, int64_t n) {
    k.max(p, n, in + m * p.H * p.W, in_end, out + m * p.P * p.Q,
          idx != nullptr ? idx + m * p.P * p.Q : nullptr);
  });
}

// For each of `n_out` windows along one axis (size `n_in`): whether one of its taps lies in
// the input (1) or all of them in the padding (0).
std::vector<char> windows_with_a_tap(int64_t n_out, int64_t n_in, int64_t k, int64_t stride,
                                  int64_t pad, int64_t dil) {
  std::vector<char> has(n_out, 0);
  for (int64_t o = 0; o < n_out; ++o)
    for (int64_t i = 0; i < k && !has[o]; ++i) {
      const int64_t at = o * stride - pad + i * dil;
      has[o] = at >= 0 && at < n_in;
    }
  return has;
}

template <typename T>
void max_backward_kernel(const Pool2dProblem& p, const T* go, const int64_t* idx, T* gi) {
  if (p.channels_last) {  // a gather: indices outside the plane match nothing
    const auto& k = nhwc_kernels<T>();
    for_row_ranges(p.N * p.H, p.W * p.C,
                   [&](int64_t r0, int64_t r1) { k.max_backward(p, r0, r1, go, idx, gi); });
    return;
  }
  const int64_t hw = p.H * p.W, pq = p.P * p.Q;
  // With dilation a window can lie entirely in the padding: its output is -inf, depends on no
  // input and gets no gradient (as in torch), whatever index it stores (torch's may name an
  // element that is no tap of the window). Which output rows and columns have a tap:
  const std::vector<char> row_tap = windows_with_a_tap(p.P, p.H, p.kh, p.stride_h, p.pad_h, p.dil_h);
  const std::vector<char> col_tap = windows_with_a_tap(p.Q, p.W, p.kw, p.stride_w, p.pad_w, p.dil_w);
  const bool every_window_has_a_tap =
      std::find(row_tap.begin(), row_tap.end(), 0) == row_tap.end() &&
      std::find(col_tap.begin(), col_tap.end(), 0) == col_tap.end();
  for_plane_ranges(p, [&](int64_t first, int64_t count) {
    for (int64_t plane = first; plane < first + count; ++plane) {
      T* dst = gi + plane * hw;
      const T* g = go + plane * pq;
      const int64_t* ix = idx + plane * pq;
      if (!every_window_has_a_tap) {  // rare: the per-element test is affordable
        for (int64_t o = 0; o < pq; ++o) {
          if (!row_tap[o / p.Q] || !col_tap[o % p.Q]) continue;
          TORCH_CHECK(ix[o] >= 0 && ix[o] < hw, "cnnkern.max_pool2d_backward: index ", ix[o],
                      " is outside the input plane of ", hw, " elements");
          dst[ix[o]] += g[o];
        }
        continue;
      }
      // No branch per element: an index outside the plane is redirected to element 0 and
      // remembered; the op then fails (its half-written grad_input is never returned).
      bool bad = false;
      for (int64_t o = 0; o < pq; ++o) {
        const uint64_t i = static_cast<uint64_t>(ix[o]);
        const bool out = i >= static_cast<uint64_t>(hw);
        bad |= out;
        dst[out ? 0 : i] += g[o];
      }
      if (bad) {
        for (int64_t o = 0; o < pq; ++o)
          TORCH_CHECK(ix[o] >= 0 && ix[o] < hw, "cnnkern.max_pool2d_backward: index ", ix[o],
                      " is outside the input plane of ", hw, " elements");
      }
    }
  });
}

template <typename T>
void avg_forward_kernel(const Pool2dProblem& p, const T* in, T* out) {
  if (p.channels_last) {
    const auto& k = nhwc_kernels<T>();
    for_row_ranges(p.N * p.P, p.Q * p.C,
                   [&](int64_t r0, int64_t r1) { k.avg(p, r0, r1, in, out); });
    return;
  }
  const auto& k = kernels<T>();
  const T* in_end = in + p.input_numel();
  for_plane_ranges(p, [&](int64_t m, int64_t n) {
    k.avg(p, n, in + m * p.H * p.W, in_end, out + m * p.P * p.Q);
  });
}

template <typename T>
void avg_backward_kernel(const Pool2dProblem& p, const T* go, T* gi) {
  if (p.channels_last) {
    const auto& k = nhwc_kernels<T>();
    for_row_ranges(p.N * p.H, p.W * p.C,
                   [&](int64_t r0, int64_t r1) { k.avg_backward(p, r0, r1, go, gi); });
    return;
  }
  const auto& k = kernels<T>();
  for_plane_ranges(p, [&](int64_t m, int64_t n) {
    k.avg_backward(p, n, go + m * p.P * p.Q, gi + m * p.H * p.W);
  });
}

template <typename T>
void adaptive_forward_kernel(const Pool2dProblem& p, const T* in, T* out) {
  if (p.channels_last) {
    const auto& k = nhwc_kernels<T>();
    for_row_ranges(p.N * p.P, p.Q * p.C,
                   [&](int64_t r0, int64_t r1) { k.adaptive(p, r0, r1, in, out); });
    return;
  }
  const auto& k = kernels<T>();
  for_plane_ranges(p, [&](int64_t m, int64_t n) {
    k.adaptive(p, n, in + m * p.H * p.W, out + m * p.P * p.Q);
  });
}

template <typename T>
void adaptive_backward_kernel(const Pool2dProblem& p, const T* go, T* gi) {
  if (p.channels_last) {
    const auto& k = nhwc_kernels<T>();
    for_row_ranges(p.N * p.H, p.W * p.C,
                   [&](int64_t r0, int64_t r1) { k.adaptive_backward(p, r0, r1, go, gi); });
    return;
  }
  for_each_plane(p, [&](int64_t plane) {
    T* dst = gi + plane * p.H * p.W;
    for (int64_t oh = 0; oh < p.P; ++oh) {
      const Window wh = adaptive_window(oh, p.H, p.P);
      for (int64_t ow = 0; ow < p.Q; ++ow) {
        const Window ww = adaptive_window(ow, p.W, p.Q);
        const int64_t count = (wh.end - wh.begin) * (ww.end - ww.begin);
        const T g = go[(plane * p.P + oh) * p.Q + ow] / static_cast<T>(count);
        for (int64_t h = wh.begin; h < wh.end; ++h)
          for (int64_t w = ww.begin; w < ww.end; ++w) dst[h * p.W + w] += g;
      }
    }
  });
}

void max_forward(const Pool2dProblem& p, const at::Tensor& input, at::Tensor& output,
                 at::Tensor* indices) {
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnkern_max_pool2d_cpu", [&] {
    max_forward_kernel<scalar_t>(p, input.const_data_ptr<scalar_t>(),
                                 output.mutable_data_ptr<scalar_t>(),
                                 indices ? indices->mutable_data_ptr<int64_t>() : nullptr);
  });
}

void max_backward(const Pool2dProblem& p, const at::Tensor& grad_output,
                  const at::Tensor& indices, at::Tensor& grad_input) {
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnkern_max_pool2d_bwd_cpu", [&] {
    max_backward_kernel<scalar_t>(p, grad_output.const_data_ptr<scalar_t>(),
                                  indices.const_data_ptr<int64_t>(),
                                  grad_input.mutable_data_ptr<scalar_t>());
  });
}

// The four avg/adaptive entry points differ only in the kernel they dispatch to.
#define CNNKERN_POOL_ENTRY(name, kernel, in_arg, out_arg)                                  \
  void name(const Pool2dProblem& p, const at::Tensor& in_arg, at::Tensor& out_arg) {       \
    AT_DISPATCH_FLOATING_TYPES(in_arg.scalar_type(), "cnnkern_" #name "_cpu", [&] {       \
      kernel<scalar_t>(p, in_arg.const_data_ptr<scalar_t>(),                               \
                       out_arg.mutable_data_ptr<scalar_t>());                              \
    });                                                                                    \
  }

CNNKERN_POOL_ENTRY(avg_forward, avg_forward_kernel, input, output)
CNNKERN_POOL_ENTRY(avg_backward, avg_backward_kernel, grad_output, grad_input)
CNNKERN_POOL_ENTRY(adaptive_forward, adaptive_forward_kernel, input, output)
CNNKERN_POOL_ENTRY(adaptive_backward, adaptive_backward_kernel, grad_output, grad_input)
#undef CNNKERN_POOL_ENTRY

// float16/bfloat16 through the float32 kernels (cpu/common/half_via_float32.h): a max of
// half values is one of them, so max pooling stays exact; averages round once.
const at::ScalarType kDtypes[] = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16};

// The NCHW backward kernels scatter into zeros; the channels_last ones gather and write
// every element.
bool needs_zeroed_grad_input(const Pool2dProblem& p) { return !p.channels_last; }

}  // namespace

const Pool2dKernels& pool2d_cpu_kernels() {
  using cpu::via_float32;
  static const Pool2dKernels k{"CPU",
                               kDtypes,
                               needs_zeroed_grad_input,
                               via_float32<max_forward>,
                               via_float32<max_backward>,
                               via_float32<avg_forward>,
                               via_float32<avg_backward>,
                               via_float32<adaptive_forward>,
                               via_float32<adaptive_backward>};
  return k;
}

}  // namespace cnnkern
