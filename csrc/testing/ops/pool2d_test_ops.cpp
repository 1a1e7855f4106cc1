// INTERNAL, tests-only ops that run core/pool2d_element.h (the per-element work of the CUDA
// pooling kernels) on the CPU, so tests/internals/test_pool2d_element_cpu.py can check it against
// torch, NCHW and channels_last, before any GPU runs it.
//
//   pool_emu_<op>(same arguments as the public pooling op <op>)
//       the public op's body (ops/pool2d_ops.cpp: argument checks, layout choice, output
//       allocation in that layout) with a kernel table that does what the CUDA grid does:
//       element i of the output (forward) or grad_input (backward), in memory order, through
//       the same *_at function each CUDA thread calls, for every i. Float32 and float64 CPU
//       tensors; the accumulator is the element type (the GPU accumulates float16/bfloat16
//       in float32, like float32 here). Outputs start NaN-filled (indices -1) and every read
//       is checked against the bounds of the tensors it may read, so a hole in the schedule
//       or a stray offset shows as NaN or an error rather than a plausible number.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <tuple>

#include "core/pool2d_element.h"
#include "ops/pool2d_ops.h"

namespace cnnkern {
namespace {

constexpr const char* kOp = "cnnkern_testing.pool_emu";

// The tensors a kernel may read ([begin, end) in bytes); a read elsewhere sets `bad`.
struct ReadBounds {
  const char* begin[2] = {nullptr, nullptr};
  const char* end[2] = {nullptr, nullptr};
  bool bad = false;

  void set(int slot, const at::Tensor& t) {
    begin[slot] = static_cast<const char*>(t.const_data_ptr());
    end[slot] = begin[slot] + t.numel() * t.element_size();
  }
  template <class T>
  bool ok(const T* p) {
    const char* c = reinterpret_cast<const char*>(p);
    for (int i = 0; i < 2; ++i)
      if (c >= begin[i] && c + sizeof(T) <= end[i]) return true;
    bad = true;
    return false;
  }
};
thread_local ReadBounds g_bounds;

struct CheckedLoad {
  template <class T>
  static T load(const T* base, int64_t off) {
    return g_bounds.ok(base + off) ? base[off] : T(0);
  }
  static int64_t index(const int64_t* base, int64_t off) {
    return g_bounds.ok(base + off) ? base[off] : -1;
  }
};

// Runs f(i) for every element i in [0, n) in order (one CUDA thread each), with reads
// checked against a and b, then fails if any read strayed.
template <class F>
void run_grid(int64_t n, const at::Tensor& a, const at::Tensor& b, const F& f) {
  g_bounds = ReadBounds{};
  g_bounds.set(0, a);
  if (b.defined()) g_bounds.set(1, b);
  for (int64_t i = 0; i < n; ++i) f(i);
  const bool bad = g_bounds.bad;
  g_bounds = ReadBounds{};
  TORCH_CHECK(!bad, kOp, ": a pooling element read outside the tensors it was given");
}

void max_forward(const Pool2dProblem& p, const at::Tensor& input, at::Tensor& output,
                 at::Tensor* indices) {
  if (indices != nullptr) indices->fill_(-1);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "pool_emu_max", [&] {
    output.fill_(std::numeric_limits<scalar_t>::quiet_NaN());
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    scalar_t* out = output.mutable_data_ptr<scalar_t>();
    int64_t* idx = indices != nullptr ? indices->mutable_data_ptr<int64_t>() : nullptr;
    run_grid(p.output_numel(), input, at::Tensor(), [&](int64_t i) {
      const MaxResult<scalar_t> r = max_pool2d_output_at<scalar_t, CheckedLoad>(p, x, i);
      out[i] = r.value;
      if (idx != nullptr) idx[i] = r.index;
    });
  });
}

void max_backward(const Pool2dProblem& p, const at::Tensor& grad_output,
                  const at::Tensor& indices, at::Tensor& grad_input) {
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "pool_emu_max_bwd", [&] {
    grad_input.fill_(std::numeric_limits<scalar_t>::quiet_NaN());
    const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
    const int64_t* idx = indices.const_data_ptr<int64_t>();
    scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
    run_grid(p.input_numel(), grad_output, indices, [&](int64_t i) {
      gi[i] = max_pool2d_grad_at<scalar_t, CheckedLoad>(p, go, idx, i);
    });
  });
}

