//===- emu.h - CUDA kernels on the host, threads as fibers ------*- C++ -*-===//
//
// The CUDA kernels' own source, compiled by the host compiler against this
// header instead of the toolkit's, so the kernels are tested on machines
// without a GPU (CI). translate.py rewrites what is not C++ (launches,
// dynamic shared memory); everything else maps here:
//   - a launch runs its blocks one after another; a block's threads are
//     fibers (ucontext) on the calling thread, each running until it
//     reaches __syncthreads or __syncwarp, where it waits until every live
//     thread of its block or warp is there; shuffles go through the warp's
//     exchange slots between two warp barriers;
//   - __shared__ variables are static (one block runs at a time), dynamic
//     shared memory is a fresh allocation of exactly the launch's bytes,
//     filled with NaN bytes (AddressSanitizer catches an overrun);
//   - WMMA fragments hold their whole 16x16 tile in every lane, so the
//     semantics (row/col major, ldm) are the documented ones with no
//     register layout; loads and stores check WMMA's alignment rules.
// What it cannot tell: timing, races the barriers hide, register spills,
// and the real fragment layouts (the kernels never rely on them).
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_TESTS_CUDAEMU_EMU_H
#define TRLC_TESTS_CUDAEMU_EMU_H

#include "trlc/BFloat16.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <ucontext.h>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x = 1, unsigned y = 1, unsigned z = 1) : x(x), y(y), z(z) {}
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
  return {x, y, z, w};
}
struct float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

using std::max;
using std::min;
template <typename A, typename B>
requires(!std::is_same_v<A, B>) auto min(A a, B b) {
  using T = std::common_type_t<A, B>;
  return std::min<T>(a, b);
}
template <typename A, typename B>
requires(!std::is_same_v<A, B>) auto max(A a, B b) {
  using T = std::common_type_t<A, B>;
  return std::max<T>(a, b);
}

// --- bf16 ------------------------------------------------------------------
struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) {
  return trlc::bf16ToFloat(h.bits);
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  return {trlc::floatToBf16(f)};
}

// --- runtime API ---------------------------------------------------------
using cudaStream_t = void *;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
inline const char *cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "invalid value";
}

