#pragma once
// The CUDA emulator's engine interface: what the device API (cuda_emu/device.h), the kernel
// launches written by translate.py and the tests call into. Torch-free.
//
// Model. A launch runs its blocks one after another on the calling OS thread; a block's
// threads are fibers (fiber.h). A thread runs until it reaches a synchronisation point (a
// __syncthreads, a warp collective: __syncwarp, the *_sync shuffles and votes, mma.sync,
// ldmatrix) or ends; when no thread can run, the engine checks the waiting threads and
// releases the ones whose point is complete: a block barrier once every thread of the block
// waits at the same source line, a warp collective once every lane of its mask waits at the
// same source line with the same mask. Anything else (threads at different barriers, a barrier some threads
// never reach, a lane of the mask that exited or waits elsewhere) fails the launch with a
// message naming the file, line and thread. Threads between two synchronisation points run in
// the order the engine is set to (forward, reverse or random), as are blocks, so a race on
// shared or global memory shows up as a result that depends on the order.

#include <cstddef>
#include <cstdint>
#include <string>

#include <vector_types.h>

namespace cuda_emu {

struct SourceLoc {
  const char* file;
  int line;
};

// The emulated thread the calling fiber is running (the values of threadIdx and friends).
struct ThreadView {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  int linear;  // thread_idx.x + block_dim.x * (thread_idx.y + block_dim.y * thread_idx.z)
};
const ThreadView& current_thread();

// --- Synchronisation points (called on a fiber) ---------------------------------------------
void block_barrier(SourceLoc loc);

enum class WarpOp : int {
  Sync, ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, All, Any, Mma, Ldmatrix
};

// A lane's part of a warp collective: `in` what it contributes, `out` what it gets back.
struct WarpPayload {
  uint64_t in[10];
  uint64_t out[4];
  int param;       // shuffle lane / delta / xor mask; ldmatrix: the number of matrices
  int width;       // shuffle width; ldmatrix: 1 for .trans
  int value_bytes; // shuffle: size of the value (for messages)
  const char* mma_shape;  // Mma: the instruction's shape and types, as in the PTX
};
void warp_collective(WarpOp op, unsigned mask, WarpPayload& payload, SourceLoc loc);

// __trap() and other faults found on a fiber: the launch fails with this message.
[[noreturn]] void device_fault(const std::string& message, SourceLoc loc);

// --- Shared memory ---------------------------------------------------------------------------
// The block's instance of one __shared__ declaration (`key` identifies the declaration),
// placed on first use in each block and filled with 0xFF bytes, so that a read of a
// never-written element gives NaN (or -1) instead of a plausible zero; under AddressSanitizer
// a redzone follows it.
void* block_shared(const void* key, std::size_t bytes, std::size_t align, SourceLoc loc);
// The block's dynamic shared memory (the launch's shared-memory size), also 0xFF-filled.
void* dynamic_shared();

// --- Shared-memory data movement of sm_80+ (called on a fiber) --------------------------------
// ldmatrix.sync.aligned.m8n8.x{num}{.trans}.shared.b16 (ldmatrix.cpp): `row` is this lane's row
// address (used for lanes below 8 * num, checked to be 16-byte aligned and inside one of the
// block's shared allocations); regs[0..num) receive the lane's fragments. A warp collective.
void ldmatrix(int num, bool trans, uint32_t* regs, const void* row, SourceLoc loc);
// cp.async.{ca,cg}.shared.global [dst], [src], cp_size, src_size (async_copy.cpp): the copy is
// queued in the thread's current (uncommitted) group and lands in shared memory only when the
// thread waits for that group; until then its destination reads as 0xFF bytes (and is poisoned
// under AddressSanitizer), and ldmatrix of it fails the launch.
void cp_async(void* dst, const void* src, int cp_size, int src_size, bool cache_global,
              SourceLoc loc);
void cp_async_commit(SourceLoc loc);
// cp.async.wait_group n (n >= 0) / cp.async.wait_all (n < 0: commit, then wait_group 0).
void cp_async_wait(int n, SourceLoc loc);

// --- Launches --------------------------------------------------------------------------------
struct LaunchSite {
  const char* kernel;  // the kernel expression as written at the launch
  const char* file;
  int line;
  unsigned max_threads;  // the kernel's __launch_bounds__, 0 if it declares none
};

// Runs `thread_body(arg)` on every thread of every block; returns the launch's error code
// (a cudaError_t) and leaves it for cudaGetLastError. `body` runs on each thread's fiber;
// `kernel` identifies the kernel for its attributes (set_max_dynamic_shared).
int run_grid(const LaunchSite& site, const void* kernel, dim3 grid, dim3 block,
             std::size_t dynamic_smem, void (*thread_body)(void*), void* arg);

// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes): the
// kernel's opt-in above the 48 KiB (static + dynamic) a block gets by default. Returns a
// cudaError_t: cudaErrorInvalidValue for a size outside [0, 227 KiB].
int set_max_dynamic_shared(const void* kernel, int bytes);

// --- Settings (tests) -------------------------------------------------------------------------
enum class Order : int { Forward = 0, Reverse = 1, Random = 2 };
// The order threads (between synchronisation points) and blocks run in; `seed` drives Random.
void set_order(Order order, uint64_t seed);
Order order();
// The multiprocessor count cudaDeviceGetAttribute reports (plans size their grids by it):
// 132, an H100 SXM, unless a test sets another to reach a plan's other branches.
void set_sm_count(int n);
int sm_count();

// The message of the last failed launch or API call on this thread ("" if none).
const std::string& last_error_detail();
void set_error(int code, const std::string& detail);  // cudaError_t code

// Counters since the process started (tests check that kernels really ran here).
struct Stats {
  uint64_t launches = 0, blocks = 0, threads = 0, barriers = 0, warp_collectives = 0, mmas = 0,
           ldmatrices = 0, cp_asyncs = 0;
};
Stats stats();

}  // namespace cuda_emu
