#include "cpu/common/half_via_float32.h"

#include <c10/core/ScalarType.h>

#include <functional>
#include <string>

namespace cnnkern {
namespace cpu {
namespace {

at::Tensor f32(const at::Tensor& t) { return t.to(at::kFloat); }  // keeps the layout

c10::optional<at::Tensor> f32(const c10::optional<at::Tensor>& t) {
  if (!t.has_value()) return t;
  return f32(*t);
}

// The float32 copies a half call of `pass` makes besides the kernel's own workspace: the
// tensors it reads and the result before rounding, in bytes.
int64_t copies_bytes(const Conv2dProblem& p, ConvPass pass) {
  const int64_t x = p.input_numel(), w = p.weight_numel(), y = p.output_numel();
  switch (pass) {
    case ConvPass::Forward: return 4 * (x + w + p.K + y);  // input, weight, bias; output
    case ConvPass::BackwardInput: return 4 * (y + w + x);  // grad_output, weight; grad_input
    case ConvPass::BackwardWeight: return 4 * (y + x + w);  // grad_output, input; grad_weight
  }
  return 0;
}

// A backward pass (grad-input or grad-weight: both take grad_output and one other tensor).
using BackwardPass = std::function<at::Tensor(const at::Tensor&, const at::Tensor&,
                                              const Conv2dProblem&, const Conv2dMath&)>;
BackwardPass backward_via_float32(BackwardPass f) {
  return [f](const at::Tensor& grad_output, const at::Tensor& other, const Conv2dProblem& p,
             const Conv2dMath& math) {
    if (!is_half_type(grad_output.scalar_type())) return f(grad_output, other, p, math);
    return f(f32(grad_output), f32(other), p, math).to(grad_output.scalar_type());
  };
}

}  // namespace

Conv2dAlgo with_cpu_dtypes(Conv2dAlgo a, HalfNative native) {
  Conv2dAlgo w = a;
  w.why_not = [name = a.name, inner = a.why_not](const Conv2dProblem& p,
                                                 at::ScalarType dtype) -> std::string {
    if (dtype != at::kFloat && dtype != at::kDouble && !is_half_type(dtype))
      return name + " on the CPU supports float32, float64, float16 and bfloat16 (the last two "
                    "computed in float32); got " + c10::toString(dtype);
    return inner(p, compute_dtype(dtype));
  };
  if (!native.forward)
    w.forward = [f = a.forward](const at::Tensor& input, const at::Tensor& weight,
                                const c10::optional<at::Tensor>& bias, const Conv2dProblem& p,
                                const Conv2dEpilogue& epi, const Conv2dMath& math) {
      if (!is_half_type(input.scalar_type())) return f(input, weight, bias, p, epi, math);
      return f(f32(input), f32(weight), f32(bias), p, epi, math).to(input.scalar_type());
    };
  if (a.backward_input) w.backward_input = backward_via_float32(a.backward_input);
  if (a.backward_weight) w.backward_weight = backward_via_float32(a.backward_weight);
  if (a.workspace)
    w.workspace = [f = a.workspace, native](const Conv2dProblem& p, at::ScalarType dtype,
                                            ConvPass pass) {
      if (!is_half_type(dtype) || (pass == ConvPass::Forward && native.forward))
        return f(p, dtype, pass);
      Conv2dWorkspace ws = f(p, at::kFloat, pass);
      ws.per_call += copies_bytes(p, pass);
      ws.what = "float32 copies of the half tensors read and of the result before its one "
                "rounding (per call); then as float32: " +
                (ws.what.empty() ? std::string("nothing more") : ws.what);
      return ws;
    };
  return w;
}

}  // namespace cpu
}  // namespace cnnkern
