//===- norm.cpp - RMSNorm and LayerNorm, and their gradients --------------===//
//
// Rows are independent in the forward; the weight (and bias) gradients sum
// per-thread partial rows in thread order, in the call's scratch
// (threads x hidden values per partial).
//
//===----------------------------------------------------------------------===//

#include "cpu/common.h"

namespace trlc::cpu {

namespace {

/// 1 / sqrt(mean(x^2) + eps) of one row.
template <typename T> T rowInvRms(const T *x, int64_t h, T eps) {
  T ss = 0;
  for (int64_t j = 0; j < h; ++j)
    ss += x[j] * x[j];
  return 1 / std::sqrt(ss / h + eps);
}

/// Mean and 1 / sqrt(biased variance + eps) of one row.
template <typename T> std::pair<T, T> rowMoments(const T *x, int64_t h, T eps) {
  T mean = 0, var = 0;
  for (int64_t j = 0; j < h; ++j)
    mean += x[j];
  mean /= h;
  for (int64_t j = 0; j < h; ++j)
    var += (x[j] - mean) * (x[j] - mean);
  return {mean, 1 / std::sqrt(var / h + eps)};
}

} // namespace

template <typename T> void rmsNorm(const KernelArgs &a) {
  const T *x = a.in[0].as<T>(), *w = a.in[1].as<T>();
  T *y = a.out[0].as<T>();
  T eps = static_cast<T>(attrF(a, "eps"));
  int64_t h = a.in[0].dim(-1), rows = rowsOf(a.in[0]);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T *xr = x + r * h;
    T inv = rowInvRms(xr, h, eps);
    for (int64_t j = 0; j < h; ++j)
      y[r * h + j] = xr[j] * inv * w[j];
  }
}

namespace {

/// Sums per-thread partial rows [threads, h] into `out` in thread order.
template <typename T>
void reducePartials(const T *partials, int threads, int64_t h, T *out) {
  for (int64_t j = 0; j < h; ++j) {
    T s = 0;
    for (int t = 0; t < threads; ++t)
      s += partials[t * h + j];
    out[j] = s;
  }
}

} // namespace

template <typename T> void rmsNormGrad(const KernelArgs &a) {
  const T *dy = a.in[0].as<T>(), *x = a.in[1].as<T>(), *w = a.in[2].as<T>();
  T *dx = a.out[0].as<T>(), *dw = a.out[1].as<T>();
  T eps = static_cast<T>(attrF(a, "eps"));
  int64_t h = a.in[1].dim(-1), rows = rowsOf(a.in[1]);
  int threads = omp_get_max_threads();
  T *partial = static_cast<T *>(a.scratch);
  std::fill(partial, partial + threads * h, T(0));
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num();
    T *pw = partial + t * h;
    int64_t lo = rows * t / threads, hi = rows * (t + 1) / threads;
    for (int64_t r = lo; r < hi; ++r) {
      const T *xr = x + r * h, *g = dy + r * h;
      T inv = rowInvRms(xr, h, eps);
      T dot = 0;  // mean of (dy * w) * xhat
      for (int64_t j = 0; j < h; ++j) {
        T xhat = xr[j] * inv;
        dot += g[j] * w[j] * xhat;
        pw[j] += g[j] * xhat;
      }
      dot /= h;
      for (int64_t j = 0; j < h; ++j)
        dx[r * h + j] = inv * (g[j] * w[j] - xr[j] * inv * dot);
    }
  }
  reducePartials(partial, threads, h, dw);
}

template <typename T> void layerNorm(const KernelArgs &a) {
  const T *x = a.in[0].as<T>(), *w = a.in[1].as<T>(), *b = a.in[2].as<T>();
  T *y = a.out[0].as<T>();
  T eps = static_cast<T>(attrF(a, "eps"));
  int64_t h = a.in[0].dim(-1), rows = rowsOf(a.in[0]);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T *xr = x + r * h;
    auto [mean, inv] = rowMoments(xr, h, eps);
    for (int64_t j = 0; j < h; ++j)
      y[r * h + j] = (xr[j] - mean) * inv * w[j] + b[j];
  }
}

template <typename T> void layerNormGrad(const KernelArgs &a) {
  const T *dy = a.in[0].as<T>(), *x = a.in[1].as<T>(), *w = a.in[2].as<T>();
  T *dx = a.out[0].as<T>(), *dw = a.out[1].as<T>(), *db = a.out[2].as<T>();
  T eps = static_cast<T>(attrF(a, "eps"));
  int64_t h = a.in[1].dim(-1), rows = rowsOf(a.in[1]);
  int threads = omp_get_max_threads();
  T *pw = static_cast<T *>(a.scratch), *pb = pw + threads * h;
  std::fill(pw, pw + 2 * threads * h, T(0));
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num();
    int64_t lo = rows * t / threads, hi = rows * (t + 1) / threads;
    for (int64_t r = lo; r < hi; ++r) {
      const T *xr = x + r * h, *g = dy + r * h;
      auto [mean, inv] = rowMoments(xr, h, eps);
      T m1 = 0, m2 = 0;  // means of dxhat and dxhat * xhat
      for (int64_t j = 0; j < h; ++j) {
        T xhat = (xr[j] - mean) * inv, dxhat = g[j] * w[j];
        m1 += dxhat;
        m2 += dxhat * xhat;
        pw[t * h + j] += g[j] * xhat;
        pb[t * h + j] += g[j];
      }
      m1 /= h;
      m2 /= h;
      for (int64_t j = 0; j < h; ++j) {
        T xhat = (xr[j] - mean) * inv;
        dx[r * h + j] = inv * (g[j] * w[j] - m1 - xhat * m2);
      }
    }
  }
  reducePartials(pw, threads, h, dw);
  reducePartials(pb, threads, h, db);
}

TRLC_CPU_KERNEL(rmsNorm)
TRLC_CPU_KERNEL(rmsNormGrad)
TRLC_CPU_KERNEL(layerNorm)
TRLC_CPU_KERNEL(layerNormGrad)

} // namespace trlc::cpu
