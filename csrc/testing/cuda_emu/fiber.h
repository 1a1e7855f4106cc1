#pragma once
// User-space fibers for the CUDA emulator: one per emulated CUDA thread, all run by the OS
// thread that launched the kernel. A switch saves only what the System V x86-64 ABI asks a
// callee to keep (rbx, rbp, r12-r15, the stack pointer, MXCSR and the x87 control word), so it
// is a handful of instructions; ucontext's swapcontext also saves the signal mask, a system call
// (~1.5 us per switch) that made shuffle- and mma-heavy kernels crawl.
//
// Sanitizers are told about every switch (AddressSanitizer: __sanitizer_*_switch_fiber, so that
// it knows which stack is live; ThreadSanitizer: one __tsan fiber per emulated thread, switched
// without synchronisation, so that happens-before comes only from the emulated barriers).

#include <cstddef>

namespace cuda_emu {

class Fiber {
 public:
  using Entry = void (*)(void* arg);
  // A fiber with its own stack (a guard page below it). Fibers are pooled: start() arms one
  // (new, or finished) to run entry(arg) from the next switch_to.
  explicit Fiber(std::size_t stack_bytes);
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  void start(Entry entry, void* arg);
  bool finished() const { return finished_; }

  // Resumes this fiber from the scheduler (the OS thread's own stack); returns when the fiber
  // calls yield_to_scheduler() or its entry function calls finish().
  void switch_to();
  // Called on the fiber: back to the scheduler; returns when the scheduler resumes it.
  void yield_to_scheduler();
  // Called on the fiber as its last act: back to the scheduler for good (never returns).
  [[noreturn]] void finish();

 private:
  static void trampoline();
  void* sp_ = nullptr;            // saved stack pointer of the fiber while it is suspended
  void* scheduler_sp_ = nullptr;  // saved stack pointer of the scheduler while the fiber runs
  char* mapping_ = nullptr;       // guard page + stack
  std::size_t mapping_bytes_ = 0;
  Entry entry_ = nullptr;
  void* arg_ = nullptr;
  bool finished_ = true;
  // Sanitizer bookkeeping.
  void* asan_fake_stack_ = nullptr;
  const void* scheduler_stack_bottom_ = nullptr;
  std::size_t scheduler_stack_size_ = 0;
  void* tsan_fiber_ = nullptr;
  void* tsan_scheduler_ = nullptr;
};

}  // namespace cuda_emu
