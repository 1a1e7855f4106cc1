#pragma once
// The convolution-algorithm registry.
//
// Every algorithm file registers itself for one backend (CONV2D_REGISTER_ALGO at file scope),
// so adding an algorithm touches no central list. The op entry points resolve the user's
// `algo` string here: "auto" picks the highest-priority algorithm that can run the problem;
// a named one that is unknown, not built for this backend, or unable to run the problem is
// a clear error, never a silent fallback.

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <functional>
#include <string>
#include <vector>

#include "core/conv2d_problem.h"

namespace cnnkern {

enum class Backend { CPU, CUDA };
const char* backend_name(Backend b);
Backend parse_backend(const std::string& device);  // "cpu" / "cuda"

// Every algorithm name registered for any backend (the `algo=` values besides "auto"): the one
// list, which Python reads too (torch.ops.cnnkern.conv2d_known_algorithms).
std::vector<std::string> known_conv2d_algos();

// The pass an algorithm is chosen for: "auto" may prefer a different algorithm for each.
enum class ConvPass { Forward, BackwardInput, BackwardWeight };
// "fwd", "bwd_input", "bwd_weight" (the benchmark's names) <-> ConvPass.
const char* conv_pass_name(ConvPass pass);
ConvPass parse_conv_pass(const std::string& name);

// What a forward applies to each output element after the sum (and the bias) while the
// element is still in registers or cache: no extra sweep over the output. The fused
// conv + BN(folded) + ReLU of cnnkern.nn.ConvBNReLU2d in eval mode runs on this.
struct Conv2dEpilogue {
  bool relu = false;  // out = max(out, 0); NaN stays NaN, as torch.relu
};

// How a pass may round: part of every op call (the `allow_tf32` schema argument, from
// cnnkern.backends at the Python call), never a global read by a kernel. Only the CUDA
// implicit GEMM reads it (float32 on TF32 tensor cores); every other algorithm and dtype
// computes the same with it on or off.
struct Conv2dMath {
  bool allow_tf32 = false;
};

// What a pass allocates besides its inputs and its output, as the algorithm plans it for a
// problem (explain() shows it; nothing reserves it). Figures are upper bounds, in bytes:
//   per_call    allocated once for the call: freed on return, or kept by the calling thread
//               for its next call (grow-only scratch; `what` says which);
//   per_thread  for each thread that runs part of the pass (1 with one thread), kept by that
//               thread between calls;
// so a call takes at most per_call + threads * per_thread. On CUDA both are device memory
// from PyTorch's caching allocator, per_thread is 0.
struct Conv2dWorkspace {
  int64_t per_call = 0;
  int64_t per_thread = 0;
  std::string what;  // the buffers, in words ("" when there are none)
};

struct Conv2dAlgo {
  std::string name;
  // Higher wins under "auto" among the algorithms that can run a problem.
  int auto_priority = 0;
  // "" when the algorithm can run the problem in this dtype, else the reason it cannot.
  std::function<std::string(const Conv2dProblem&, at::ScalarType)> why_not;
  // Inputs arrive contiguous (NCHW) on the right device, or, when forward_takes_channels_last
  // and the call is channels_last (ops/layout.h: conv_memory_format), contiguous in that
  // format; the output is NCHW or channels_last (the op converts it to the call's format),
  // with the epilogue applied.
  std::function<at::Tensor(const at::Tensor& input, const at::Tensor& weight,
                           const c10::optional<at::Tensor>& bias, const Conv2dProblem&,
                           const Conv2dEpilogue&, const Conv2dMath&)>
      forward;
  // May be empty: then the op fails clearly for this algorithm's backward.
  std::function<at::Tensor(const at::Tensor& grad_output, const at::Tensor& weight,
                           const Conv2dProblem&, const Conv2dMath&)>
      backward_input;
  std::function<at::Tensor(const at::Tensor& grad_output, const at::Tensor& input,
                           const Conv2dProblem&, const Conv2dMath&)>
      backward_weight;
  // The workspace of `pass` on a problem it can run (why_not empty) in `dtype`. Registered
  // beside the kernels, from the same plan they follow; empty: reported as unknown.
  std::function<Conv2dWorkspace(const Conv2dProblem&, at::ScalarType, ConvPass)> workspace;
  // The forward reads channels_last data natively (the CUDA tensor-core implicit GEMM): a
  // channels_last call hands it input and weight as they are instead of copying to NCHW.
  // Last, so that the positional initialisers of the other algorithms stay valid.
  bool forward_takes_channels_last = false;
};

void register_conv2d_algo(Backend backend, Conv2dAlgo algo);

// A backend's "auto" rule: algorithm names in order of preference for a problem, dtype and
// pass, and the rule's clause that gave them, in words (what explain() prints, so the text
// comes from the code that decides). "auto" takes the first of them that can run the problem
// (and has the pass's kernel); algorithms the rule does not name come after it, highest
// auto_priority first. Without a rule, auto_priority alone decides.
struct Conv2dAutoChoice {
  std::vector<std::string> order;
  std::string reason;
};
using Conv2dAutoRule =
    std::function<Conv2dAutoChoice(const Conv2dProblem&, at::ScalarType, ConvPass)>;
void register_conv2d_auto_rule(Backend backend, Conv2dAutoRule rule);

// "" when the problem has the Winograd shape (core/winograd.h: winograd::supports_shape), else
// why not, naming `algo`: the first check of every Winograd algorithm's why_not.
std::string winograd_shape_why_not(const std::string& algo, const Conv2dProblem& p);

// The algorithms built for a backend, in registration order.
std::vector<std::string> conv2d_algos(Backend backend);

// "" when `algo` ("auto" included) can run the problem, else the full reason.
std::string conv2d_why_not(Backend backend, const Conv2dProblem& p, at::ScalarType dtype,
                           const std::string& algo);

// How "auto" decides for a problem and pass, and every algorithm's standing there.
struct Conv2dAutoExplanation {
  // The rule's clause, or (no rule) how the registered priorities ordered the algorithms.
  std::string reason;
  struct Entry {
    std::string name;
    std::string why_not;  // "" when it can run this pass (kernel present)
    // Filled when it can run and registered an estimate (has_workspace).
    bool has_workspace = false;
    Conv2dWorkspace workspace;
  };
  std::vector<Entry> entries;  // every algorithm of the backend, in the order "auto" tries them
};
Conv2dAutoExplanation explain_conv2d_auto(Backend backend, const Conv2dProblem& p,
                                          at::ScalarType dtype, ConvPass pass);

// Resolves `algo` for `pass` or throws (c10::Error) with the reason, prefixed by `op`.
const Conv2dAlgo& select_conv2d_algo(const char* op, Backend backend, const Conv2dProblem& p,
                                     at::ScalarType dtype, const std::string& algo,
                                     ConvPass pass = ConvPass::Forward);

struct Conv2dAlgoRegistrar {
  Conv2dAlgoRegistrar(Backend backend, Conv2dAlgo algo) {
    register_conv2d_algo(backend, std::move(algo));
  }
  Conv2dAlgoRegistrar(Backend backend, Conv2dAutoRule rule) {
    register_conv2d_auto_rule(backend, std::move(rule));
  }
};

}  // namespace cnnkern

#define CNNKERN_CONCAT_INNER(a, b) a##b
#define CNNKERN_CONCAT(a, b) CNNKERN_CONCAT_INNER(a, b)
#define CONV2D_REGISTER_ALGO(backend, ...)                                   \
  static ::cnnkern::Conv2dAlgoRegistrar CNNKERN_CONCAT(conv2d_algo_reg_, __LINE__)( \
      backend, __VA_ARGS__)
// At file scope, once per backend: CONV2D_REGISTER_AUTO_RULE(Backend::CPU, rule_function);
#define CONV2D_REGISTER_AUTO_RULE(backend, rule)                                     \
  static ::cnnkern::Conv2dAlgoRegistrar CNNKERN_CONCAT(conv2d_auto_rule_reg_, __LINE__)( \
      backend, ::cnnkern::Conv2dAutoRule(rule))
