// Every public cnnkern op's schema, in one place (the tests-only ops are declared in
// testing/ops/schemas.cpp). Backends register implementations per dispatch key in csrc/cpu/ and
// csrc/cuda/; autograd and fake (meta) kernels are bound in Python (cnnkern/_registrations/). The
// module init is minimal: importing cnnkern._C runs the static registrations below and in the
// backend files.

#include <Python.h>

#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "ops/checks.h"
#include "ops/conv2d_algo.h"
#include "ops/library.h"

namespace cnnkern {

namespace {

// Introspection (no tensors): which algorithms a backend has, why one cannot run a shape.
std::vector<std::string> conv2d_algorithms(const std::string& device) {
  return conv2d_algos(parse_backend(device));
}

std::string conv2d_why_not_op(c10::IntArrayRef input_size, c10::IntArrayRef weight_size,
                              c10::IntArrayRef stride, c10::IntArrayRef padding,
                              c10::IntArrayRef dilation, int64_t groups,
                              c10::ScalarType dtype, const std::string& device,
                              const std::string& algo) {
  const Conv2dProblem p = make_conv2d_problem("cnnkern.conv2d", input_size, weight_size, stride,
                                              padding, dilation, groups);
  return conv2d_why_not(parse_backend(device), p, dtype, algo);
}

std::string conv2d_select_op(c10::IntArrayRef input_size, c10::IntArrayRef weight_size,
                             c10::IntArrayRef stride, c10::IntArrayRef padding,
                             c10::IntArrayRef dilation, int64_t groups, c10::ScalarType dtype,
                             const std::string& device, const std::string& algo,
                             const std::string& pass) {
  const Conv2dProblem p = make_conv2d_problem("cnnkern.conv2d", input_size, weight_size, stride,
                                              padding, dilation, groups);
  return select_conv2d_algo("cnnkern.conv2d", parse_backend(device), p, dtype, algo,
                            parse_conv_pass(pass))
      .name;
}

// How "auto" decides a pass and every algorithm's standing there (cnnkern.explain): the rule's
// clause (or the priorities), then per algorithm in the order "auto" tries them: its name, why
// it cannot run the pass ("" if it can), its workspace bytes per call and per thread (-1:
// cannot run, or no estimate registered) and what they hold.
std::tuple<std::string, std::vector<std::string>, std::vector<std::string>, std::vector<int64_t>,
           std::vector<int64_t>, std::vector<std::string>>
conv2d_explain_op(c10::IntArrayRef input_size, c10::IntArrayRef weight_size,
                  c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                  int64_t groups, c10::ScalarType dtype, const std::string& device,
                  const std::string& pass) {
  const Conv2dProblem p = make_conv2d_problem("cnnkern.conv2d", input_size, weight_size, stride,
                                              padding, dilation, groups);
  const Conv2dAutoExplanation e =
      explain_conv2d_auto(parse_backend(device), p, dtype, parse_conv_pass(pass));
  std::vector<std::string> names, why_not, what;
  std::vector<int64_t> per_call, per_thread;
  for (const Conv2dAutoExplanation::Entry& a : e.entries) {
    names.push_back(a.name);
    why_not.push_back(a.why_not);
    per_call.push_back(a.has_workspace ? a.workspace.per_call : -1);
    per_thread.push_back(a.has_workspace ? a.workspace.per_thread : -1);
    what.push_back(a.has_workspace ? a.workspace.what : "");
  }
  return {e.reason, names, why_not, per_call, per_thread, what};
}

}  // namespace
}  // namespace cnnkern

