// The per-weight-version cache of the CUDA Winograd's transformed filters (see the header).

#include "cuda/winograd_filter_cache.h"

#include <ATen/ops/empty.h>
#include <c10/core/Storage.h>
#include <c10/util/intrusive_ptr.h>

#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <vector>

#include "cuda/conv2d_winograd.h"
#include "cuda/cuda_glue.h"
#include "cuda/device_context.h"

namespace cnnkern {
namespace {

// What the transformed filters depend on: the weight's bytes (storage, offset, version), how
// they are read (sizes, dtype, groups, m, grad_input) and where (device).
struct Key {
  const c10::StorageImpl* storage = nullptr;
  int64_t offset = 0, version = 0, groups = 1;
  std::vector<int64_t> sizes;
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);
  int m = 0;
  bool grad_input = false;
  bool operator==(const Key& o) const {
    return storage == o.storage && offset == o.offset && version == o.version &&
           groups == o.groups && sizes == o.sizes && dtype == o.dtype && device == o.device &&
           m == o.m && grad_input == o.grad_input;
  }
};

struct Entry {
  Key key;
  // Expired once the weight's storage is freed: its address may then be reused by another
  // tensor at the same version, which must not hit this entry.
  c10::weak_intrusive_ptr<c10::StorageImpl> alive;
  at::Tensor U;
};

std::mutex g_mutex;
std::list<Entry> g_entries;  // most recently used first

at::Tensor transform(const at::Tensor& weight, int m, const Conv2dProblem& p, bool grad_input) {
  const CudaDType dt = cuda_dtype_of(weight);
  at::Tensor U = at::empty({static_cast<int64_t>(winograd_filter_bytes(dt, m, p, grad_input))},
                           weight.options().dtype(at::kByte));
  CNNKERN_CUDA_CHECK(launch_winograd_filter(dt, m, p, grad_input, weight.const_data_ptr(),
                                            U.mutable_data_ptr(), current_cuda_stream()));
  return U;
}

bool cache_enabled() {
  const char* v = std::getenv("CNNKERN_WINOGRAD_FILTER_CACHE");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

}  // namespace

at::Tensor winograd_filter(const at::Tensor& weight, int m, const Conv2dProblem& p,
                           bool grad_input) {
  if (!cache_enabled() || weight.is_inference()) return transform(weight, m, p, grad_input);
  Key key;
  key.storage = weight.storage().unsafeGetStorageImpl();
  key.offset = weight.storage_offset();
  key.version = weight._version();
  key.groups = p.groups;
  key.sizes = weight.sizes().vec();
  key.dtype = weight.scalar_type();
  key.device = weight.device();
  key.m = m;
  key.grad_input = grad_input;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_entries.remove_if([](const Entry& e) { return e.alive.expired(); });
  for (auto it = g_entries.begin(); it != g_entries.end(); ++it) {
    if (it->key == key) {
      g_entries.splice(g_entries.begin(), g_entries, it);
      return it->U;
    }
  }
  at::Tensor U = transform(weight, m, p, grad_input);
  g_entries.push_front(Entry{key, weight.storage().getWeakStorageImpl(), U});
  while (static_cast<int64_t>(g_entries.size()) > kWinogradFilterCacheEntries)
    g_entries.pop_back();
  return U;
}

}  // namespace cnnkern
