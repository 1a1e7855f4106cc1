// The CUDA emulator's engine: launches, the block scheduler, barriers and warp collectives
// (see cuda_emu/engine.h for the model).

#include "cuda_emu/engine.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <vector>

#include "async_copy.h"
#include "fiber.h"
#include "sanitizer.h"
#include "warp_ops.h"

#if defined(__SANITIZE_THREAD__) || defined(CUDA_EMU_TSAN)
#include <sanitizer/tsan_interface.h>
#define CUDA_EMU_TSAN_ACQUIRE(p) __tsan_acquire(p)
#define CUDA_EMU_TSAN_RELEASE(p) __tsan_release(p)
#else
#define CUDA_EMU_TSAN_ACQUIRE(p) ((void)(p))
#define CUDA_EMU_TSAN_RELEASE(p) ((void)(p))
#endif

namespace cuda_emu {
namespace {

constexpr int kWarp = 32;
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr std::size_t kMaxStaticShared = 48 * 1024;    // what nvcc allows without opt-in
// A block's static + dynamic shared memory: 48 KiB unless the kernel opted in with
// cudaFuncSetAttribute(MaxDynamicSharedMemorySize); then its dynamic part may reach the opt-in
// and the two together 227 KiB (H100).
constexpr std::size_t kDefaultBlockShared = 48 * 1024;
constexpr std::size_t kMaxDynamicShared = 227 * 1024;
// Kernel frames are small, but AddressSanitizer's are several times larger.
constexpr std::size_t kStackBytes = 256 * 1024;

// cudaError_t values (driver_types.h), without including the CUDA headers here.
constexpr int kSuccess = 0, kInvalidValue = 1, kInvalidConfiguration = 9, kLaunchOutOfResources = 701,
              kIllegalInstruction = 715, kLaunchFailure = 719;

enum class State { Runnable, AtBarrier, AtWarp, Done, Aborted };

struct Thread {
  ThreadView view{};
  State state = State::Runnable;
  SourceLoc loc{nullptr, 0};  // where it waits
  WarpOp op = WarpOp::Sync;
  unsigned mask = 0;
  WarpPayload* payload = nullptr;
  Fiber* fiber = nullptr;
};

struct SharedVar {
  const void* key;
  void* ptr;
  std::size_t bytes;
};

constexpr std::size_t kRedzone = 64;
constexpr std::size_t kMaxSharedVars = 64;  // redzones reserved for this many declarations

struct Run {  // one launch in progress
  const LaunchSite* site = nullptr;
  dim3 grid, block;
  std::size_t dynamic_smem = 0;
  std::size_t dynamic_opt_in = 0;  // the kernel's MaxDynamicSharedMemorySize, 0 if none
  void (*body)(void*) = nullptr;
  void* arg = nullptr;
  std::vector<Thread> threads;
  // The block's shared memory: one arena per launch, reused by each block in turn. Dynamic
  // shared memory first, then the static __shared__ variables as threads first reach them,
  // each followed by a redzone (AddressSanitizer: an out-of-bounds shared access stops there).
  unsigned char* arena = nullptr;
  std::size_t arena_bytes = 0, arena_used = 0;
  std::vector<SharedVar> shared;
  std::size_t static_shared = 0;
  void* dynamic = nullptr;
  AsyncCopies async;  // the block's cp.async groups
  uint64_t barrier_generation = 0;
  std::vector<uint64_t> warp_generation;
  bool failed = false;
  int error = kSuccess;
  std::string message;
  // ThreadSanitizer sync objects (addresses only): launch start, block end, the block
  // barrier's two alternating generations, and each warp's.
  char tsan_start = 0, tsan_block_end = 0, tsan_barrier[2] = {0, 0};
  std::vector<char> tsan_warp;  // 2 per warp
};

std::mutex launch_mutex;  // one launch at a time in the process
thread_local Run* current_run = nullptr;
thread_local Thread* current = nullptr;
thread_local int last_error = kSuccess;
thread_local std::string last_detail;

Order g_order = Order::Forward;
std::mt19937_64 g_rng(0);
Stats g_stats;
std::vector<std::unique_ptr<Fiber>> g_fibers;  // pooled across launches (under launch_mutex)
std::mutex attr_mutex;
std::map<const void*, std::size_t> g_dynamic_opt_in;  // kernel -> MaxDynamicSharedMemorySize

std::string where(SourceLoc loc) {
  if (loc.file == nullptr) return "?";
  std::string f = loc.file;
  const std::size_t csrc = f.rfind("csrc/");
  if (csrc != std::string::npos) f = f.substr(csrc + 5);
  return f + ":" + std::to_string(loc.line);
}

std::string idx3(const uint3& v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

std::string thread_name(const Thread& t) {
  return "thread " + idx3(t.view.thread_idx) + " of block " + idx3(t.view.block_idx) +
         " (lane " + std::to_string(t.view.linear % kWarp) + " of warp " +
         std::to_string(t.view.linear / kWarp) + ")";
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::Sync: return "__syncwarp";
    case WarpOp::ShflIdx: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::All: return "__all_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::Mma: return "mma.sync";
    case WarpOp::Ldmatrix: return "ldmatrix";
  }
  return "?";
}

std::string waiting_at(const Thread& t) {
  switch (t.state) {
    case State::AtBarrier: return "__syncthreads at " + where(t.loc);
    case State::AtWarp: {
      std::ostringstream os;
      os << op_name(t.op) << " (mask 0x" << std::hex << t.mask << std::dec << ") at "
         << where(t.loc);
      return os.str();
    }
    case State::Done: return "the end of the kernel";
    default: return "no synchronisation point";
  }
}

void fail(Run& r, int error, const std::string& message) {
  if (r.failed) return;
  r.failed = true;
  r.error = error;
  r.message = std::string(r.site->kernel) + " launched at " +
              where(SourceLoc{r.site->file, r.site->line}) + ": " + message;
}

void thread_entry(void* arg) {
  Thread* t = static_cast<Thread*>(arg);
  CUDA_EMU_TSAN_ACQUIRE(&current_run->tsan_start);
  current_run->body(current_run->arg);
  t->state = State::Done;
  CUDA_EMU_TSAN_RELEASE(&current_run->tsan_block_end);
}

// Called on a fiber: park it in its current state until the scheduler resumes it. The release
// lets the scheduler free what the thread touched if the launch fails while it waits.
void park() {
  CUDA_EMU_TSAN_RELEASE(&current_run->tsan_block_end);
  current->fiber->yield_to_scheduler();
}

void make_order(std::vector<int>& order, int n) {
  order.resize(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  if (g_order == Order::Reverse) std::reverse(order.begin(), order.end());
  if (g_order == Order::Random) std::shuffle(order.begin(), order.end(), g_rng);
}

std::string hex(const void* p) {
  std::ostringstream os;
  os << p;
  return os.str();
}

// An ldmatrix's rows (lanes' in[0], 16 bytes each) that a cp.async has not landed yet: the
// issuing thread has not waited for its group, so on a GPU the rows may hold anything.
std::string ldmatrix_pending_rows(const Run& r, int w0,
                                  const std::array<WarpPayload*, kWarp>& lanes) {
  for (int k = 0; k < 8 * lanes[0]->param && k < kWarp; ++k) {
    const void* row = reinterpret_cast<const void*>(lanes[k]->in[0]);
    const unsigned char* dst = nullptr;
    const PendingCopy* c = r.async.overlapping(row, 16, &dst);
    if (c == nullptr) continue;
    return "the row at " + hex(row) + " (address of lane " + std::to_string(k) + ", " +
           thread_name(r.threads[w0 + k]) + ") is the destination of the cp.async at " +
           where(c->loc) + " by " + thread_name(r.threads[c->thread]) +
           ", which has not landed: that thread has not waited for its group "
           "(cp.async.wait_group / wait_all, then __syncthreads) before the read";
  }
  return "";
}

// The warp collectives waiting in warp w that can complete; false when none could (a
// failure is recorded in r when a collective can never complete).
bool resolve_warps(Run& r, int n) {
  bool released = false;
  for (int w0 = 0; w0 < n && !r.failed; w0 += kWarp) {
    const int lanes = std::min(kWarp, n - w0);
    for (int l = 0; l < lanes && !r.failed; ++l) {
      Thread& t = r.threads[w0 + l];
      if (t.state != State::AtWarp) continue;
      std::vector<Thread*> group(kWarp, nullptr);
      bool complete = true;
      for (int k = 0; k < kWarp && complete; ++k) {
        if (!(t.mask >> k & 1u)) continue;
        if (k >= lanes) {
          fail(r, kLaunchFailure,
               std::string(op_name(t.op)) + " at " + where(t.loc) + " by " +
                   thread_name(t) + " names lane " + std::to_string(k) +
                   " in its mask, but the block has no such thread (blockDim " +
                   idx3(uint3{r.block.x, r.block.y, r.block.z}) + ")");
          return false;
        }
        Thread& o = r.threads[w0 + k];
        if (o.state == State::AtWarp && o.op == t.op && o.mask == t.mask && o.loc.line == t.loc.line &&
            std::strcmp(o.loc.file, t.loc.file) == 0) {
          group[k] = &o;
          continue;
        }
        if (o.state == State::AtWarp || o.state == State::AtBarrier || o.state == State::Done) {
          fail(r, kLaunchFailure,
               std::string("divergent warp collective: ") + thread_name(t) + " waits at " +
                   waiting_at(t) + " but lane " + std::to_string(k) + " of its mask (" +
                   thread_name(o) + ") " +
                   (o.state == State::Done ? std::string("has exited")
                                           : "waits at " + waiting_at(o)));
          return false;
        }
        complete = false;
      }
      if (!complete) continue;
      std::array<WarpPayload*, kWarp> payloads{};
      for (int k = 0; k < kWarp; ++k) payloads[k] = group[k] != nullptr ? group[k]->payload : nullptr;
      std::string err = t.op == WarpOp::Ldmatrix ? ldmatrix_pending_rows(r, w0, payloads) : "";
      if (err.empty()) err = complete_warp_op(t.op, t.mask, payloads);
      if (!err.empty()) {
        fail(r, kLaunchFailure, std::string(op_name(t.op)) + " at " + where(t.loc) + ": " + err);
        return false;
      }
      ++r.warp_generation[w0 / kWarp];
      ++g_stats.warp_collectives;
      if (t.op == WarpOp::Mma) ++g_stats.mmas;
      if (t.op == WarpOp::Ldmatrix) ++g_stats.ldmatrices;
      for (Thread* g : group)
        if (g != nullptr) g->state = State::Runnable;
      released = true;
    }
  }
  return released;
}

// The block barrier, if every live thread waits at it (at one source line).
bool resolve_barrier(Run& r, int n) {
  const Thread* first = nullptr;
  const Thread* exited = nullptr;
  int waiting = 0;
  for (int i = 0; i < n; ++i) {
    const Thread& t = r.threads[i];
    if (t.state == State::Done) {
      if (exited == nullptr) exited = &t;
      continue;
    }
    if (t.state != State::AtBarrier) return false;
    if (first == nullptr) {
      first = &t;
    } else if (t.loc.line != first->loc.line || std::strcmp(t.loc.file, first->loc.file) != 0) {
      fail(r, kLaunchFailure,
           "divergent __syncthreads: " + thread_name(*first) + " waits at " +
               where(first->loc) + " while " + thread_name(t) + " waits at " + where(t.loc));
      return false;
    }
    ++waiting;
  }
  if (waiting == 0) return false;
  if (exited != nullptr) {
    fail(r, kLaunchFailure,
         "__syncthreads at " + where(first->loc) + " is never reached by " +
             thread_name(*exited) + ", which has exited");
    return false;
  }
  ++r.barrier_generation;
  ++g_stats.barriers;
  for (int i = 0; i < n; ++i) r.threads[i].state = State::Runnable;
  return true;
}

std::string describe_deadlock(const Run& r, int n) {
  std::map<std::string, std::pair<int, const Thread*>> groups;
  for (int i = 0; i < n; ++i) {
    const Thread& t = r.threads[i];
    auto& g = groups[waiting_at(t)];
    if (g.first++ == 0) g.second = &t;
  }
  std::ostringstream os;
  os << "the block cannot proceed (no synchronisation point is complete):";
  for (const auto& kv : groups)
    os << " " << kv.second.first << " thread(s) at " << kv.first << " (e.g. "
       << thread_name(*kv.second.second) << ");";
  return os.str();
}

void fill_ff(void* p, std::size_t bytes) {
  // A volatile loop, not memset: under ThreadSanitizer an intercepted memset would count as the
  // filling thread's write and race with the other threads' first stores.
  volatile unsigned char* q = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < bytes; ++i) q[i] = 0xFF;
}

std::size_t round_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

// Allocated by the launching thread, so every emulated thread's use happens after it.
void open_arena(Run& r) {
  r.arena_bytes = round_up(r.dynamic_smem, 256) + kMaxStaticShared + kMaxSharedVars * (kRedzone + 256);
  r.arena = static_cast<unsigned char*>(std::aligned_alloc(256, r.arena_bytes));
  if (r.arena == nullptr) std::abort();
}

void close_arena(Run& r) {
  CUDA_EMU_ASAN_UNPOISON(r.arena, r.arena_bytes);
  std::free(r.arena);
  r.arena = nullptr;
}

void reset_arena(Run& r) {
  r.shared.clear();
  r.static_shared = 0;
  r.arena_used = 0;
  CUDA_EMU_ASAN_POISON(r.arena, r.arena_bytes);
  r.dynamic = nullptr;
  if (r.dynamic_smem > 0) {
    CUDA_EMU_ASAN_UNPOISON(r.arena, r.dynamic_smem);
    fill_ff(r.arena, r.dynamic_smem);
    r.dynamic = r.arena;
    r.arena_used = round_up(r.dynamic_smem, 256) + kRedzone;
  }
}

void run_block(Run& r, uint3 bidx, std::vector<int>& order) {
  const int n = static_cast<int>(r.block.x * r.block.y * r.block.z);
  while (static_cast<int>(g_fibers.size()) < n) g_fibers.push_back(std::make_unique<Fiber>(kStackBytes));
  r.threads.assign(n, Thread{});
  r.warp_generation.assign((n + kWarp - 1) / kWarp, 0);
  r.tsan_warp.assign(2 * r.warp_generation.size(), 0);
  for (int i = 0; i < n; ++i) {
    Thread& t = r.threads[i];
    const unsigned x = i % r.block.x, y = (i / r.block.x) % r.block.y,
                   z = i / (r.block.x * r.block.y);
    t.view = ThreadView{uint3{x, y, z}, bidx, r.block, r.grid, i};
    t.fiber = g_fibers[i].get();
    t.fiber->start(&thread_entry, &t);
  }
  reset_arena(r);
  r.async.reset(n);
  CUDA_EMU_TSAN_RELEASE(&r.tsan_start);
  ++g_stats.blocks;
  g_stats.threads += n;
  for (;;) {
    make_order(order, n);
    for (int i : order) {
      Thread& t = r.threads[i];
      if (t.state != State::Runnable) continue;
      current = &t;
      t.fiber->switch_to();
      current = nullptr;
      if (r.failed) return;
    }
    if (resolve_warps(r, n)) continue;
    if (r.failed) return;
    if (resolve_barrier(r, n)) continue;
    if (r.failed) return;
    bool all_done = true;
    for (int i = 0; i < n; ++i) all_done = all_done && r.threads[i].state == State::Done;
    if (all_done) break;
    fail(r, kLaunchFailure, describe_deadlock(r, n));
    return;
  }
  CUDA_EMU_TSAN_ACQUIRE(&r.tsan_block_end);
}

std::string check_config(const Run& r) {
  const dim3 g = r.grid, b = r.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  std::ostringstream os;
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
    os << "a zero grid or block dimension";
  else if (b.x > 1024 || b.y > 1024 || b.z > 64 || threads > kMaxThreadsPerBlock)
    os << "block " << idx3(uint3{b.x, b.y, b.z}) << " exceeds the 1024-thread limit";
  else if (g.x > 2147483647u || g.y > 65535u || g.z > 65535u)
    os << "grid " << idx3(uint3{g.x, g.y, g.z}) << " exceeds the grid limits (2^31-1, 65535, 65535)";
  return os.str();
}

// The launch's dynamic shared memory against what the kernel may have (cudaErrorInvalidValue
// on a GPU); the static part joins the check when the block declares it (block_shared).
std::string check_dynamic_shared(const Run& r) {
  std::ostringstream os;
  if (r.dynamic_opt_in == 0 && r.dynamic_smem > kDefaultBlockShared)
    os << r.dynamic_smem << " bytes of dynamic shared memory exceed the 48 KiB a block gets "
       << "without cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, n)";
  else if (r.dynamic_opt_in > 0 && r.dynamic_smem > r.dynamic_opt_in)
    os << r.dynamic_smem << " bytes of dynamic shared memory exceed the kernel's "
       << "cudaFuncAttributeMaxDynamicSharedMemorySize of " << r.dynamic_opt_in << " bytes";
  return os.str();
}

// The block's shared memory once its static part has grown to `static_bytes`; "" if it fits.
std::string check_block_shared(const Run& r, std::size_t static_bytes) {
  std::ostringstream os;
  if (r.dynamic_opt_in == 0 && static_bytes + r.dynamic_smem > kDefaultBlockShared)
    os << static_bytes << " bytes of static __shared__ memory + " << r.dynamic_smem
       << " bytes of dynamic shared memory exceed the 48 KiB a block gets without "
       << "cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, n)";
  else if (r.dynamic_opt_in > 0 && static_bytes + r.dynamic_opt_in > kMaxDynamicShared)
    os << static_bytes << " bytes of static __shared__ memory + the kernel's "
       << "cudaFuncAttributeMaxDynamicSharedMemorySize of " << r.dynamic_opt_in
       << " bytes exceed the H100's 227 KiB per block";
  return os.str();
}

}  // namespace

const ThreadView& current_thread() {
  if (current == nullptr) {
    std::fprintf(stderr, "cuda_emu: device code (threadIdx & co.) called outside a kernel\n");
    std::abort();
  }
  return current->view;
}

void block_barrier(SourceLoc loc) {
  Thread* t = current;
  Run& r = *current_run;
  t->state = State::AtBarrier;
  t->loc = loc;
  const uint64_t gen = r.barrier_generation;
  CUDA_EMU_TSAN_RELEASE(&r.tsan_barrier[gen & 1]);
  park();
  CUDA_EMU_TSAN_ACQUIRE(&r.tsan_barrier[gen & 1]);
}

void warp_collective(WarpOp op, unsigned mask, WarpPayload& payload, SourceLoc loc) {
  Thread* t = current;
  Run& r = *current_run;
  const int lane = t->view.linear % kWarp, warp = t->view.linear / kWarp;
  if (!(mask >> lane & 1u)) {
    std::ostringstream os;
    os << op_name(op) << " with mask 0x" << std::hex << mask << std::dec
       << " called by lane " << lane << ", which the mask leaves out";
    device_fault(os.str(), loc);
  }
  t->state = State::AtWarp;
  t->op = op;
  t->mask = mask;
  t->loc = loc;
  t->payload = &payload;
  const uint64_t gen = r.warp_generation[warp];
  char* sync = &r.tsan_warp[2 * warp + (gen & 1)];
  CUDA_EMU_TSAN_RELEASE(sync);
  park();
  CUDA_EMU_TSAN_ACQUIRE(sync);
}

unsigned warp_active_mask() {
  const Run& r = *current_run;
  const int w0 = current->view.linear / kWarp * kWarp;
  const int n = static_cast<int>(r.threads.size());
  unsigned m = 0;
  for (int k = 0; k < kWarp && w0 + k < n; ++k)
    if (r.threads[w0 + k].state != State::Done) m |= 1u << k;
  return m;
}

namespace {
// Fails the launch with `error` and stops the calling thread (its fiber does not return).
void stop_thread(int error, const std::string& message, SourceLoc loc) {
  if (current == nullptr || current_run == nullptr) {
    std::fprintf(stderr, "cuda_emu: %s at %s outside a kernel\n", message.c_str(),
                 where(loc).c_str());
    std::abort();
  }
  Run& r = *current_run;
  fail(r, error, thread_name(*current) + ": " + message + " at " + where(loc));
  current->state = State::Aborted;
  CUDA_EMU_TSAN_RELEASE(&r.tsan_block_end);
  current->fiber->finish();
}
}  // namespace

void device_fault(const std::string& message, SourceLoc loc) {
  stop_thread(kIllegalInstruction, message, loc);
}

void* block_shared(const void* key, std::size_t bytes, std::size_t align, SourceLoc loc) {
  Run& r = *current_run;
  for (const SharedVar& v : r.shared)
    if (v.key == key) return v.ptr;
  r.static_shared += bytes;
  if (r.static_shared > kMaxStaticShared) {
    std::ostringstream os;
    os << "the block's static __shared__ memory reaches " << r.static_shared
       << " bytes with the declaration at " << where(loc)
       << ", above the 48 KiB a kernel may declare statically";
    device_fault(os.str(), loc);
  }
  // A GPU refuses such a launch outright; the emulator learns the static size only here.
  const std::string over = check_block_shared(r, r.static_shared);
  if (!over.empty()) stop_thread(kInvalidValue, "invalid argument: " + over, loc);
  const std::size_t offset = round_up(r.arena_used, align < 16 ? 16 : align);
  if (r.shared.size() >= kMaxSharedVars || offset + bytes + kRedzone > r.arena_bytes)
    device_fault("more __shared__ declarations than the emulator reserves room for", loc);
  void* p = r.arena + offset;
  CUDA_EMU_ASAN_UNPOISON(p, bytes);
  fill_ff(p, bytes);
  r.arena_used = offset + bytes + kRedzone;
  r.shared.push_back(SharedVar{key, p, bytes});
  return p;
}

void* dynamic_shared() { return current_run->dynamic; }

namespace {

// Whether [p, p + n) lies inside one shared allocation of the running block (its dynamic shared
// memory or one __shared__ declaration it has reached).
bool in_block_shared(const Run& r, const void* p, std::size_t n) {
  const auto inside = [p, n](const void* base, std::size_t bytes) {
    const auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(base);
    return a >= b && a + n <= b + bytes;
  };
  if (r.dynamic != nullptr && inside(r.dynamic, r.dynamic_smem)) return true;
  for (const SharedVar& v : r.shared)
    if (inside(v.ptr, v.bytes)) return true;
  return false;
}

bool aligned(const void* p, std::size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

}  // namespace

void ldmatrix(int num, bool trans, uint32_t* regs, const void* row, SourceLoc loc) {
  const Run& r = *current_run;
  const int lane = current->view.linear % kWarp;
  if (num != 1 && num != 2 && num != 4)
    device_fault("ldmatrix loads 1, 2 or 4 matrices (.x1/.x2/.x4); got " + std::to_string(num),
                 loc);
  // PTX: thread 8 i + r gives row r of matrix i; each row is 16 bytes, 16-byte aligned, in
  // shared memory. The addresses of the other threads are not used.
  if (lane < 8 * num) {
    if (!aligned(row, 16))
      device_fault("ldmatrix row address " + hex(row) + " is not 16-byte aligned", loc);
    if (!in_block_shared(r, row, 16))
      device_fault("ldmatrix row address " + hex(row) +
                       " is not 16 bytes inside the block's shared memory", loc);
  }
  WarpPayload p{};
  p.in[0] = reinterpret_cast<uintptr_t>(row);
  p.param = num;
  p.width = trans ? 1 : 0;
  warp_collective(WarpOp::Ldmatrix, 0xffffffffu, p, loc);
  for (int i = 0; i < num; ++i) regs[i] = static_cast<uint32_t>(p.out[i]);
}

void cp_async(void* dst, const void* src, int cp_size, int src_size, bool cache_global,
              SourceLoc loc) {
  Run& r = *current_run;
  const std::string what = cache_global ? "cp.async.cg" : "cp.async.ca";
  if (cp_size != 4 && cp_size != 8 && cp_size != 16)
    device_fault(what + ": cp-size must be 4, 8 or 16; got " + std::to_string(cp_size), loc);
  if (cache_global && cp_size != 16)
    device_fault("cp.async.cg copies 16 bytes; got cp-size " + std::to_string(cp_size), loc);
  if (src_size < 0 || src_size > cp_size)
    device_fault(what + ": src-size " + std::to_string(src_size) + " is outside [0, cp-size " +
                     std::to_string(cp_size) + "]", loc);
  if (!aligned(dst, cp_size) || !aligned(src, cp_size))
    device_fault(what + ": the " + (aligned(dst, cp_size) ? "source " + hex(src)
                                                          : "destination " + hex(dst)) +
                     " is not aligned to the cp-size, " + std::to_string(cp_size) + " bytes", loc);
  if (!in_block_shared(r, dst, cp_size))
    device_fault(what + ": the destination " + hex(dst) + " is not " + std::to_string(cp_size) +
                     " bytes inside the block's shared memory", loc);
  const unsigned char* other_dst = nullptr;
  if (const PendingCopy* other = r.async.overlapping(dst, cp_size, &other_dst))
    device_fault(what + " into " + hex(dst) + " overlaps the pending destination " +
                     hex(other_dst) + " of the cp.async at " + where(other->loc) + " by " +
                     thread_name(r.threads[other->thread]) +
                     ": two copies in flight to the same shared bytes (a stage reused before "
                     "its copies were waited for, or two sources mapped to one slot)", loc);
  PendingCopy c;
  c.bytes = cp_size;
  c.thread = current->view.linear;
  c.loc = loc;
  // The source is read now (AddressSanitizer names this line if it is out of bounds); the
  // bytes past src-size are zeros.
  std::memcpy(c.data, src, static_cast<std::size_t>(src_size));
  r.async.issue(static_cast<unsigned char*>(dst), c);
  ++g_stats.cp_asyncs;
}

void cp_async_commit(SourceLoc) { current_run->async.commit(current->view.linear); }

void cp_async_wait(int n, SourceLoc) {
  Run& r = *current_run;
  if (n < 0) {  // wait_all: commit_group, then wait_group 0
    r.async.commit(current->view.linear);
    n = 0;
  }
  r.async.wait(current->view.linear, n);
}

int set_max_dynamic_shared(const void* kernel, int bytes) {
  if (bytes < 0 || static_cast<std::size_t>(bytes) > kMaxDynamicShared) {
    set_error(kInvalidValue, "cudaFuncSetAttribute: MaxDynamicSharedMemorySize " +
                                 std::to_string(bytes) + " is outside [0, 227 KiB]");
    return kInvalidValue;
  }
  std::lock_guard<std::mutex> lock(attr_mutex);
  g_dynamic_opt_in[kernel] = static_cast<std::size_t>(bytes);
  return kSuccess;
}

int run_grid(const LaunchSite& site, const void* kernel, dim3 grid, dim3 block,
             std::size_t dynamic_smem, void (*thread_body)(void*), void* arg) {
  std::lock_guard<std::mutex> lock(launch_mutex);
  Run r;
  r.site = &site;
  r.grid = grid;
  r.block = block;
  r.dynamic_smem = dynamic_smem;
  {
    std::lock_guard<std::mutex> attr_lock(attr_mutex);
    const auto it = g_dynamic_opt_in.find(kernel);
    if (it != g_dynamic_opt_in.end()) r.dynamic_opt_in = it->second;
  }
  r.body = thread_body;
  r.arg = arg;
  ++g_stats.launches;
  const std::string bad = check_config(r);
  const std::string too_much_shared = check_dynamic_shared(r);
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (!bad.empty()) {
    fail(r, kInvalidConfiguration, "invalid configuration: " + bad);
  } else if (!too_much_shared.empty()) {
    fail(r, kInvalidValue, "invalid argument: " + too_much_shared);
  } else if (site.max_threads > 0 && threads > site.max_threads) {
    fail(r, kLaunchOutOfResources,
         std::to_string(threads) + " threads per block, above the kernel's __launch_bounds__(" +
             std::to_string(site.max_threads) + ")");
  } else {
    Run* saved = current_run;
    current_run = &r;
    std::vector<uint3> blocks;
    blocks.reserve(std::size_t(grid.x) * grid.y * grid.z);
    for (unsigned z = 0; z < grid.z; ++z)
      for (unsigned y = 0; y < grid.y; ++y)
        for (unsigned x = 0; x < grid.x; ++x) blocks.push_back(uint3{x, y, z});
    if (g_order == Order::Reverse) std::reverse(blocks.begin(), blocks.end());
    if (g_order == Order::Random) std::shuffle(blocks.begin(), blocks.end(), g_rng);
    std::vector<int> order;
    open_arena(r);
    for (const uint3& b : blocks) {
      run_block(r, b, order);
      if (r.failed) break;
    }
    CUDA_EMU_TSAN_ACQUIRE(&r.tsan_block_end);  // also after a failure, from the parked threads
    close_arena(r);
    current_run = saved;
  }
  last_error = r.error;
  if (r.failed) last_detail = r.message;
  return r.error;
}

void set_order(Order order, uint64_t seed) {
  std::lock_guard<std::mutex> lock(launch_mutex);
  g_order = order;
  g_rng.seed(seed);
}

Order order() { return g_order; }

namespace {
std::atomic<int> g_sm_count{132};
}  // namespace
void set_sm_count(int n) { g_sm_count = n; }
int sm_count() { return g_sm_count; }

const std::string& last_error_detail() { return last_detail; }

void set_error(int code, const std::string& detail) {
  last_error = code;
  last_detail = detail;
}

int take_last_error() {
  const int e = last_error;
  last_error = kSuccess;
  return e;
}

int peek_last_error() { return last_error; }

Stats stats() { return g_stats; }

}  // namespace cuda_emu