CNNKERN_TORCH_LIBRARY(m) {
  // Convolution. `algo` is "auto" or a name from conv2d_algorithms(device). `allow_tf32`:
  // float32 may run on TF32 tensor cores where an algorithm has such a path (the CUDA implicit
  // GEMM); cnnkern's Python API passes cnnkern.backends.allow_tf32 as it was at the call, and
  // the autograd formulas pass the forward's value on to its backward ops.
  m.def(
      "conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, str algo, bool allow_tf32=False) -> Tensor");
  // conv2d with ReLU in the algorithm's epilogue (one pass): the eval path of the fused
  // conv + BN(folded into weight and bias) + ReLU layers.
  m.def(
      "conv2d_relu(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, str algo, bool allow_tf32=False) -> Tensor");
  m.def(
      "conv2d_backward_input(Tensor grad_output, Tensor weight, SymInt[4] input_size, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups, str algo, "
      "bool allow_tf32=False) -> Tensor");
  m.def(
      "conv2d_backward_weight(Tensor grad_output, Tensor input, SymInt[4] weight_size, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups, str algo, "
      "bool allow_tf32=False) -> Tensor");

  // BatchNorm (batch statistics) + optional ReLU (clamped above at relu_max when given: ReLU6
  // is relu_max=6) on a conv output z, training mode: one
  // statistics pass and one normalise+ReLU pass (ops/bn_relu_ops.h); the second half of
  // cnnkern.conv_bn_relu(training=True). Returns (out, mean, invstd, biased var); only `out`
  // is differentiable. Running statistics are updated by the caller (the op stays functional
  // so that autograd can be registered for it).
  m.def(
      "bn_relu_train(Tensor z, Tensor? bn_weight, Tensor? bn_bias, float eps, bool relu, "
      "float? relu_max=None) -> (Tensor, Tensor, Tensor, Tensor)");
  // A ResNet block's tail: relu(BN(z) + residual) in the statistics pass and one apply pass
  // (same returns). Backward (cnnkern/_registrations/bn_relu.py): the gradient masked by
  // out > 0 is the residual's, and bn_relu_backward(relu=False) of it gives z's.
  m.def(
      "bn_add_relu_train(Tensor z, Tensor residual, Tensor? bn_weight, Tensor? bn_bias, "
      "float eps) -> (Tensor, Tensor, Tensor, Tensor)");
  // Its backward: (grad_z, grad_bn_weight, grad_bn_bias) in one reduction pass and one grad_z
  // pass; the conv's autograd node takes grad_z from there.
  m.def(
      "bn_relu_backward(Tensor grad_out, Tensor z, Tensor mean, Tensor invstd, "
      "Tensor? bn_weight, Tensor? bn_bias, bool relu, float? relu_max=None) "
      "-> (Tensor, Tensor, Tensor)");

  // Pooling. Indices are flat positions within each H x W plane, as torch returns them.
  m.def(
      "max_pool2d_with_indices(Tensor input, int[2] kernel_size, int[2] stride, "
      "int[2] padding, int[2] dilation, bool ceil_mode) -> (Tensor, Tensor)");
  // The values alone, for callers that do not want the indices (no int64 tensor is made).
  m.def(
      "max_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
      "int[2] dilation, bool ceil_mode) -> Tensor");
  m.def(
      "max_pool2d_backward(Tensor grad_output, Tensor indices, SymInt[4] input_size, "
      "int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, bool ceil_mode) "
      "-> Tensor");
  m.def(
      "avg_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
      "bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor");
  m.def(
      "avg_pool2d_backward(Tensor grad_output, SymInt[4] input_size, int[2] kernel_size, "
      "int[2] stride, int[2] padding, bool ceil_mode, bool count_include_pad, "
      "int? divisor_override) -> Tensor");
  m.def("adaptive_avg_pool2d(Tensor input, int[2] output_size) -> Tensor");
  m.def("adaptive_avg_pool2d_backward(Tensor grad_output, SymInt[4] input_size) -> Tensor");

  // Introspection for cnnkern.algo (device: "cpu" or "cuda").
  m.def("conv2d_algorithms(str device) -> str[]", &cnnkern::conv2d_algorithms);
  // Every algorithm name, built for a backend or not (what `algo=` may name besides "auto").
  m.def("conv2d_known_algorithms() -> str[]", &cnnkern::known_conv2d_algos);
  m.def(
      "conv2d_why_not(int[] input_size, int[] weight_size, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, ScalarType dtype, str device, str algo) -> str",
      &cnnkern::conv2d_why_not_op);
  m.def(
      "conv2d_select(int[] input_size, int[] weight_size, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, ScalarType dtype, str device, str algo, "
      "str pass_=\"fwd\") -> str",
      &cnnkern::conv2d_select_op);
  // Returns (auto's reason, algorithms in auto's order, why_not, workspace bytes per call,
  // per thread, what the workspace holds) for one pass: conv2d_explain_op above.
  m.def(
      "conv2d_explain(int[] input_size, int[] weight_size, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, ScalarType dtype, str device, str pass_=\"fwd\") -> "
      "(str, str[], str[], int[], int[], str[])",
      &cnnkern::conv2d_explain_op);
}

#if !defined(CNNKERN_CUDA_EMU)  // the emulated library is loaded with torch.ops.load_library
// A bare extension module: `import cnnkern._C` loads this library, and with it the
// registrations. `cuda_built` tells Python whether the CUDA kernels were compiled in.
static struct PyModuleDef cnnkern_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&cnnkern_module);
  if (m != nullptr) PyModule_AddIntConstant(m, "cuda_built", CNNKERN_WITH_CUDA);
  return m;
}
#endif
