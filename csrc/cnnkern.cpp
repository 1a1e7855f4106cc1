// Every cnnkern op's schema, in one place. Backends register implementations per dispatch
// key in csrc/cpu/ and csrc/cuda/; autograd and fake (meta) kernels are bound in Python
// (cnnkern/_ops.py). The module init is minimal: importing cnnkern._C runs the static
// registrations below and in the backend files.

#include <Python.h>

#include <torch/library.h>

#include <string>
#include <vector>

#include "common/checks.h"
#include "common/conv2d_algo.h"
#include "cpu/gemm_dispatch.h"

namespace cnnkern {

// cpu/implicit_gemm_test_ops.cpp (tests only).
std::vector<int64_t> igemm_plan_op(const std::string& pass, c10::IntArrayRef input_size,
                                   c10::IntArrayRef weight_size, c10::IntArrayRef stride,
                                   c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                   int64_t groups, int64_t splits);
std::vector<int64_t> mma_fragments_op(const std::string& shape, const std::string& operand);

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

}  // namespace
}  // namespace cnnkern

TORCH_LIBRARY(cnnkern, m) {
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

  // BatchNorm (batch statistics) + optional ReLU on a conv output z, training mode: one
  // statistics pass and one normalise+ReLU pass (common/bn_relu_ops.h); the second half of
  // cnnkern.conv_bn_relu(training=True). Returns (out, mean, invstd, biased var); only `out`
  // is differentiable. Running statistics are updated by the caller (the op stays functional
  // so that autograd can be registered for it).
  m.def(
      "bn_relu_train(Tensor z, Tensor? bn_weight, Tensor? bn_bias, float eps, bool relu) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  // Its backward: (grad_z, grad_bn_weight, grad_bn_bias) in one reduction pass and one grad_z
  // pass; the conv's autograd node takes grad_z from there.
  m.def(
      "bn_relu_backward(Tensor grad_out, Tensor z, Tensor mean, Tensor invstd, "
      "Tensor? bn_weight, Tensor? bn_bias, bool relu) -> (Tensor, Tensor, Tensor)");

  // Pooling. Indices are flat positions within each H x W plane, as torch returns them.
  m.def(
      "max_pool2d_with_indices(Tensor input, int[2] kernel_size, int[2] stride, "
      "int[2] padding, int[2] dilation, bool ceil_mode) -> (Tensor, Tensor)");
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
  m.def(
      "conv2d_why_not(int[] input_size, int[] weight_size, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, ScalarType dtype, str device, str algo) -> str",
      &cnnkern::conv2d_why_not_op);
  m.def(
      "conv2d_select(int[] input_size, int[] weight_size, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, ScalarType dtype, str device, str algo, "
      "str pass_=\"fwd\") -> str",
      &cnnkern::conv2d_select_op);

  // INTERNAL, for tests only (tests/test_gemm.py): the CPU GEMM behind im2col and Winograd,
  // op(a) @ op(b) (+ c) (+ row_bias), on a named kernel set ("" = the default), A pre-packed
  // or not, B packed by a caller's function or not; and
  // the kernel sets this CPU can run. Not part of the public API.
  m.def(
      "_gemm(Tensor a, Tensor b, Tensor? c, bool trans_a, bool trans_b, bool prepack_a=False, "
      "bool custom_b=False, Tensor? row_bias=None, str isa=\"\") -> Tensor");
  m.def("_gemm_isas() -> str[]", &cnnkern::cpu::gemm_detail::available_isas);
  // INTERNAL, for tests only (tests/test_implicit_gemm_cpu.py): the CUDA implicit-GEMM index
  // math and tile loop (common/implicit_gemm.h) run on the CPU in float64 -- a pass's dense
  // operand, the whole pass emulated block by block, and its grid / split-K plan.
  m.def(
      "_igemm_matrix(str pass_, str operand, Tensor input, Tensor weight, Tensor grad_output, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor");
  m.def(
      "_igemm_emulate(str pass_, Tensor input, Tensor weight, Tensor grad_output, Tensor? bias, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups, int splits=0, "
      "bool relu=False, bool mma=False, bool tf32=False) -> Tensor");
  // ... the TF32 path's operand rounding (the model of cvt.rna.tf32.f32) and the mma
  // fragment layouts, (row, col) per lane and element.
  m.def("_tf32_round(Tensor x) -> Tensor");
  m.def("_mma_fragments(str shape, str operand) -> int[]", &cnnkern::mma_fragments_op);
  m.def(
      "_wino_emulate(int m, str pass_, Tensor input, Tensor weight, Tensor grad_output, "
      "Tensor? bias, int[2] padding, int groups, int chunk_images=0) -> Tensor");
  m.def(
      "_igemm_plan(str pass_, int[] input_size, int[] weight_size, int[2] stride, "
      "int[2] padding, int[2] dilation, int groups, int splits=0) -> int[]",
      &cnnkern::igemm_plan_op);
  // INTERNAL, for tests only (tests/test_pool2d_element_cpu.py): the public pooling ops' bodies
  // with the CUDA kernels' per-element work (common/pool2d_element.h) run on the CPU, element
  // after element, NCHW or channels_last as the public ops choose.
  m.def(
      "_pool_emu_max_pool2d_with_indices(Tensor input, int[2] kernel_size, int[2] stride, "
      "int[2] padding, int[2] dilation, bool ceil_mode) -> (Tensor, Tensor)");
  m.def(
      "_pool_emu_max_pool2d_backward(Tensor grad_output, Tensor indices, SymInt[4] input_size, "
      "int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, bool ceil_mode) "
      "-> Tensor");
  m.def(
      "_pool_emu_avg_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
      "bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor");
  m.def(
      "_pool_emu_avg_pool2d_backward(Tensor grad_output, SymInt[4] input_size, "
      "int[2] kernel_size, int[2] stride, int[2] padding, bool ceil_mode, "
      "bool count_include_pad, int? divisor_override) -> Tensor");
  m.def("_pool_emu_adaptive_avg_pool2d(Tensor input, int[2] output_size) -> Tensor");
  m.def(
      "_pool_emu_adaptive_avg_pool2d_backward(Tensor grad_output, SymInt[4] input_size) "
      "-> Tensor");
}

// A bare extension module: `import cnnkern._C` loads this library, and with it the
// registrations. `cuda_built` tells Python whether the CUDA kernels were compiled in.
static struct PyModuleDef cnnkern_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&cnnkern_module);
  if (m != nullptr) PyModule_AddIntConstant(m, "cuda_built", CNNKERN_WITH_CUDA);
  return m;
}