namespace emu {

/// What a kernel may ask of dynamic shared memory (H100: 227 KiB, above
/// 48 KiB only after cudaFuncSetAttribute).
inline std::map<const void *, size_t> &smemAllowed() {
  static std::map<const void *, size_t> m;
  return m;
}
inline cudaError_t &lastError() {
  static cudaError_t e = cudaSuccess;
  return e;
}

/// A CUDA thread: a fiber on the host thread that runs the launch. It runs
/// until it reaches a barrier (or ends); the block's scheduler resumes the
/// threads a barrier releases. One host thread, so a run is deterministic,
/// and a barrier some thread never reaches is reported, not a hang.
struct Fiber {
  enum State { Ready, AtBlock, AtWarp, Done };
  ucontext_t ctx;
  State state = Ready;
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  Fiber *current = nullptr;
  std::function<void()> body;
  std::vector<unsigned long long> slots; // one shuffle value per thread
  std::vector<unsigned char> dynamicSmem;
};
inline Block *block = nullptr;

inline void wait(Fiber::State at) {
  Fiber *f = block->current;
  f->state = at;
  swapcontext(&f->ctx, &block->scheduler);
}

inline void fiberEntry() {
  block->body();
  block->current->state = Fiber::Done; // uc_link returns to the scheduler
}

/// Stacks for up to 1024 threads, allocated once (untouched pages cost
/// nothing).
inline char *stackOf(unsigned t, size_t &bytes) {
  static constexpr size_t kStack = 256 << 10;
  static std::vector<std::unique_ptr<char[]>> stacks(1024);
  if (!stacks[t])
    stacks[t].reset(new char[kStack]);
  bytes = kStack;
  return stacks[t].get();
}

/// Runs one block of n threads to the end.
inline void runBlock(Block &b, unsigned n, uint3 bid) {
  b.fibers.assign(n, Fiber{});
  for (unsigned t = 0; t < n; ++t) {
    Fiber &f = b.fibers[t];
    getcontext(&f.ctx);
    size_t bytes;
    f.ctx.uc_stack.ss_sp = stackOf(t, bytes);
    f.ctx.uc_stack.ss_size = bytes;
    f.ctx.uc_link = &b.scheduler;
    makecontext(&f.ctx, fiberEntry, 0);
  }
  block = &b;
  blockIdx = bid;
  for (;;) {
    bool ran = false;
    for (unsigned t = 0; t < n; ++t)
      if (b.fibers[t].state == Fiber::Ready) {
        b.current = &b.fibers[t];
        threadIdx = {t, 0, 0};
        swapcontext(&b.scheduler, &b.fibers[t].ctx);
        ran = true;
      }
    // Release the barriers every live thread of their scope has reached.
    bool alive = false, released = false, allAtBlock = true;
    for (const Fiber &f : b.fibers)
      if (f.state != Fiber::Done) {
        alive = true;
        allAtBlock &= f.state == Fiber::AtBlock;
      }
    if (!alive)
      return;
    if (allAtBlock) {
      for (Fiber &f : b.fibers)
        if (f.state == Fiber::AtBlock)
          f.state = Fiber::Ready;
      continue;
    }
    for (unsigned w = 0; w < n / 32; ++w) {
      bool any = false, all = true;
      for (unsigned t = w * 32; t < w * 32 + 32; ++t) {
        Fiber::State st = b.fibers[t].state;
        if (st == Fiber::Done)
          continue;
        any = true;
        all &= st == Fiber::AtWarp;
      }
      if (any && all) {
        for (unsigned t = w * 32; t < w * 32 + 32; ++t)
          if (b.fibers[t].state == Fiber::AtWarp)
            b.fibers[t].state = Fiber::Ready;
        released = true;
      }
    }
    if (!ran && !released) {
      std::fprintf(stderr,
                   "emu: block (%u, %u, %u) deadlocks: its threads "
                   "wait at different barriers\n",
                   bid.x, bid.y, bid.z);
      std::abort();
    }
  }
}

template <typename T> T shuffle(T v, int srcLane) {
  static_assert(sizeof(T) <= 8);
  unsigned base = threadIdx.x / 32 * 32;
  unsigned long long raw = 0;
  std::memcpy(&raw, &v, sizeof(T));
  block->slots[threadIdx.x] = raw;
  wait(Fiber::AtWarp);
  raw = block->slots[base + (srcLane & 31)];
  wait(Fiber::AtWarp);
  T out;
  std::memcpy(&out, &raw, sizeof(T));
  return out;
}

struct Config {
  dim3 grid, threads;
  size_t smem = 0;
  cudaStream_t stream = nullptr;
  Config(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = nullptr)
      : grid(g), threads(b), smem(smem), stream(s) {}
};

/// kernel<<<config>>>(args...): the blocks one after another.
template <typename... P> auto launch(void (*kernel)(P...), Config c) {
  return [kernel, c](auto &&...args) {
    unsigned n = c.threads.x * c.threads.y * c.threads.z;
    auto allowed = smemAllowed().find(reinterpret_cast<const void *>(kernel));
    size_t limit = allowed == smemAllowed().end() ? 48 << 10 : allowed->second;
    if (c.threads.y != 1 || c.threads.z != 1 || n % 32 != 0 || n > 1024 ||
        c.smem > limit || c.grid.x == 0 || c.grid.y > 65535 ||
        c.grid.z > 65535) {
      std::fprintf(stderr,
                   "emu: bad launch (%u threads, %zu bytes of "
                   "shared memory, limit %zu)\n",
                   n, c.smem, limit);
      lastError() = cudaErrorInvalidValue;
      return;
    }
    std::tuple<std::decay_t<P>...> params(args...);
    blockDim = c.threads;
    gridDim = c.grid;
    for (unsigned z = 0; z < c.grid.z; ++z)
      for (unsigned y = 0; y < c.grid.y; ++y)
        for (unsigned x = 0; x < c.grid.x; ++x) {
          Block b;
          b.body = [&] { std::apply(kernel, params); };
          b.slots.resize(n);
          b.dynamicSmem.assign(c.smem, 0xff);
          runBlock(b, n, {x, y, z});
        }
  };
}

inline void *dynamicShared() {
  return block->dynamicSmem.empty() ? nullptr : block->dynamicSmem.data();
}

} // namespace emu

inline void __syncthreads() { emu::wait(emu::Fiber::AtBlock); }
inline void __syncwarp(unsigned = 0xffffffffu) {
  emu::wait(emu::Fiber::AtWarp);
}
template <typename T> T __shfl_sync(unsigned, T v, int src) {
  return emu::shuffle(v, src);
}
template <typename T> T __shfl_xor_sync(unsigned, T v, int mask) {
  return emu::shuffle(v, static_cast<int>(threadIdx.x % 32) ^ mask);
}
inline int atomicCAS(int *p, int compare, int value) {
  int old = *p;
  if (old == compare)
    *p = value;
  return old;
}
template <typename T> T atomicAdd(T *p, T v) {
  T old = *p;
  *p = old + v;
  return old;
}

inline cudaError_t cudaGetLastError() {
  cudaError_t e = emu::lastError();
  emu::lastError() = cudaSuccess;
  return e;
}
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
  std::memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind,
                                   cudaStream_t) {
  std::memmove(dst, src, n);
  return cudaSuccess;
}
template <typename K>
cudaError_t cudaFuncSetAttribute(K kernel, cudaFuncAttribute, int value) {
  if (value > 227 << 10)
    return cudaErrorInvalidValue;
  emu::smemAllowed()[reinterpret_cast<const void *>(kernel)] = value;
  return cudaSuccess;
}

#endif // TRLC_TESTS_CUDAEMU_EMU_H
