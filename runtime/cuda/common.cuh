//===- common.cuh - what every CUDA kernel file shares ------------*- CUDA
//-*-===//
//
// Launch-error checks, index loads, the status word, and fixed-shape warp
// and block reductions (a block's sum is the same whatever the data, so
// results are reproducible run to run).
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_CUDA_COMMON_CUH
#define TRLC_RUNTIME_CUDA_COMMON_CUH

#include "kernels.h"
#include "trlc/BFloat16.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace trlc::cuda {

/// Throws with the call, the place and CUDA's message. The backend turns
/// it into a KernelError.
inline void check(cudaError_t e, const char *what, const char *file, int line) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(what) + " failed at " + file + ":" +
                             std::to_string(line) + ": " +
                             cudaGetErrorString(e));
}
#define TRLC_CUDA_CHECK(call)                                                  \
  ::trlc::cuda::check((call), #call, __FILE__, __LINE__)
/// After a kernel launch: a bad configuration fails here, not later.
#define TRLC_LAUNCHED() TRLC_CUDA_CHECK(cudaGetLastError())

inline unsigned blocksFor(int64_t n, int threads, int64_t most = 65535 * 8) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > most ? most : b));
}

/// A grid of at least `rows` blocks (rows >= 1), 65535 wide; `gridRow()`
/// is a block's row.
inline dim3 rowGrid(int64_t rows) {
  int64_t x = rows < 65535 ? rows : 65535;
  return dim3(static_cast<unsigned>(x),
              static_cast<unsigned>((rows + x - 1) / x));
}
__device__ inline int64_t gridRow() {
  return blockIdx.y * static_cast<int64_t>(gridDim.x) + blockIdx.x;
}

__device__ inline long long loadIndex(Index x, int64_t i) {
  switch (x.type) {
  case Index::I64:
    return static_cast<const long long *>(x.data)[i];
  case Index::I32:
    return static_cast<const int *>(x.data)[i];
  case Index::U8:
    return static_cast<const unsigned char *>(x.data)[i];
  case Index::F32:
    return static_cast<const float *>(x.data)[i] != 0.0f;
  }
  return 0;
}

__device__ inline void report(Status st, int code, long long value) {
  if (atomicCAS(st.code, 0, code) == 0)
    *st.value = value;
}

/// In-range check of an id read from user data: false (and thread 0 of the
/// block records `code` with the value) when outside [0, limit).
__device__ inline bool inRange(Status st, int code, long long value,
                               int64_t limit) {
  bool ok = value >= 0 && value < limit;
  if (!ok && threadIdx.x == 0)
    report(st, code, value);
  return ok;
}

struct SumOp {
  template <typename T> __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  template <typename T> __device__ T operator()(T a, T b) const {
    return max(a, b);
  }
};

template <typename T, typename Op> __device__ inline T warpReduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1)
    v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <typename T> __device__ inline T warpSum(T v) {
  return warpReduce(v, SumOp{});
}
template <typename T> __device__ inline T warpMax(T v) {
  return warpReduce(v, MaxOp{});
}

/// `op` over the block (blockDim.x a multiple of 32, at most 1024), returned
/// to every thread. Every thread of the block must call it.
template <typename T, typename Op>
__device__ T blockReduce(T v, T identity, Op op) {
  __shared__ T partial[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warpReduce(v, op);
  if (lane == 0)
    partial[warp] = v;
  __syncthreads();
  T total = warpReduce(lane < warps ? partial[lane] : identity, op);
  __syncthreads(); // `partial` is free for the next call
  return total;
}
template <typename T> __device__ T blockSum(T v) {
  return blockReduce(v, T(0), SumOp{});
}
template <typename T> __device__ T blockMax(T v) {
  return blockReduce(v, T(-INFINITY), MaxOp{});
}

/// The sum of x[0, n) in double by one block: each thread a contiguous
/// slice, then blockSum. The same n always sums in the same order.
template <typename T> __device__ double orderedSum(const T *x, int64_t n) {
  double acc = 0;
  int64_t lo = n * threadIdx.x / blockDim.x,
          hi = n * (threadIdx.x + 1) / blockDim.x;
  for (int64_t i = lo; i < hi; ++i)
    acc += x[i];
  return blockSum(acc);
}

/// Element i of an fp32 or bf16 operand, as a float.
__device__ inline float load(Floats x, int64_t i) {
  return x.bf16 ? bf16ToFloat(static_cast<const uint16_t *>(x.data)[i])
                : static_cast<const float *>(x.data)[i];
}
/// Stores v (rounded to nearest even in bf16, trlc/BFloat16.h).
__device__ inline void store(FloatsOut y, int64_t i, float v) {
  if (y.bf16)
    static_cast<uint16_t *>(y.data)[i] = floatToBf16(v);
  else
    static_cast<float *>(y.data)[i] = v;
}

} // namespace trlc::cuda

#endif // TRLC_RUNTIME_CUDA_COMMON_CUH
