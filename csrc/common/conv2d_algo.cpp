#include "common/conv2d_algo.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <sstream>

namespace cnnkern {

const char* backend_name(Backend b) { return b == Backend::CPU ? "CPU" : "CUDA"; }

Backend parse_backend(const std::string& device) {
  const std::string type = device.substr(0, device.find(':'));
  if (type == "cpu") return Backend::CPU;
  if (type == "cuda") return Backend::CUDA;
  TORCH_CHECK(false, "cnnkern: device must be 'cpu' or 'cuda'; got '", device, "'");
}

const std::vector<std::string>& known_conv2d_algos() {
  static const std::vector<std::string> names = {"direct", "im2col", "winograd", "winograd_f2"};
  return names;
}

namespace {

// Filled by static registrars while the library loads, read-only afterwards; the mutex
// covers a registration racing with a lookup. A deque keeps references to entries stable
// as more are added.
struct Registry {
  std::mutex mutex;
  std::deque<Conv2dAlgo> algos[2];
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

// The chosen algorithm, or nullptr with `reason` set.
const Conv2dAlgo* resolve(Backend b, const Conv2dProblem& p, at::ScalarType dtype,
                          const std::string& algo, std::string* reason) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  const std::deque<Conv2dAlgo>& algos = algos_of(b);
  if (algo == "auto") {
    const Conv2dAlgo* best = nullptr;
    std::ostringstream why;
    for (const Conv2dAlgo& a : algos) {
      const std::string r = a.why_not(p, dtype);
      if (r.empty()) {
        if (best == nullptr || a.auto_priority > best->auto_priority) best = &a;
      } else {
        why << (why.tellp() > 0 ? "; " : "") << a.name << ": " << r;
      }
    }
    if (best == nullptr)
      *reason = "no algorithm on " + std::string(backend_name(b)) + " can run this problem (" +
                (algos.empty() ? std::string("none is built") : why.str()) + ")";
    return best;
  }
  const auto& known = known_conv2d_algos();
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

void register_conv2d_algo(Backend backend, Conv2dAlgo algo) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  TORCH_CHECK(find(backend, algo.name) == nullptr, "cnnkern: conv2d algorithm '", algo.name,
              "' registered twice for ", backend_name(backend));
  algos_of(backend).push_back(std::move(algo));
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
  resolve(backend, p, dtype, algo, &reason);
  return reason;
}

const Conv2dAlgo& select_conv2d_algo(const char* op, Backend backend, const Conv2dProblem& p,
                                     at::ScalarType dtype, const std::string& algo) {
  std::string reason;
  const Conv2dAlgo* a = resolve(backend, p, dtype, algo, &reason);
  TORCH_CHECK(a != nullptr, op, ": ", reason);
  return *a;
}

}  // namespace cnnkern
