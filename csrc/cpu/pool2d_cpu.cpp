// CPU pooling kernels (float32, float64), parallel over the N*C planes. Each plane is owned
// by one thread, so backward scatters need no atomics and results do not depend on the
// thread count. Window math comes from common/pool2d_problem.h, shared with CUDA.

#include "cpu/pool2d_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <limits>

namespace cnnkern {
namespace {

template <typename F>
void for_each_plane(const Pool2dProblem& p, const F& f) {
  at::parallel_for(0, p.planes(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) f(plane);
  });
}

template <typename T>
void max_forward_kernel(const Pool2dProblem& p, const T* in, T* out, int64_t* idx) {
  for_each_plane(p, [&](int64_t plane) {
    const T* x = in + plane * p.H * p.W;
    for (int64_t oh = 0; oh < p.P; ++oh) {
      const Window wh = max_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h, p.dil_h);
      for (int64_t ow = 0; ow < p.Q; ++ow) {
        const Window ww = max_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w, p.dil_w);
        // ATen's rule: start at -inf with the window's first tap; a NaN always wins (the
        // last NaN in scan order), so NaN propagates with its index.
        T best = -std::numeric_limits<T>::infinity();
        int64_t best_i = wh.begin * p.W + ww.begin;
        for (int64_t h = wh.begin; h < wh.end; h += p.dil_h) {
          for (int64_t w = ww.begin; w < ww.end; w += p.dil_w) {
            const T v = x[h * p.W + w];
            if (v > best || std::isnan(v)) {
              best = v;
              best_i = h * p.W + w;
            }
          }
        }
        const int64_t o = (plane * p.P + oh) * p.Q + ow;
        out[o] = best;
        idx[o] = best_i;
      }
    }
  });
}

template <typename T>
void max_backward_kernel(const Pool2dProblem& p, const T* go, const int64_t* idx, T* gi) {
  const int64_t hw = p.H * p.W;
  for_each_plane(p, [&](int64_t plane) {
    T* dst = gi + plane * hw;
    const T* g = go + plane * p.P * p.Q;
    const int64_t* ix = idx + plane * p.P * p.Q;
    for (int64_t o = 0; o < p.P * p.Q; ++o) {
      const int64_t i = ix[o];
      TORCH_CHECK(i >= 0 && i < hw, "cnnkern.max_pool2d_backward: index ", i,
                  " is outside the input plane of ", hw, " elements");
      dst[i] += g[o];
    }
  });
}

template <typename T>
void avg_forward_kernel(const Pool2dProblem& p, const T* in, T* out) {
  for_each_plane(p, [&](int64_t plane) {
    const T* x = in + plane * p.H * p.W;
    for (int64_t oh = 0; oh < p.P; ++oh) {
      const AvgWindow wh = avg_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h);
      for (int64_t ow = 0; ow < p.Q; ++ow) {
        const AvgWindow ww = avg_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w);
        T sum = 0;
        for (int64_t h = wh.begin; h < wh.end; ++h)
          for (int64_t w = ww.begin; w < ww.end; ++w) sum += x[h * p.W + w];
        const bool empty = wh.begin >= wh.end || ww.begin >= ww.end;
        out[(plane * p.P + oh) * p.Q + ow] =
            empty ? T(0) : sum / static_cast<T>(avg_pool_divisor(p, wh, ww));
      }
    }
  });
}

template <typename T>
void avg_backward_kernel(const Pool2dProblem& p, const T* go, T* gi) {
  for_each_plane(p, [&](int64_t plane) {
    T* dst = gi + plane * p.H * p.W;
    for (int64_t oh = 0; oh < p.P; ++oh) {
      const AvgWindow wh = avg_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h);
      for (int64_t ow = 0; ow < p.Q; ++ow) {
        const AvgWindow ww = avg_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w);
        if (wh.begin >= wh.end || ww.begin >= ww.end) continue;
        const T g = go[(plane * p.P + oh) * p.Q + ow] /
                    static_cast<T>(avg_pool_divisor(p, wh, ww));
        for (int64_t h = wh.begin; h < wh.end; ++h)
          for (int64_t w = ww.begin; w < ww.end; ++w) dst[h * p.W + w] += g;
      }
    }
  });
}

template <typename T>
void adaptive_forward_kernel(const Pool2dProblem& p, const T* in, T* out) {
  for_each_plane(p, [&](int64_t plane) {
    const T* x = in + plane * p.H * p.W;
    for (int64_t oh = 0; oh < p.P; ++oh) {
      const Window wh = adaptive_window(oh, p.H, p.P);
      for (int64_t ow = 0; ow < p.Q; ++ow) {
        const Window ww = adaptive_window(ow, p.W, p.Q);
        T sum = 0;
        for (int64_t h = wh.begin; h < wh.end; ++h)
          for (int64_t w = ww.begin; w < ww.end; ++w) sum += x[h * p.W + w];
        const int64_t count = (wh.end - wh.begin) * (ww.end - ww.begin);
        out[(plane * p.P + oh) * p.Q + ow] = sum / static_cast<T>(count);
      }
    }
  });
}

template <typename T>
void adaptive_backward_kernel(const Pool2dProblem& p, const T* go, T* gi) {
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
                 at::Tensor& indices) {
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnkern_max_pool2d_cpu", [&] {
    max_forward_kernel<scalar_t>(p, input.const_data_ptr<scalar_t>(),
                                 output.mutable_data_ptr<scalar_t>(),
                                 indices.mutable_data_ptr<int64_t>());
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

const at::ScalarType kDtypes[] = {at::kFloat, at::kDouble};

}  // namespace

const Pool2dKernels& pool2d_cpu_kernels() {
  static const Pool2dKernels k{"CPU",         kDtypes,          max_forward,
                               max_backward,  avg_forward,      avg_backward,
                               adaptive_forward, adaptive_backward};
  return k;
}

}  // namespace cnnkern
