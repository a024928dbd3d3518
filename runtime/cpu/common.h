//===- common.h - what the CPU kernels share --------------------*- C++ -*-===//
//
// The CPU backend's kernels (one file per op family, named as its CUDA
// twin in runtime/cuda/) are templates on the float type: f32 for
// training, f64 for the finite-difference tests. Matrix products go to
// OpenBLAS; everything else is a static OpenMP loop. Reductions that cross
// loop iterations are split in a fixed way (per-thread partials summed in
// thread order, or one thread per output column), so a fixed thread count
// gives bit-identical results.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_CPU_COMMON_H
#define TRLC_RUNTIME_CPU_COMMON_H

#include "cpu/kernels.h"
#include "trlc/BFloat16.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

/// Instantiates a kernel of trlc/Kernels.def for both float types.
#define TRLC_CPU_KERNEL(impl)                                                  \
  template void impl<float>(const KernelArgs &);                               \
  template void impl<double>(const KernelArgs &);

namespace trlc::cpu {

using artifact::DType;

/// Element i of an index tensor (ids, labels, positions, masks).
inline int64_t index(const TensorRef &t, int64_t i) {
  switch (t.dtype()) {
  case DType::I64: return t.as<int64_t>()[i];
  case DType::I32: return t.as<int32_t>()[i];
  case DType::Bool: return t.as<uint8_t>()[i];
  case DType::F32: return t.as<float>()[i] != 0;
  case DType::BF16: return bf16ToFloat(t.as<uint16_t>()[i]) != 0;
  case DType::F64: return t.as<double>()[i] != 0;
  }
  return 0;
}

template <typename T>
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T *a,
          int64_t lda, const T *b, int64_t ldb, T beta, T *c, int64_t ldc,
          T alpha = T(1)) {
  auto TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, TA, TB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    cblas_dgemm(CblasRowMajor, TA, TB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// Runs `body` with OpenBLAS single-threaded: inside an OpenMP loop every
/// thread makes its own small matrix products.
template <typename F> inline void withSerialBlas(F body) {
  int blasThreads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  body();
  openblas_set_num_threads(blasThreads);
}

/// Deterministic parallel sum of f(i) for i in [0, n).
template <typename F> inline double parallelSum(int64_t n, F f) {
  int threads = omp_get_max_threads();
  std::vector<double> partial(threads, 0.0);
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num();
    int64_t lo = n * t / threads, hi = n * (t + 1) / threads;
    double s = 0;
    for (int64_t i = lo; i < hi; ++i)
      s += f(i);
    partial[t] = s;
  }
  double total = 0;
  for (double p : partial)
    total += p;
  return total;
}

/// exp that the compiler can vectorise: Cephes' expf (range reduction by
/// ln 2, degree-5 polynomial, exponent by bit shift), within 2 ulp of
/// std::exp on [-87, 88]; 0 below, clamped above. Doubles (the gradient
/// checks) use std::exp.
inline float vexp(float x) {
  float c = std::min(x, 88.3762626647949f);
  // Round to nearest without a rounding instruction (SSE2 has none).
  float n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = c - n * 0.693359375f - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float e = p * r * r + r + 1.0f;
  int32_t bits = std::max(static_cast<int32_t>(n) + 127, 0) << 23;
  float scale = std::bit_cast<float>(bits);
  float inRange = static_cast<float>(x >= -87.33654475f);  // no branch
  return e * scale * inRange;
}
inline double vexp(double x) { return std::exp(x); }

template <typename T> inline T sigmoid(T x) { return T(1) / (T(1) + vexp(-x)); }
template <typename T> inline T logSigmoid(T x) {
  return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
}

/// Splits [0, n) into one contiguous block per thread: the inner loops are
/// plain counted loops the compiler vectorises.
template <typename F> inline void parallelBlocks(int64_t n, F body) {
#pragma omp parallel
  {
    int t = omp_get_thread_num(), threads = omp_get_num_threads();
    body(n * t / threads, n * (t + 1) / threads);
  }
}

} // namespace trlc::cpu

#endif // TRLC_RUNTIME_CPU_COMMON_H
