#pragma once
// Kernel launches under the emulator. translate.py rewrites every launch of the project's .cu
// sources,
//     kernel<T><<<grid, block, smem, stream>>>(args...);
// into
//     ::cuda_emu::launch_kernel(kernel<T>, ::cuda_emu::LaunchSite{...}, grid, block, smem,
//                               stream)(args...);
// (same line, so messages and coverage point at the original source). The arguments are
// converted to the kernel's parameter types once, as CUDA copies them into parameter space,
// and every emulated thread calls the kernel with its own copy.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_emu/engine.h"

namespace cuda_emu {

template <class... Params>
class Launcher {
 public:
  using Kernel = void (*)(Params...);
  Launcher(Kernel kernel, const LaunchSite& site, dim3 grid, dim3 block, std::size_t smem,
           cudaStream_t /*stream: launches are synchronous*/)
      : kernel_(kernel), site_(site), grid_(grid), block_(block), smem_(smem) {}

  template <class... Args>
  void operator()(Args&&... args) const {
    static_assert(sizeof...(Args) == sizeof...(Params),
                  "kernel launched with the wrong number of arguments");
    using Stored = std::tuple<std::decay_t<Params>...>;
    struct Call {
      Kernel kernel;
      const Stored* params;
    };
    const Stored params(static_cast<std::decay_t<Params>>(std::forward<Args>(args))...);
    Call call{kernel_, &params};
    run_grid(site_, reinterpret_cast<const void*>(kernel_), grid_, block_, smem_,
             &run_thread<Call>, &call);
  }

 private:
  template <class Call>
  static void run_thread(void* arg) {
    const Call* call = static_cast<const Call*>(arg);
    std::apply(call->kernel, *call->params);  // by value: each thread copies the arguments
  }
  Kernel kernel_;
  LaunchSite site_;
  dim3 grid_, block_;
  std::size_t smem_;
};

template <class... Params>
Launcher<Params...> launch_kernel(void (*kernel)(Params...), const LaunchSite& site, dim3 grid,
                                  dim3 block, std::size_t smem = 0,
                                  cudaStream_t stream = nullptr) {
  return Launcher<Params...>(kernel, site, grid, block, smem, stream);
}

// One __shared__ declaration's storage in the running block. translate.py rewrites
//     __shared__ double sums[256];
// into
//     auto& sums = ::cuda_emu::shared_var<double[256]>([] {}, __FILE__, __LINE__);
// The lambda's type is unique to the declaration (and to each instantiation of a template
// around it), which makes it the key.
template <class Tag>
struct SharedKey {
  static constexpr char key = 0;
};

template <class T, class Tag>
T& shared_var(Tag, const char* file, int line) {
  return *static_cast<T*>(
      block_shared(&SharedKey<Tag>::key, sizeof(T), alignof(T), SourceLoc{file, line}));
}

// extern __shared__ T name[];  ->  T* const name = ::cuda_emu::dynamic_shared_as<T>();
template <class T>
T* dynamic_shared_as() {
  return static_cast<T*>(dynamic_shared());
}

}  // namespace cuda_emu
