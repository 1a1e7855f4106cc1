#pragma once
// The op library (namespace) cnnkern registers, and the dispatch key of its CUDA backend.
//
// The CUDA emulator (csrc/testing/cuda_emu) compiles the public schemas, the op bodies and the
// CUDA backend a second time into a library of its own, "cnnkern_emu" (CNNKERN_LIBRARY), whose
// CUDA implementations are registered for CPU tensors (CNNKERN_CUDA_DISPATCH_KEY): the tests
// call the very glue and kernels a GPU runs, on the CPU. Everything else uses `cnnkern`/CUDA.

#include <torch/library.h>

#ifndef CNNKERN_LIBRARY
#define CNNKERN_LIBRARY cnnkern
#endif

#if defined(CNNKERN_CUDA_EMU)
#define CNNKERN_CUDA_DISPATCH_KEY CPU
#else
#define CNNKERN_CUDA_DISPATCH_KEY CUDA
#endif

// TORCH_LIBRARY pastes and stringifies its namespace argument as written, so the macro name
// has to be expanded one level up.
#define CNNKERN_TORCH_LIBRARY_EXPANDED(ns, m) TORCH_LIBRARY(ns, m)
#define CNNKERN_TORCH_LIBRARY(m) CNNKERN_TORCH_LIBRARY_EXPANDED(CNNKERN_LIBRARY, m)
#define CNNKERN_TORCH_LIBRARY_IMPL(key, m) TORCH_LIBRARY_IMPL(CNNKERN_LIBRARY, key, m)