// avg/adaptive forward and backward: element i of `out` from `in` through `at`.
#define CNNKERN_POOL_EMU_ENTRY(name, at_fn, total)                                         \
  void name(const Pool2dProblem& p, const at::Tensor& in, at::Tensor& out) {               \
    AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "pool_emu_" #name, [&] {                 \
      out.fill_(std::numeric_limits<scalar_t>::quiet_NaN());                               \
      const scalar_t* src = in.const_data_ptr<scalar_t>();                                 \
      scalar_t* dst = out.mutable_data_ptr<scalar_t>();                                    \
      run_grid(p.total(), in, at::Tensor(),                                                \
               [&](int64_t i) { dst[i] = at_fn<scalar_t, CheckedLoad>(p, src, i); });      \
    });                                                                                    \
  }

CNNKERN_POOL_EMU_ENTRY(avg_forward, avg_pool2d_output_at, output_numel)
CNNKERN_POOL_EMU_ENTRY(avg_backward, avg_pool2d_grad_at, input_numel)
CNNKERN_POOL_EMU_ENTRY(adaptive_forward, adaptive_avg_pool2d_output_at, output_numel)
CNNKERN_POOL_EMU_ENTRY(adaptive_backward, adaptive_avg_pool2d_grad_at, input_numel)
#undef CNNKERN_POOL_EMU_ENTRY

// As on the GPU: every grad_input element is written by the gather, none is zero-filled.
bool writes_every_grad_input_element(const Pool2dProblem&) { return false; }

const at::ScalarType kDtypes[] = {at::kFloat, at::kDouble};

const Pool2dKernels& emu_kernels() {
  static const Pool2dKernels k{"CPU emulation of the CUDA kernels",
                               kDtypes,
                               writes_every_grad_input_element,
                               max_forward,
                               max_backward,
                               avg_forward,
                               avg_backward,
                               adaptive_forward,
                               adaptive_backward};
  return k;
}

std::tuple<at::Tensor, at::Tensor> emu_max(const at::Tensor& input, c10::IntArrayRef kernel_size,
                                           c10::IntArrayRef stride, c10::IntArrayRef padding,
                                           c10::IntArrayRef dilation, bool ceil_mode) {
  return max_pool2d_with_indices_op(emu_kernels(), input, kernel_size, stride, padding,
                                    dilation, ceil_mode);
}

at::Tensor emu_max_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                            c10::IntArrayRef input_size, c10::IntArrayRef kernel_size,
                            c10::IntArrayRef stride, c10::IntArrayRef padding,
                            c10::IntArrayRef dilation, bool ceil_mode) {
  return max_pool2d_backward_op(emu_kernels(), grad_output, indices, input_size, kernel_size,
                                stride, padding, dilation, ceil_mode);
}

at::Tensor emu_avg(const at::Tensor& input, c10::IntArrayRef kernel_size,
                   c10::IntArrayRef stride, c10::IntArrayRef padding, bool ceil_mode,
                   bool count_include_pad, c10::optional<int64_t> divisor_override) {
  return avg_pool2d_op(emu_kernels(), input, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override);
}

at::Tensor emu_avg_backward(const at::Tensor& grad_output, c10::IntArrayRef input_size,
                            c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                            c10::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                            c10::optional<int64_t> divisor_override) {
  return avg_pool2d_backward_op(emu_kernels(), grad_output, input_size, kernel_size, stride,
                                padding, ceil_mode, count_include_pad, divisor_override);
}

at::Tensor emu_adaptive(const at::Tensor& input, c10::IntArrayRef output_size) {
  return adaptive_avg_pool2d_op(emu_kernels(), input, output_size);
}

at::Tensor emu_adaptive_backward(const at::Tensor& grad_output, c10::IntArrayRef input_size) {
  return adaptive_avg_pool2d_backward_op(emu_kernels(), grad_output, input_size);
}

}  // namespace
}  // namespace cnnkern

TORCH_LIBRARY_IMPL(cnnkern_testing, CPU, m) {
  m.impl("pool_emu_max_pool2d_with_indices", TORCH_FN(cnnkern::emu_max));
  m.impl("pool_emu_max_pool2d_backward", TORCH_FN(cnnkern::emu_max_backward));
  m.impl("pool_emu_avg_pool2d", TORCH_FN(cnnkern::emu_avg));
  m.impl("pool_emu_avg_pool2d_backward", TORCH_FN(cnnkern::emu_avg_backward));
  m.impl("pool_emu_adaptive_avg_pool2d", TORCH_FN(cnnkern::emu_adaptive));
  m.impl("pool_emu_adaptive_avg_pool2d_backward", TORCH_FN(cnnkern::emu_adaptive_backward));
}
