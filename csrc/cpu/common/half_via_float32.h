#pragma once
// float16 and bfloat16 on the CPU backend, first design: the float32 kernels do the work.
//
// (The im2col forward has left this design: it reads half tensors itself, HalfNative below
// and cpu/im2col/forward_io.h.)
//
// Every CPU entry point (conv2d algorithms, pooling and BN+ReLU kernel tables) takes a
// float16/bfloat16 call by converting its half tensors to float32 at the entry (ATen's
// vectorised conversion, a whole tensor at a time), running the float32 kernel, and rounding
// each result back to the caller's dtype once. So every sum accumulates in float32 (or wider,
// where the float32 kernel does), and the result differs from a float64 computation on the
// same half inputs by little more than that one final rounding.
//
// What it costs, honestly: a float32 copy of each tensor the call reads and writes (per call;
// explain() counts them), and one extra pass over memory per tensor. Reading half values
// straight into the kernels' registers (F16C's vcvtph2ps, bfloat16 by a 16-bit shift) in the
// im2col packing and the Winograd input transform is the next step; this one is the baseline
// that step must beat.
//
// The choice is the CPU backend's (this header is csrc/cpu's only): the CUDA backend keeps its
// own half kernels, and shared op bodies never look at a tensor's device.

#include <ATen/core/Tensor.h>

#include <deque>
#include <utility>
#include <vector>

#include "ops/conv2d_algo.h"

namespace cnnkern {
namespace cpu {

inline bool is_half_type(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

// The dtype the CPU kernels compute a problem of dtype `t` in.
inline at::ScalarType compute_dtype(at::ScalarType t) { return is_half_type(t) ? at::kFloat : t; }

// Which passes of an algorithm take float16/bfloat16 tensors themselves (converting in
// registers, computing in float32): those get the half tensors as they are, and their
// workspace() answers for half dtypes too.
struct HalfNative {
  bool forward = false;
};

// `a`, taking every dtype the CPU backend supports: float32 and float64 as `a` does, float16 and
// bfloat16 through float32 as above (or natively, per `native`); any other dtype is refused by
// its why_not, naming the four. `a`'s own why_not is asked with the compute dtype, so it needs
// no dtype check of its own.
Conv2dAlgo with_cpu_dtypes(Conv2dAlgo a, HalfNative native = {});

// --- kernel tables (pooling, BN+ReLU): plain function pointers, wrapped at compile time ------

// The arguments of one call, with each float16/bfloat16 tensor swapped for a float32 copy;
// write_back() rounds the copies of the mutable (output) tensors into the originals. An
// output's copy starts from its current values: a kernel that adds into a zero-filled tensor
// (the NCHW pooling backward) finds its zeros.
class Float32Args {
 public:
  const at::Tensor& operator()(const at::Tensor& t) {
    return is_half_type(t.scalar_type()) ? keep_.emplace_back(t.to(at::kFloat)) : t;
  }
  at::Tensor& operator()(at::Tensor& t) {
    if (!is_half_type(t.scalar_type())) return t;
    at::Tensor& copy = keep_.emplace_back(t.to(at::kFloat));
    outputs_.emplace_back(&t, &copy);
    return copy;
  }
  template <class X>
  const X& operator()(const X& x) {
    return x;
  }
  void write_back() {
    for (auto& [dst, src] : outputs_) dst->copy_(*src);
  }

 private:
  std::deque<at::Tensor> keep_;  // a deque: references to its elements stay valid
  std::vector<std::pair<at::Tensor*, at::Tensor*>> outputs_;
};

inline bool half_arg(const at::Tensor& t) { return is_half_type(t.scalar_type()); }
template <class X>
bool half_arg(const X&) {
  return false;
}

// via_float32<F>: a function of F's signature that runs F itself when no argument is a
// float16/bfloat16 tensor, else F on float32 copies (Float32Args).
template <auto F>
struct Float32Entry;
template <class... A, void (*F)(A...)>
struct Float32Entry<F> {
  static void run(A... a) {
    if (!(half_arg(a) || ...)) return F(a...);
    Float32Args args;
    F(args(a)...);
    args.write_back();
  }
};
template <auto F>
constexpr auto via_float32 = &Float32Entry<F>::run;

}  // namespace cpu
}  // namespace cnnkern
