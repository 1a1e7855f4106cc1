#include "ops/conv2d_algo.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <sstream>

#include "core/winograd.h"

namespace cnnkern {

const char* backend_name(Backend b) { return b == Backend::CPU ? "CPU" : "CUDA"; }

Backend parse_backend(const std::string& device) {
  const std::string type = device.substr(0, device.find(':'));
  if (type == "cpu") return Backend::CPU;
  if (type == "cuda") return Backend::CUDA;
  TORCH_CHECK(false, "cnnkern: device must be 'cpu' or 'cuda'; got '", device, "'");
}

std::string winograd_shape_why_not(const std::string& algo, const Conv2dProblem& p) {
  if (winograd::supports_shape(p)) return "";
  auto pair = [](int64_t h, int64_t w) {
    return h == w ? std::to_string(h) : std::to_string(h) + "x" + std::to_string(w);
  };
  return algo + " needs a 3x3 kernel with stride 1 and dilation 1; got " + std::to_string(p.R) +
         "x" + std::to_string(p.S) + " kernel, stride " + pair(p.stride_h, p.stride_w) +
         ", dilation " + pair(p.dil_h, p.dil_w);
}

const char* conv_pass_name(ConvPass pass) {
  switch (pass) {
    case ConvPass::Forward: return "fwd";
    case ConvPass::BackwardInput: return "bwd_input";
    case ConvPass::BackwardWeight: return "bwd_weight";
  }
  return "?";
}

ConvPass parse_conv_pass(const std::string& name) {
  for (ConvPass p : {ConvPass::Forward, ConvPass::BackwardInput, ConvPass::BackwardWeight})
    if (name == conv_pass_name(p)) return p;
  TORCH_CHECK(false, "cnnkern: pass must be 'fwd', 'bwd_input' or 'bwd_weight'; got '", name,
              "'");
}

namespace {

// Filled by static registrars while the library loads, read-only afterwards; the mutex
// covers a registration racing with a lookup. A deque keeps references to entries stable
// as more are added.
struct Registry {
  std::mutex mutex;
  std::deque<Conv2dAlgo> algos[2];
  Conv2dAutoRule auto_rules[2];
};

Registry& registry() {
  static Registry r;
  return r;
}

std::deque<Conv2dAlgo>& algos_of(Backend b) { return registry().algos[static_cast<int>(b)]; }

std::string join(const std::vector<std::string>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  return os.str();
}

const Conv2dAlgo* find(Backend b, const std::string& name) {
  for (const Conv2dAlgo& a : algos_of(b))
    if (a.name == name) return &a;
  return nullptr;
}

// The names registered for any backend, first-registered first (the caller holds the lock).
std::vector<std::string> known_names() {
  std::vector<std::string> names;
  for (const auto& algos : registry().algos)
    for (const Conv2dAlgo& a : algos)
      if (std::find(names.begin(), names.end(), a.name) == names.end()) names.push_back(a.name);
  return names;
}

bool has_kernel(const Conv2dAlgo& a, ConvPass pass) {
  switch (pass) {
    case ConvPass::Forward: return static_cast<bool>(a.forward);
    case ConvPass::BackwardInput: return static_cast<bool>(a.backward_input);
    case ConvPass::BackwardWeight: return static_cast<bool>(a.backward_weight);
  }
  return false;
}

// "" when `a` can run the problem's `pass`, else why not.
std::string why_not_for_pass(const Conv2dAlgo& a, const Conv2dProblem& p, at::ScalarType dtype,
                             ConvPass pass) {
  std::string r = a.why_not(p, dtype);
  if (r.empty() && !has_kernel(a, pass)) r = std::string("no ") + conv_pass_name(pass) + " kernel";
  return r;
}

// The order in which "auto" tries the algorithms: the backend rule's preferences first, then
// the rest by auto_priority; `reason` gets the rule's clause, or how the priorities ordered
// them when the backend has no rule (the caller holds the lock).
std::vector<const Conv2dAlgo*> auto_order(Backend b, const Conv2dProblem& p,
                                          at::ScalarType dtype, ConvPass pass,
                                          std::string* reason) {
  std::vector<const Conv2dAlgo*> order;
  for (const Conv2dAlgo& a : algos_of(b)) order.push_back(&a);
  std::stable_sort(order.begin(), order.end(), [](const Conv2dAlgo* x, const Conv2dAlgo* y) {
    return x->auto_priority > y->auto_priority;
  });
  if (const Conv2dAutoRule& rule = registry().auto_rules[static_cast<int>(b)]) {
    const Conv2dAutoChoice choice = rule(p, dtype, pass);
    auto rank = [&](const Conv2dAlgo* a) {
      return std::find(choice.order.begin(), choice.order.end(), a->name) - choice.order.begin();
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](const Conv2dAlgo* x, const Conv2dAlgo* y) { return rank(x) < rank(y); });
    *reason = choice.reason;
  } else {
    std::ostringstream os;
    os << "no auto rule on " << backend_name(b) << ": the highest auto_priority that can run (";
    for (size_t i = 0; i < order.size(); ++i)
      os << (i ? ", " : "") << order[i]->name << " " << order[i]->auto_priority;
    os << ")";
    *reason = os.str();
  }
  return order;
}

// "auto": the first algorithm in auto_order that can run the pass. nullptr (with `reason`)
// if none can.
const Conv2dAlgo* resolve_auto(Backend b, const Conv2dProblem& p, at::ScalarType dtype,
                               ConvPass pass, std::string* reason) {
  std::string rule;
  const std::vector<const Conv2dAlgo*> order = auto_order(b, p, dtype, pass, &rule);
  std::ostringstream why;
  for (const Conv2dAlgo* a : order) {
    const std::string r = why_not_for_pass(*a, p, dtype, pass);
    if (r.empty()) return a;
    why << (why.tellp() > 0 ? "; " : "") << a->name << ": " << r;
  }
  *reason = "no algorithm on " + std::string(backend_name(b)) + " can run this problem (" +
            (order.empty() ? std::string("none is built") : why.str()) + ")";
  return nullptr;
}

// The chosen algorithm, or nullptr with `reason` set.
const Conv2dAlgo* resolve(Backend b, const Conv2dProblem& p, at::ScalarType dtype,
                          const std::string& algo, ConvPass pass, std::string* reason) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  const std::deque<Conv2dAlgo>& algos = algos_of(b);
  if (algo == "auto") return resolve_auto(b, p, dtype, pass, reason);
  const std::vector<std::string> known = known_names();
  if (std::find(known.begin(), known.end(), algo) == known.end()) {
    *reason = "algo must be 'auto' or one of " + join(known) + "; got '" + algo + "'";
    return nullptr;
  }
  const Conv2dAlgo* a = find(b, algo);
  if (a == nullptr) {
    std::vector<std::string> built;
    for (const Conv2dAlgo& x : algos) built.push_back(x.name);
    *reason = "algo '" + algo + "' is not available on " + backend_name(b) +
              " in this build (available: " + (built.empty() ? "none" : join(built)) + ")";
    return nullptr;
  }
  const std::string r = a->why_not(p, dtype);
  if (!r.empty()) {
    *reason = "algo '" + algo + "' cannot run this problem on " + backend_name(b) + ": " + r;
    return nullptr;
  }
  return a;
}

}  // namespace

void register_conv2d_auto_rule(Backend backend, Conv2dAutoRule rule) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  Conv2dAutoRule& slot = registry().auto_rules[static_cast<int>(backend)];
  TORCH_CHECK(!slot, "cnnkern: a conv2d auto rule registered twice for ", backend_name(backend));
  slot = std::move(rule);
}

void register_conv2d_algo(Backend backend, Conv2dAlgo algo) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  TORCH_CHECK(find(backend, algo.name) == nullptr, "cnnkern: conv2d algorithm '", algo.name,
              "' registered twice for ", backend_name(backend));
  algos_of(backend).push_back(std::move(algo));
}

std::vector<std::string> known_conv2d_algos() {
  std::lock_guard<std::mutex> lock(registry().mutex);
  return known_names();
}

std::vector<std::string> conv2d_algos(Backend backend) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  std::vector<std::string> names;
  for (const Conv2dAlgo& a : algos_of(backend)) names.push_back(a.name);
  return names;
}

std::string conv2d_why_not(Backend backend, const Conv2dProblem& p, at::ScalarType dtype,
                           const std::string& algo) {
  std::string reason;
  resolve(backend, p, dtype, algo, ConvPass::Forward, &reason);
  return reason;
}

Conv2dAutoExplanation explain_conv2d_auto(Backend backend, const Conv2dProblem& p,
                                          at::ScalarType dtype, ConvPass pass) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  Conv2dAutoExplanation out;
  for (const Conv2dAlgo* a : auto_order(backend, p, dtype, pass, &out.reason)) {
    Conv2dAutoExplanation::Entry e;
    e.name = a->name;
    e.why_not = why_not_for_pass(*a, p, dtype, pass);
    // Only for a problem the algorithm accepts: its plan may assume the shape it checks.
    if (e.why_not.empty() && a->workspace) {
      e.has_workspace = true;
      e.workspace = a->workspace(p, dtype, pass);
    }
    out.entries.push_back(std::move(e));
  }
  return out;
}

const Conv2dAlgo& select_conv2d_algo(const char* op, Backend backend, const Conv2dProblem& p,
                                     at::ScalarType dtype, const std::string& algo,
                                     ConvPass pass) {
  std::string reason;
  const Conv2dAlgo* a = resolve(backend, p, dtype, algo, pass, &reason);
  TORCH_CHECK(a != nullptr, op, ": ", reason);
  return *a;
}

}  // namespace cnnkern
