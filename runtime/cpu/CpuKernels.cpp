//===- CpuKernels.cpp - the CPU backend's kernels -------------------------===//
//
// One function per kernel of the plan, templated on the float type (f32 for
// training, f64 for the finite-difference tests). Matrix products go to
// OpenBLAS; everything else is a static OpenMP loop. Reductions that cross
// loop iterations are split in a fixed way (per-thread partials summed in
// thread order, or one thread per output column), so a fixed thread count
// gives bit-identical results.
//
//===----------------------------------------------------------------------===//

#include "trlc/BFloat16.h"
#include "trlc/Backend.h"

#include <cblas.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <vector>

namespace trlc {
namespace {

using artifact::DType;

// --- helpers ----------------------------------------------------------------

int64_t index(const TensorRef &t, int64_t i) {
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
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T *a,
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
template <typename F> void withSerialBlas(F body) {
  int blasThreads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  body();
  openblas_set_num_threads(blasThreads);
}

/// Deterministic parallel sum of f(i) for i in [0, n).
template <typename F> double parallelSum(int64_t n, F f) {
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

template <typename T> T sigmoid(T x) { return T(1) / (T(1) + vexp(-x)); }
template <typename T> T logSigmoid(T x) {
  return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
}

// --- elementwise ---------------------------------------------------------------

template <typename T> void fill(const KernelArgs &a) {
  T v = static_cast<T>(attrF(a, "value"));
  T *y = a.out[0].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    y[i] = v;
}

template <typename T> void add(const KernelArgs &a) {
  const T *x = a.in[0].as<T>(), *z = a.in[1].as<T>();
  T *y = a.out[0].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    y[i] = x[i] + z[i];
}

template <typename T> void div(const KernelArgs &a) {
  const T *x = a.in[0].as<T>();
  T d = a.in[1].as<T>()[0];
  T *y = a.out[0].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    y[i] = x[i] / d;
}

/// Splits [0, n) into one contiguous block per thread: the inner loops are
/// plain counted loops the compiler vectorises.
template <typename F> void parallelBlocks(int64_t n, F body) {
#pragma omp parallel
  {
    int t = omp_get_thread_num(), threads = omp_get_num_threads();
    body(n * t / threads, n * (t + 1) / threads);
  }
}

template <typename T>
void swigluBlock(const T *__restrict g, const T *__restrict u, T *__restrict y,
                 int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    T gi = g[i];
    y[i] = gi / (T(1) + vexp(-gi)) * u[i];
  }
}

template <typename T>
void swigluGradBlock(const T *__restrict dy, const T *__restrict g,
                     const T *__restrict u, T *__restrict dg, T *__restrict du,
                     int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    T gi = g[i], s = T(1) / (T(1) + vexp(-gi));
    du[i] = dy[i] * gi * s;
    dg[i] = dy[i] * u[i] * (s + gi * s * (1 - s));
  }
}

template <typename T> void swiglu(const KernelArgs &a) {
  const T *g = a.in[0].as<T>(), *u = a.in[1].as<T>();
  T *y = a.out[0].as<T>();
  parallelBlocks(a.out[0].numel(), [&](int64_t lo, int64_t hi) {
    swigluBlock(g + lo, u + lo, y + lo, hi - lo);
  });
}

template <typename T> void swigluGrad(const KernelArgs &a) {
  const T *dy = a.in[0].as<T>(), *g = a.in[1].as<T>(), *u = a.in[2].as<T>();
  T *dg = a.out[0].as<T>(), *du = a.out[1].as<T>();
  parallelBlocks(a.out[0].numel(), [&](int64_t lo, int64_t hi) {
    swigluGradBlock(dy + lo, g + lo, u + lo, dg + lo, du + lo, hi - lo);
  });
}

constexpr double kSqrt2OverPi = 0.7978845608028654;

template <typename T> void gelu(const KernelArgs &a) {
  bool tanhApprox = attrS(a, "approximate") == "tanh";
  const T *x = a.in[0].as<T>();
  T *y = a.out[0].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T v = x[i];
    y[i] = tanhApprox
               ? T(0.5) * v * (1 + std::tanh(T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v)))
               : T(0.5) * v * (1 + std::erf(v / std::sqrt(T(2))));
  }
}

template <typename T> void geluGrad(const KernelArgs &a) {
  bool tanhApprox = attrS(a, "approximate") == "tanh";
  const T *dy = a.in[0].as<T>(), *x = a.in[1].as<T>();
  T *dx = a.out[0].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T v = x[i], d;
    if (tanhApprox) {
      T k = T(kSqrt2OverPi), inner = k * (v + T(0.044715) * v * v * v);
      T t = std::tanh(inner);
      d = T(0.5) * (1 + t) + T(0.5) * v * (1 - t * t) * k * (1 + 3 * T(0.044715) * v * v);
    } else {
      d = T(0.5) * (1 + std::erf(v / std::sqrt(T(2)))) +
          v * std::exp(-v * v / 2) / std::sqrt(T(2 * M_PI));
    }
    dx[i] = dy[i] * d;
  }
}

template <typename T> void copyKernel(const KernelArgs &a) {
  if (a.out[0].data != a.in[0].data)
    std::memcpy(a.out[0].data, a.in[0].data, a.in[0].desc->bytes());
}

// --- shapes ------------------------------------------------------------------

/// outer x (axis dim) x inner decomposition of `t` at `axis`.
void around(const TensorRef &t, int64_t axis, int64_t &outer, int64_t &inner) {
  outer = inner = 1;
  for (int64_t i = 0; i < axis; ++i)
    outer *= t.dim(i);
  for (int64_t i = axis + 1; i < t.rank(); ++i)
    inner *= t.dim(i);
}

/// Moves the parts of `whole` along `axis` out to `parts` (split) or in
/// from them (concat).
template <typename T>
void moveParts(const KernelArgs &a, const TensorRef &whole,
               const std::vector<TensorRef> &parts, bool toParts) {
  int64_t axis = attrI(a, "axis"), outer, inner;
  around(whole, axis, outer, inner);
  int64_t full = whole.dim(axis) * inner, at = 0;
  for (const TensorRef &part : parts) {
    int64_t w = part.dim(axis) * inner;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      T *p = part.as<T>() + o * w, *f = whole.as<T>() + o * full + at;
      std::memcpy(toParts ? p : f, toParts ? f : p, w * sizeof(T));
    }
    at += w;
  }
}

template <typename T> void split(const KernelArgs &a) {
  moveParts<T>(a, a.in[0], a.out, true);
}

template <typename T> void concat(const KernelArgs &a) {
  moveParts<T>(a, a.out[0], a.in, false);
}

// --- embedding -----------------------------------------------------------------

template <typename T> void embedding(const KernelArgs &a) {
  const TensorRef &table = a.in[0], &ids = a.in[1];
  int64_t v = table.dim(0), h = table.dim(1), n = ids.numel();
  for (int64_t i = 0; i < n; ++i)
    if (index(ids, i) < 0 || index(ids, i) >= v)
      throw KernelError("token id " + std::to_string(index(ids, i)) +
                        " is outside the vocabulary (size " + std::to_string(v) + ")");
  T *y = a.out[0].as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(y + i * h, table.as<T>() + index(ids, i) * h, h * sizeof(T));
}

template <typename T> void embeddingGrad(const KernelArgs &a) {
  const TensorRef &dy = a.in[0], &ids = a.in[1];
  T *dt = a.out[0].as<T>();
  int64_t h = a.out[0].dim(1), n = ids.numel();
  std::memset(dt, 0, a.out[0].desc->bytes());
  // One thread per column block: every row is summed in token order.
#pragma omp parallel
  {
    int t = omp_get_thread_num(), threads = omp_get_num_threads();
    int64_t lo = h * t / threads, hi = h * (t + 1) / threads;
    for (int64_t i = 0; i < n; ++i) {
      T *row = dt + index(ids, i) * h;
      const T *g = dy.as<T>() + i * h;
      for (int64_t j = lo; j < hi; ++j)
        row[j] += g[j];
    }
  }
}

// --- norms -------------------------------------------------------------------

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

// --- linear ------------------------------------------------------------------

template <typename T> void linear(const KernelArgs &a) {
  const TensorRef &x = a.in[0], &w = a.in[1];
  int64_t m = rowsOf(x), k = x.dim(-1), n = w.dim(0);
  T *y = a.out[0].as<T>();
  gemm<T>(false, true, m, n, k, x.as<T>(), k, w.as<T>(), k, T(0), y, n);
  if (a.in.size() > 2 && a.in[2]) {
    const T *b = a.in[2].as<T>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < n; ++j)
        y[r * n + j] += b[j];
  }
}

template <typename T> void linearGrad(const KernelArgs &a) {
  const TensorRef &dy = a.in[0], &x = a.in[1], &w = a.in[2];
  int64_t m = rowsOf(x), k = x.dim(-1), n = w.dim(0);
  gemm<T>(false, false, m, k, n, dy.as<T>(), n, w.as<T>(), k, T(0),
          a.out[0].as<T>(), k);
  // With an accumulator (in[3]): dW = acc + dy^T x, by the product itself.
  bool accumulate = a.in.size() > 3 && a.in[3];
  if (accumulate && a.out[1].data != a.in[3].data)
    std::memcpy(a.out[1].data, a.in[3].data, a.out[1].desc->bytes());
  gemm<T>(true, false, n, k, m, dy.as<T>(), n, x.as<T>(), k,
          accumulate ? T(1) : T(0), a.out[1].as<T>(), k);
  if (a.out.size() > 2) {
    T *db = a.out[2].as<T>();
    const T *g = dy.as<T>();
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; ++j) {
      T s = 0;
      for (int64_t r = 0; r < m; ++r)
        s += g[r * n + j];
      db[j] = s;
    }
  }
}

// --- rope --------------------------------------------------------------------

/// Inverse frequencies of the rotate-half convention, with Llama-3 scaling.
std::vector<double> inverseFrequencies(const KernelArgs &a, int64_t d) {
  double theta = attrF(a, "theta");
  std::vector<double> inv(d / 2);
  for (int64_t i = 0; i < d / 2; ++i) {
    // transformers computes base ** (2i / d) in float32.
    float expo = static_cast<float>(2 * i) / static_cast<float>(d);
    inv[i] = 1.0f / std::pow(static_cast<float>(theta), expo);
  }
  if (a.attrs->contains("scaling")) {
    const auto &s = a.attrs->at("scaling");
    double factor = s.at("factor"), low = s.at("low_freq_factor"),
           high = s.at("high_freq_factor"),
           old = s.at("original_max_position_embeddings").get<double>();
    double lowWavelen = old / low, highWavelen = old / high;
    for (double &f : inv) {
      double wavelen = 2 * M_PI / f;
      if (wavelen < highWavelen)
        continue;
      if (wavelen > lowWavelen) {
        f /= factor;
        continue;
      }
      double smooth = (old / wavelen - low) / (high - low);
      f = (1 - smooth) * f / factor + smooth * f;
    }
  }
  return inv;
}

template <typename T> void rope(const KernelArgs &a) {
  const TensorRef &x = a.in[0], &pos = a.in[1];
  int64_t d = x.dim(-1), heads = x.dim(-2), tokens = pos.numel();
  std::vector<double> inv = inverseFrequencies(a, d);
  double sign = attrB(a, "inverse") ? -1 : 1;
  const T *in = x.as<T>();
  T *out = a.out[0].as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    double p = static_cast<double>(index(pos, t));
    for (int64_t i = 0; i < d / 2; ++i) {
      // transformers forms the angle and its cos/sin in float32.
      float angle = static_cast<float>(p) * static_cast<float>(inv[i]);
      T c = std::cos(angle), s = static_cast<T>(sign) * std::sin(angle);
      for (int64_t h = 0; h < heads; ++h) {
        const T *xr = in + (t * heads + h) * d;
        T *yr = out + (t * heads + h) * d;
        T x1 = xr[i], x2 = xr[i + d / 2];
        yr[i] = x1 * c - x2 * s;
        yr[i + d / 2] = x2 * c + x1 * s;
      }
    }
  }
}

// --- attention -------------------------------------------------------------------

/// The sequences of an attention call: padded rows or varlen documents.
struct Sequences {
  bool varlen = false;
  int64_t count = 0, rowLength = 0, totalTokens = 0;
  const TensorRef *mask = nullptr, *cu = nullptr;
  int64_t start(int64_t s) const { return varlen ? index(*cu, s) : s * rowLength; }
  int64_t length(int64_t s) const {
    return varlen ? index(*cu, s + 1) - index(*cu, s) : rowLength;
  }
  bool keyVisible(int64_t s, int64_t j) const {
    return !mask || !*mask || index(*mask, s * rowLength + j) != 0;
  }
  int64_t lseIndex(int64_t s, int64_t h, int64_t i, int64_t heads) const {
    return varlen ? h * totalTokens + start(s) + i : (s * heads + h) * rowLength + i;
  }
};

Sequences sequences(const KernelArgs &a, const TensorRef &q, int maskArg) {
  Sequences s;
  s.varlen = attrS(a, "layout") == "varlen";
  if (s.varlen) {
    s.cu = &a.in[maskArg + 1];
    s.count = s.cu->numel() - 1;
    s.totalTokens = q.dim(0);
  } else {
    s.count = q.dim(0);
    s.rowLength = q.dim(1);
    s.totalTokens = s.count * s.rowLength;
    if (a.in[maskArg])
      s.mask = &a.in[maskArg];
  }
  return s;
}

/// Softmax probabilities of one (sequence, head): P = softmax(scale Q K^T)
/// over the visible keys, in `p` [len, len] (rows of invisible keys are 0).
/// With `lse` given (backward), the saved log-sum-exp normalises instead.
template <typename T>
void probabilities(const Sequences &seq, int64_t s, int64_t len, bool causal,
                   T *p, T *lse, bool useLse) {
  const T inf = std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < len; ++i) {
    T *row = p + i * len;
    int64_t last = causal ? i : len - 1;
    T mx = -inf;
    for (int64_t j = 0; j <= last; ++j)
      if (seq.keyVisible(s, j))
        mx = std::max(mx, row[j]);
    else
        row[j] = -inf;
    for (int64_t j = last + 1; j < len; ++j)
      row[j] = 0;
    if (mx == -inf) {  // no visible key: the row attends to nothing
      std::fill(row, row + len, T(0));
      if (!useLse)
        lse[i] = -inf;
      continue;
    }
    T l;
    if (useLse) {
      l = lse[i];
    } else {
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j <= last; ++j)
        sum += row[j] == -inf ? T(0) : vexp(row[j] - mx);
      l = mx + std::log(sum);
      lse[i] = l;
    }
#pragma omp simd
    for (int64_t j = 0; j <= last; ++j)
      row[j] = row[j] == -inf ? T(0) : vexp(row[j] - l);
  }
}

/// The scratch of a varlen call is sized by its `max_seqlen`: a longer
/// document (bad cu_seqlens) is an error, not an overrun.
void checkMaxSeqlen(const KernelArgs &a, const Sequences &seq, int64_t maxLen) {
  if (!seq.varlen || !a.attrs->contains("max_seqlen"))
    return;
  int64_t bound = (*a.attrs)["max_seqlen"].get<int64_t>();
  if (maxLen > bound)
    throw KernelError("attention: a document of " + std::to_string(maxLen) +
                      " tokens exceeds max_seqlen " + std::to_string(bound) +
                      " (cu_seqlens does not match the plan)");
}

/// Attention by matrix products per (sequence, head): S = scale Q K^T,
/// P = softmax(S) masked, O = P V. Threads take (sequence, head) pairs;
/// each makes its own single-threaded products into its scratch.
template <typename T> void attention(const KernelArgs &a) {
  const TensorRef &q = a.in[0], &k = a.in[1], &v = a.in[2];
  Sequences seq = sequences(a, q, 3);
  int64_t d = q.dim(-1), hq = q.dim(-2), hkv = k.dim(-2), group = hq / hkv;
  bool causal = attrB(a, "causal");
  T scale = static_cast<T>(attrF(a, "scale"));
  T *out = a.out[0].as<T>(), *lse = a.out[1].as<T>();
  int64_t maxLen = 0;
  for (int64_t s = 0; s < seq.count; ++s)
    maxLen = std::max(maxLen, seq.length(s));
  checkMaxSeqlen(a, seq, maxLen);
  withSerialBlas([&] {
#pragma omp parallel
    {
      T *p = static_cast<T *>(a.scratch) + omp_get_thread_num() * (maxLen * maxLen + maxLen);
      T *rowLse = p + maxLen * maxLen;
#pragma omp for schedule(static) collapse(2)
      for (int64_t s = 0; s < seq.count; ++s)
        for (int64_t h = 0; h < hq; ++h) {
          int64_t base = seq.start(s), len = seq.length(s), kh = h / group;
          if (len == 0)
            continue;
          const T *qh = q.as<T>() + (base * hq + h) * d;
          const T *kk = k.as<T>() + (base * hkv + kh) * d;
          const T *vk = v.as<T>() + (base * hkv + kh) * d;
          gemm<T>(false, true, len, len, d, qh, hq * d, kk, hkv * d, T(0), p, len, scale);
          probabilities(seq, s, len, causal, p, rowLse, false);
          gemm<T>(false, false, len, d, len, p, len, vk, hkv * d, T(0),
                  out + (base * hq + h) * d, hq * d);
          for (int64_t i = 0; i < len; ++i)
            lse[seq.lseIndex(s, h, i, hq)] = rowLse[i];
        }
    }
  });
}

/// dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO O)) scale, dQ = dS K,
/// dK = dS^T Q. One thread owns a (sequence, kv head): the dk and dv rows of
/// its query-head group are summed by no one else, in a fixed order.
template <typename T> void attentionGrad(const KernelArgs &a) {
  const TensorRef &dout = a.in[0], &q = a.in[1], &k = a.in[2], &v = a.in[3],
                  &o = a.in[4], &lse = a.in[5];
  Sequences seq = sequences(a, q, 6);
  int64_t d = q.dim(-1), hq = q.dim(-2), hkv = k.dim(-2), group = hq / hkv;
  bool causal = attrB(a, "causal");
  T scale = static_cast<T>(attrF(a, "scale"));
  T *dq = a.out[0].as<T>(), *dk = a.out[1].as<T>(), *dv = a.out[2].as<T>();
  std::memset(dk, 0, a.out[1].desc->bytes());
  std::memset(dv, 0, a.out[2].desc->bytes());
  int64_t maxLen = 0;
  for (int64_t s = 0; s < seq.count; ++s)
    maxLen = std::max(maxLen, seq.length(s));
  checkMaxSeqlen(a, seq, maxLen);
  withSerialBlas([&] {
#pragma omp parallel
    {
      T *p = static_cast<T *>(a.scratch) + omp_get_thread_num() * (2 * maxLen * maxLen + maxLen);
      T *dp = p + maxLen * maxLen, *rowLse = dp + maxLen * maxLen;
#pragma omp for schedule(static) collapse(2)
      for (int64_t s = 0; s < seq.count; ++s)
        for (int64_t kh = 0; kh < hkv; ++kh) {
          int64_t base = seq.start(s), len = seq.length(s);
          if (len == 0)
            continue;
          const T *kk = k.as<T>() + (base * hkv + kh) * d;
          const T *vk = v.as<T>() + (base * hkv + kh) * d;
          T *dkk = dk + (base * hkv + kh) * d, *dvk = dv + (base * hkv + kh) * d;
          for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {
            const T *qh = q.as<T>() + (base * hq + h) * d;
            const T *gh = dout.as<T>() + (base * hq + h) * d;
            const T *oh = o.as<T>() + (base * hq + h) * d;
            for (int64_t i = 0; i < len; ++i)
              rowLse[i] = lse.as<T>()[seq.lseIndex(s, h, i, hq)];
            gemm<T>(false, true, len, len, d, qh, hq * d, kk, hkv * d, T(0), p, len, scale);
            probabilities(seq, s, len, causal, p, rowLse, true);
            gemm<T>(true, false, len, d, len, p, len, gh, hq * d, T(1), dvk, hkv * d);
            gemm<T>(false, true, len, len, d, gh, hq * d, vk, hkv * d, T(0), dp, len);
            for (int64_t i = 0; i < len; ++i) {
              T di = 0;
#pragma omp simd reduction(+ : di)
              for (int64_t c = 0; c < d; ++c)
                di += gh[i * hq * d + c] * oh[i * hq * d + c];
              T *pr = p + i * len, *dpr = dp + i * len;
#pragma omp simd
              for (int64_t j = 0; j < len; ++j)
                dpr[j] = pr[j] * (dpr[j] - di) * scale;
            }
            gemm<T>(false, false, len, d, len, dp, len, kk, hkv * d, T(0),
                    dq + (base * hq + h) * d, hq * d);
            gemm<T>(true, false, len, d, len, dp, len, qh, hq * d, T(1), dkk, hkv * d);
          }
        }
    }
  });
}

// --- losses ------------------------------------------------------------------

/// log-sum-exp of one row of logits.
template <typename T> T rowLse(const T *row, int64_t n) {
  T mx = row[0];
  for (int64_t j = 1; j < n; ++j)
    mx = std::max(mx, row[j]);
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j)
    s += vexp(row[j] - mx);
  return mx + std::log(s);
}

template <typename T>
void checkLabel(int64_t label, int64_t ignore, int64_t vocab) {
  if (label != ignore && (label < 0 || label >= vocab))
    throw KernelError("label " + std::to_string(label) +
                      " is outside the vocabulary (size " + std::to_string(vocab) + ")");
}

/// Per-row log-probability of the label (0 for ignored rows).
template <typename T>
T rowLogProb(const T *row, int64_t vocab, int64_t label, int64_t ignore) {
  if (label == ignore)
    return 0;
  checkLabel<T>(label, ignore, vocab);
  return row[label] - rowLse(row, vocab);
}

/// dlogits = coef * (softmax - onehot(label)) for one row.
template <typename T>
void rowSoftmaxMinusOnehot(const T *row, int64_t vocab, int64_t label, T coef,
                           T *out) {
  T l = rowLse(row, vocab);
#pragma omp simd
  for (int64_t j = 0; j < vocab; ++j)
    out[j] = coef * vexp(row[j] - l);
  out[label] -= coef;
}

template <typename T> void crossEntropy(const KernelArgs &a) {
  const TensorRef &logits = a.in[0], &labels = a.in[1];
  int64_t vocab = logits.dim(-1), ignore = attrI(a, "ignore_index");
  a.out[0].as<T>()[0] = static_cast<T>(-parallelSum(rowsOf(logits), [&](int64_t r) {
    return static_cast<double>(rowLogProb(logits.as<T>() + r * vocab, vocab,
                                          index(labels, r), ignore));
  }));
}

/// The logits gradient of one row: coef * (softmax - onehot(label)), zero
/// where the label is ignored.
template <typename T>
void rowLogitsGrad(const T *row, int64_t vocab, int64_t label, int64_t ignore,
                   T coef, T *out) {
  if (label == ignore)
    std::fill(out, out + vocab, T(0));
  else
    rowSoftmaxMinusOnehot(row, vocab, label, coef, out);
}

/// dlogits for (grad, logits, labels) with a per-row coefficient.
template <typename T, typename Coef>
void logitsGrad(const KernelArgs &a, Coef coef) {
  const TensorRef &logits = a.in[1], &labels = a.in[2];
  int64_t vocab = logits.dim(-1), ignore = attrI(a, "ignore_index");
  T *dl = a.out[0].as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rowsOf(logits); ++r)
    rowLogitsGrad(logits.as<T>() + r * vocab, vocab, index(labels, r), ignore,
                  coef(r), dl + r * vocab);
}

template <typename T> void crossEntropyGrad(const KernelArgs &a) {
  T g = a.in[0].as<T>()[0];
  logitsGrad<T>(a, [g](int64_t) { return g; });
}

template <typename T> void logProbs(const KernelArgs &a) {
  const TensorRef &logits = a.in[0], &labels = a.in[1];
  int64_t vocab = logits.dim(-1), ignore = attrI(a, "ignore_index");
  T *y = a.out[0].as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rowsOf(logits); ++r)
    y[r] = rowLogProb(logits.as<T>() + r * vocab, vocab, index(labels, r), ignore);
}

template <typename T> void logProbsGrad(const KernelArgs &a) {
  const T *g = a.in[0].as<T>();
  logitsGrad<T>(a, [g](int64_t r) { return -g[r]; });
}

/// Fused lm_head + per-row log-probabilities, `chunk` rows of logits at a
/// time in scratch. `perRow(r, logp)` consumes each row's value; with
/// `rowGrad`, the gradient path: dlogits = rowGrad(r) * (onehot - softmax)
/// flows into dhidden and dweight.
template <typename T, typename PerRow, typename RowGrad>
void fusedLinearRows(const KernelArgs &a, int gradArgs, PerRow perRow,
                     RowGrad rowGrad) {
  const TensorRef &hidden = a.in[gradArgs], &weight = a.in[gradArgs + 1],
                  &labels = a.in[gradArgs + 2];
  int64_t rows = rowsOf(hidden), h = hidden.dim(-1), vocab = weight.dim(0);
  int64_t chunk = std::max<int64_t>(1, std::min(attrI(a, "chunk_size"), rows));
  int64_t ignore = attrI(a, "ignore_index");
  T *logits = static_cast<T *>(a.scratch);
  bool grad = gradArgs > 0;
  if (grad)
    std::memset(a.out[1].data, 0, a.out[1].desc->bytes());
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    int64_t n = std::min(chunk, rows - r0);
    gemm<T>(false, true, n, vocab, h, hidden.as<T>() + r0 * h, h, weight.as<T>(),
            h, T(0), logits, vocab);
    if (!grad) {
      for (int64_t r = 0; r < n; ++r)
        perRow(r0 + r, rowLogProb(logits + r * vocab, vocab,
                                  index(labels, r0 + r), ignore));
      continue;
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; ++r)
      rowLogitsGrad(logits + r * vocab, vocab, index(labels, r0 + r), ignore,
                    -rowGrad(r0 + r), logits + r * vocab);
    gemm<T>(false, false, n, h, vocab, logits, vocab, weight.as<T>(), h, T(0),
            a.out[0].as<T>() + r0 * h, h);
    gemm<T>(true, false, vocab, h, n, logits, vocab, hidden.as<T>() + r0 * h, h,
            T(1), a.out[1].as<T>(), h);
  }
}

template <typename T> void fusedLinearCrossEntropy(const KernelArgs &a) {
  double sum = 0;  // rows in order: deterministic
  fusedLinearRows<T>(a, 0, [&](int64_t, T lp) { sum -= lp; },
                     [](int64_t) { return T(0); });
  a.out[0].as<T>()[0] = static_cast<T>(sum);
}

template <typename T> void fusedLinearCrossEntropyGrad(const KernelArgs &a) {
  T g = a.in[0].as<T>()[0];
  fusedLinearRows<T>(a, 1, [](int64_t, T) {}, [&](int64_t) { return -g; });
}

template <typename T> void fusedLinearLogProbs(const KernelArgs &a) {
  T *y = a.out[0].as<T>();
  fusedLinearRows<T>(a, 0, [&](int64_t r, T lp) { y[r] = lp; },
                     [](int64_t) { return T(0); });
}

template <typename T> void fusedLinearLogProbsGrad(const KernelArgs &a) {
  const T *g = a.in[0].as<T>();
  fusedLinearRows<T>(a, 1, [](int64_t, T) {}, [&](int64_t r) { return g[r]; });
}

template <typename T> void maskedSum(const KernelArgs &a) {
  const T *x = a.in[0].as<T>(), *m = a.in[1].as<T>();
  int64_t s = a.in[0].dim(-1);
  T *y = a.out[0].as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < a.out[0].numel(); ++r) {
    T acc = 0;
    for (int64_t j = 0; j < s; ++j)
      acc += x[r * s + j] * m[r * s + j];
    y[r] = acc;
  }
}

template <typename T> void maskedSumGrad(const KernelArgs &a) {
  const T *g = a.in[0].as<T>(), *m = a.in[1].as<T>();
  int64_t s = a.in[1].dim(-1);
  T *dx = a.out[0].as<T>();
  for (int64_t i = 0; i < a.out[0].numel(); ++i)
    dx[i] = g[i / s] * m[i];
}

/// DPO per pair: loss and d loss / d (pi_chosen) (= - d / d pi_rejected).
template <typename T>
std::pair<T, T> dpoPair(const KernelArgs &a, T pc, T pr, T rc, T rr) {
  T beta = static_cast<T>(attrF(a, "beta"));
  T ls = static_cast<T>(attrF(a, "label_smoothing"));
  std::string type = attrS(a, "loss_type");
  T h = (pc - rc) - (pr - rr), z = beta * h;
  if (type == "hinge")
    return {std::max(T(0), 1 - z), 1 - z > 0 ? -beta : T(0)};
  if (type == "ipo") {
    T e = h - 1 / (2 * beta);
    return {e * e, 2 * e};
  }
  T loss = -logSigmoid(z) * (1 - ls) - logSigmoid(-z) * ls;
  T dz = (1 - ls) * (sigmoid(z) - 1) + ls * sigmoid(z);
  return {loss, dz * beta};
}

template <typename T> void dpoLoss(const KernelArgs &a) {
  int64_t n = a.in[0].numel();
  T beta = static_cast<T>(attrF(a, "beta"));
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    T pc = a.in[0].as<T>()[i], pr = a.in[1].as<T>()[i], rc = a.in[2].as<T>()[i],
      rr = a.in[3].as<T>()[i];
    total += dpoPair(a, pc, pr, rc, rr).first;
    a.out[1].as<T>()[i] = beta * (pc - rc);
    a.out[2].as<T>()[i] = beta * (pr - rr);
  }
  a.out[0].as<T>()[0] = static_cast<T>(total / n);
}

template <typename T> void dpoLossGrad(const KernelArgs &a) {
  T g = a.in[0].as<T>()[0];
  int64_t n = a.in[1].numel();
  for (int64_t i = 0; i < n; ++i) {
    T d = dpoPair(a, a.in[1].as<T>()[i], a.in[2].as<T>()[i], a.in[3].as<T>()[i],
                  a.in[4].as<T>()[i]).second * g / n;
    a.out[0].as<T>()[i] = d;
    a.out[1].as<T>()[i] = -d;
  }
}

template <typename T> void ktoLoss(const KernelArgs &a) {
  int64_t n = a.in[0].numel();
  T beta = static_cast<T>(attrF(a, "beta"));
  T wd = static_cast<T>(attrF(a, "desirable_weight"));
  T wu = static_cast<T>(attrF(a, "undesirable_weight"));
  double kl = 0;
  for (int64_t i = 0; i < n; ++i)
    kl += a.in[2].as<T>()[i] - a.in[3].as<T>()[i];
  T klv = std::max(T(0), static_cast<T>(kl / n));
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    T r = a.in[0].as<T>()[i] - a.in[1].as<T>()[i];
    bool good = index(a.in[4], i) != 0;
    total += good ? wd * (1 - sigmoid(beta * (r - klv)))
                  : wu * (1 - sigmoid(beta * (klv - r)));
    a.out[1].as<T>()[i] = beta * r;
  }
  a.out[0].as<T>()[0] = static_cast<T>(total / n);
  a.out[2].as<T>()[0] = klv;
}

template <typename T> void ktoLossGrad(const KernelArgs &a) {
  T g = a.in[0].as<T>()[0], klv = a.in[3].as<T>()[0];
  int64_t n = a.in[1].numel();
  T beta = static_cast<T>(attrF(a, "beta"));
  T wd = static_cast<T>(attrF(a, "desirable_weight"));
  T wu = static_cast<T>(attrF(a, "undesirable_weight"));
  for (int64_t i = 0; i < n; ++i) {
    T r = a.in[1].as<T>()[i] - a.in[2].as<T>()[i];
    bool good = index(a.in[4], i) != 0;
    T s = good ? sigmoid(beta * (r - klv)) : sigmoid(beta * (klv - r));
    T d = good ? -wd * beta * s * (1 - s) : wu * beta * s * (1 - s);
    a.out[0].as<T>()[i] = g * d / n;
  }
}

/// GRPO: the per-token loss, its derivative in logp, and each token's
/// normalisation weight. Loss types: grpo averages each sequence over its
/// completion tokens, then over sequences; bnpo divides by the batch's
/// completion tokens; dr_grpo by rows x sequence length; dapo by
/// `normalizer` (the completion tokens of the whole accumulated batch).
template <typename T, typename F>
void grpoTokens(const KernelArgs &a, int first, F f) {
  const TensorRef &logp = a.in[first], &old = a.in[first + 1],
                  &adv = a.in[first + 2], &mask = a.in[first + 3];
  T normalizer = a.in[first + 4].as<T>()[0];
  bool hasRef = a.in.size() > static_cast<size_t>(first + 5) && a.in[first + 5];
  T el = static_cast<T>(attrF(a, "epsilon_low")), eh = static_cast<T>(attrF(a, "epsilon_high"));
  T beta = static_cast<T>(attrF(a, "beta"));
  std::string type = attrS(a, "loss_type");
  int64_t rows = logp.dim(0), s = logp.dim(1);
  double active = 0;
  for (int64_t i = 0; i < logp.numel(); ++i)
    active += mask.as<T>()[i];
  for (int64_t b = 0; b < rows; ++b) {
    double rowActive = 0;
    for (int64_t j = 0; j < s; ++j)
      rowActive += mask.as<T>()[b * s + j];
    T weight;
    if (type == "grpo")
      weight = T(1) / (std::max(rowActive, 1.0) * rows);
    else if (type == "bnpo")
      weight = T(1) / std::max(active, 1.0);
    else if (type == "dr_grpo")
      weight = T(1) / (rows * s);
    else
      weight = T(1) / normalizer;
    T A = adv.as<T>()[b];
    for (int64_t j = 0; j < s; ++j) {
      int64_t i = b * s + j;
      T m = mask.as<T>()[i];
      T lp = logp.as<T>()[i], ratio = std::exp(lp - old.as<T>()[i]);
      T unclipped = ratio * A, clipped = std::clamp(ratio, 1 - el, 1 + eh) * A;
      T loss = -std::min(unclipped, clipped);
      T dloss = unclipped <= clipped ? -A * ratio : T(0);
      if (hasRef && beta != 0) {
        T diff = a.in[first + 5].as<T>()[i] - lp;
        loss += beta * (std::exp(diff) - diff - 1);
        dloss += beta * (1 - std::exp(diff));
      }
      f(i, m * weight * loss, m * weight * dloss);
    }
  }
}

template <typename T> void grpoLoss(const KernelArgs &a) {
  double total = 0;
  grpoTokens<T>(a, 0, [&](int64_t, T l, T) { total += l; });
  a.out[0].as<T>()[0] = static_cast<T>(total);
}

template <typename T> void grpoLossGrad(const KernelArgs &a) {
  T g = a.in[0].as<T>()[0];
  T *dl = a.out[0].as<T>();
  grpoTokens<T>(a, 1, [&](int64_t i, T, T d) { dl[i] = g * d; });
}

// --- optimizer -----------------------------------------------------------------

template <typename T> void gradNorm(const KernelArgs &a) {
  double total = 0;
  for (const TensorRef &g : a.in)
    total += parallelSum(g.numel(), [&](int64_t i) {
      double v = g.as<T>()[i];
      return v * v;
    });
  a.out[0].as<T>()[0] = static_cast<T>(attrB(a, "squared") ? total : std::sqrt(total));
}

template <typename T> void sqrtKernel(const KernelArgs &a) {
  const T *x = a.in[0].as<T>();
  T *y = a.out[0].as<T>();
  for (int64_t i = 0; i < a.out[0].numel(); ++i)
    y[i] = std::sqrt(x[i]);
}

/// ZeRO: a group's gradients one after another, the tail zero.
template <typename T> void packFlat(const KernelArgs &a) {
  T *y = a.out[0].as<T>();
  const nlohmann::json &offsets = a.attrs->at("offsets");
  int64_t at = 0;
  for (size_t i = 0; i < a.in.size(); ++i) {
    int64_t offset = offsets.at(i).get<int64_t>();
    std::fill(y + at, y + offset, T(0));
    std::memcpy(y + offset, a.in[i].as<T>(), a.in[i].numel() * sizeof(T));
    at = offset + a.in[i].numel();
  }
  std::fill(y + at, y + a.out[0].numel(), T(0));
}

template <typename T> void clipGrad(const KernelArgs &a) {
  const T *g = a.in[0].as<T>();
  T norm = a.in[1].as<T>()[0];
  // torch.nn.utils.clip_grad_norm_: scale by min(1, max / (norm + 1e-6)).
  T coef = std::min(T(1), static_cast<T>(attrF(a, "max_norm")) / (norm + T(1e-6)));
  T *y = a.out[0].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    y[i] = g[i] * coef;
}

template <typename T> void lrSchedule(const KernelArgs &a) {
  double k = static_cast<double>(index(a.in[0], 0));
  double base = attrF(a, "base_lr");
  double warm = static_cast<double>(attrI(a, "warmup_steps"));
  double total = static_cast<double>(attrI(a, "total_steps"));
  std::string kind = attrS(a, "schedule");
  double f;
  if (k < warm)
    f = k / std::max(1.0, warm);
  else if (kind == "constant")
    f = 1;
  else {
    double progress = (k - warm) / std::max(1.0, total - warm);
    f = kind == "linear" ? std::max(0.0, 1 - progress)
                         : std::max(0.0, 0.5 * (1 + std::cos(M_PI * progress)));
  }
  a.out[0].as<T>()[0] = static_cast<T>(base * f);
}

template <typename T> void adamw(const KernelArgs &a) {
  const T *p = a.in[0].as<T>(), *g = a.in[1].as<T>(), *m = a.in[2].as<T>(),
          *v = a.in[3].as<T>();
  T lr = a.in[4].as<T>()[0];
  double t = static_cast<double>(index(a.in[5], 0)) + 1;
  T b1 = static_cast<T>(attrF(a, "beta1")), b2 = static_cast<T>(attrF(a, "beta2"));
  T eps = static_cast<T>(attrF(a, "eps")), wd = static_cast<T>(attrF(a, "weight_decay"));
  T bc1 = static_cast<T>(1 - std::pow(attrF(a, "beta1"), t));
  T bc2sqrt = static_cast<T>(std::sqrt(1 - std::pow(attrF(a, "beta2"), t)));
  T stepSize = lr / bc1;
  T *po = a.out[0].as<T>(), *mo = a.out[1].as<T>(), *vo = a.out[2].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T w = p[i] * (1 - lr * wd);
    T mi = b1 * m[i] + (1 - b1) * g[i];
    T vi = b2 * v[i] + (1 - b2) * g[i] * g[i];
    po[i] = w - stepSize * mi / (std::sqrt(vi) / bc2sqrt + eps);
    mo[i] = mi;
    vo[i] = vi;
  }
}

// --- registry ------------------------------------------------------------------

using Kernel = void (*)(const KernelArgs &);
struct Entry {
  Kernel f32, f64;
};

#define TRLC_KERNEL(name, fn) {name, {&fn<float>, &fn<double>}}
const std::map<std::string, Entry> &registry() {
  static const std::map<std::string, Entry> r = {
      TRLC_KERNEL("fill", fill),
      TRLC_KERNEL("copy", copyKernel),
      TRLC_KERNEL("add", add),
      TRLC_KERNEL("div", div),
      TRLC_KERNEL("swiglu", swiglu),
      TRLC_KERNEL("swiglu_grad", swigluGrad),
      TRLC_KERNEL("gelu", gelu),
      TRLC_KERNEL("gelu_grad", geluGrad),
      TRLC_KERNEL("split", split),
      TRLC_KERNEL("concat", concat),
      TRLC_KERNEL("embedding", embedding),
      TRLC_KERNEL("embedding_grad", embeddingGrad),
      TRLC_KERNEL("rms_norm", rmsNorm),
      TRLC_KERNEL("rms_norm_grad", rmsNormGrad),
      TRLC_KERNEL("layer_norm", layerNorm),
      TRLC_KERNEL("layer_norm_grad", layerNormGrad),
      TRLC_KERNEL("linear", linear),
      TRLC_KERNEL("linear_grad", linearGrad),
      TRLC_KERNEL("rope", rope),
      TRLC_KERNEL("attention", attention),
      TRLC_KERNEL("attention_grad", attentionGrad),
      TRLC_KERNEL("cross_entropy", crossEntropy),
      TRLC_KERNEL("cross_entropy_grad", crossEntropyGrad),
      TRLC_KERNEL("log_probs", logProbs),
      TRLC_KERNEL("log_probs_grad", logProbsGrad),
      TRLC_KERNEL("fused_linear_cross_entropy", fusedLinearCrossEntropy),
      TRLC_KERNEL("fused_linear_cross_entropy_grad", fusedLinearCrossEntropyGrad),
      TRLC_KERNEL("fused_linear_log_probs", fusedLinearLogProbs),
      TRLC_KERNEL("fused_linear_log_probs_grad", fusedLinearLogProbsGrad),
      TRLC_KERNEL("masked_sum", maskedSum),
      TRLC_KERNEL("masked_sum_grad", maskedSumGrad),
      TRLC_KERNEL("dpo_loss", dpoLoss),
      TRLC_KERNEL("dpo_loss_grad", dpoLossGrad),
      TRLC_KERNEL("kto_loss", ktoLoss),
      TRLC_KERNEL("kto_loss_grad", ktoLossGrad),
      TRLC_KERNEL("grpo_loss", grpoLoss),
      TRLC_KERNEL("grpo_loss_grad", grpoLossGrad),
      TRLC_KERNEL("grad_norm", gradNorm),
      TRLC_KERNEL("clip_grad", clipGrad),
      TRLC_KERNEL("sqrt", sqrtKernel),
      TRLC_KERNEL("pack_flat", packFlat),
      TRLC_KERNEL("lr_schedule", lrSchedule),
      TRLC_KERNEL("adamw", adamw),
  };
  return r;
}
#undef TRLC_KERNEL

/// The float type a call computes in: that of its first float tensor
/// (f32 for bf16 storage).
std::optional<DType> floatType(const KernelArgs &a) {
  for (const auto *list : {&a.out, &a.in})
    for (const TensorRef &t : *list) {
      if (t && (t.dtype() == DType::F32 || t.dtype() == DType::F64))
        return t.dtype();
      if (t && t.dtype() == DType::BF16)
        return DType::F32;
    }
  return std::nullopt;
}

/// A call with bf16 tensors runs on f32 copies of them: every bf16 tensor
/// (once per distinct buffer, so in-place operands stay in place) is
/// widened, the f32 kernel runs, and the bf16 outputs are rounded back.
class WidenedCall {
public:
  /// `spare`: buffers of earlier calls, reused (and given back) so that a
  /// step does not allocate.
  WidenedCall(const KernelArgs &a, std::vector<std::vector<float>> &spare)
      : args(a), spare(spare) {
    for (auto *list : {&args.in, &args.out})
      for (TensorRef &t : *list)
        if (t && t.dtype() == DType::BF16)
          t = widen(t);
  }
  ~WidenedCall() {
    for (auto &[ptr, w] : wide)
      spare.push_back(std::move(w.data));
  }
  const KernelArgs &get() const { return args; }
  /// Rounds the outputs back into their bf16 buffers.
  void finish(const KernelArgs &original) {
    for (size_t i = 0; i < original.out.size(); ++i) {
      const TensorRef &t = original.out[i];
      if (!t || t.dtype() != DType::BF16)
        continue;
      const float *src = args.out[i].as<float>();
      uint16_t *dst = t.as<uint16_t>();
      int64_t n = t.numel();
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < n; ++j)
        dst[j] = floatToBf16(src[j]);
    }
  }

private:
  struct Wide {
    artifact::TensorDesc desc;
    std::vector<float> data;
  };
  TensorRef widen(const TensorRef &t) {
    auto [it, fresh] = wide.try_emplace(t.data);
    Wide &w = it->second;
    if (fresh) {
      w.desc = *t.desc;
      w.desc.dtype = DType::F32;
      if (!spare.empty()) {
        w.data = std::move(spare.back());
        spare.pop_back();
      }
      w.data.resize(t.numel());
      const uint16_t *src = t.as<uint16_t>();
      int64_t n = t.numel();
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < n; ++j)
        w.data[j] = bf16ToFloat(src[j]);
    }
    TensorRef r;
    r.data = w.data.data();
    r.desc = &w.desc;
    return r;
  }
  KernelArgs args;
  std::vector<std::vector<float>> &spare;
  std::map<void *, Wide> wide; // node-based: descs and buffers stay put
};

class CpuBackend : public Backend {
public:
  explicit CpuBackend(int threads) : threads(threads) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }
  HeldBytes held;
  std::string name() const override { return "cpu"; }
  void *allocate(int64_t bytes) override {
    void *p = std::aligned_alloc(64, std::max<int64_t>(64, (bytes + 63) / 64 * 64));
    if (p) {
      std::memset(p, 0, bytes);
      held.add(p, bytes);
    }
    return p;
  }
  void release(void *ptr) override {
    held.remove(ptr);
    std::free(ptr);
  }
  int64_t allocatedPeakBytes() const override { return held.peak(); }
  void copy(void *dst, const void *src, int64_t bytes) override {
    std::memmove(dst, src, bytes);
  }
  bool supports(const std::string &kernel) const override {
    return registry().count(kernel) > 0;
  }
  int64_t scratchBytes(const artifact::KernelCall &call,
                       const artifact::Plan &plan) const override {
    auto shape = [&](int i) -> const std::vector<int64_t> & {
      return plan.tensors[call.in[i]].shape;
    };
    const int64_t e = 8;  // room for f64
    const std::string &k = call.kernel;
    if (k == "rms_norm_grad")
      return threads * shape(1).back() * e;
    if (k == "layer_norm_grad")
      return 2 * threads * shape(1).back() * e;
    if (k == "attention" || k == "attention_grad") {
      const auto &q = shape(k == "attention" ? 0 : 1);
      // varlen: documents of at most max_seqlen tokens (all tokens without it)
      int64_t len = q.size() == 4 ? q[1]
                    : call.attrs.contains("max_seqlen") ? call.attrs["max_seqlen"].get<int64_t>()
                                                        : q[0];
      int64_t matrices = k == "attention" ? 1 : 2;
      return threads * (matrices * len * len + len) * e;
    }
    if (k.rfind("fused_linear_", 0) == 0) {
      int grad = k.size() > 5 && k.substr(k.size() - 5) == "_grad";
      const auto &h = shape(grad);
      int64_t rows = 1;
      for (size_t i = 0; i + 1 < h.size(); ++i)
        rows *= h[i];
      int64_t chunk = std::min<int64_t>(call.attrs.at("chunk_size").get<int64_t>(), rows);
      return std::max<int64_t>(chunk, 1) * shape(grad + 1)[0] * e;
    }
    return 0;
  }
  void run(const std::string &kernel, const KernelArgs &args) override {
    auto it = registry().find(kernel);
    if (it == registry().end())
      throw KernelError("the CPU backend has no kernel '" + kernel + "'");
    auto type = floatType(args);
    if (!type)
      throw KernelError("kernel '" + kernel + "' has no float tensor");
    if (hasTensorOf(args, DType::BF16) &&
        !(kernel == "copy" && args.in[0].dtype() == args.out[0].dtype())) {
      WidenedCall call(args, spare);
      it->second.f32(call.get());
      call.finish(args);
      return;
    }
    (*type == DType::F64 ? it->second.f64 : it->second.f32)(args);
  }
  void synchronize() override {}

private:
  int threads;
  std::vector<std::vector<float>> spare; // see WidenedCall
};

/// TRLC_GUARD_DEVICE_MEMORY=1: the CPU backend's memory is out of the
/// host's reach as a GPU's is. It is mapped PROT_NONE except while a kernel
/// or copy() runs, so host code that touches the arena directly instead of
/// through copy() crashes here, where the tests run, rather than on a GPU.
/// Gloo collectives read the arena directly, so a process of a larger world
/// (WORLD_SIZE > 1) runs unguarded.
class GuardedBackend : public Backend {
public:
  explicit GuardedBackend(std::unique_ptr<Backend> inner) : inner(std::move(inner)) {}
  ~GuardedBackend() override {
    for (auto &[p, n] : maps)
      munmap(p, n);
  }
  std::string name() const override { return inner->name(); }
  void *allocate(int64_t bytes) override {
    size_t n = (std::max<int64_t>(bytes, 1) + 4095) / 4096 * 4096;
    void *p = mmap(nullptr, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      return nullptr;
    maps[p] = n;
    held.add(p, bytes);
    return p;
  }
  void release(void *ptr) override {
    auto it = maps.find(ptr);
    if (it == maps.end())
      return;
    munmap(ptr, it->second);
    held.remove(ptr);
    maps.erase(it);
  }
  void *allocateHost(int64_t bytes) override { return inner->allocateHost(bytes); }
  void releaseHost(void *ptr) override { inner->releaseHost(ptr); }
  void copy(void *dst, const void *src, int64_t bytes) override {
    Open open(*this);
    inner->copy(dst, src, bytes);
  }
  bool supports(const std::string &kernel) const override { return inner->supports(kernel); }
  int64_t scratchBytes(const artifact::KernelCall &call,
                       const artifact::Plan &plan) const override {
    return inner->scratchBytes(call, plan);
  }
  void run(const std::string &kernel, const KernelArgs &args) override {
    Open open(*this);
    inner->run(kernel, args);
  }
  void synchronize() override { inner->synchronize(); }
  int64_t allocatedPeakBytes() const override { return held.peak(); }

private:
  /// The mappings are readable and writable while one of these lives.
  struct Open {
    explicit Open(GuardedBackend &b) : b(b) { b.protect(PROT_READ | PROT_WRITE); }
    ~Open() { b.protect(PROT_NONE); }
    GuardedBackend &b;
  };
  void protect(int how) {
    for (auto &[p, n] : maps)
      if (mprotect(p, n, how) != 0)
        throw KernelError("TRLC_GUARD_DEVICE_MEMORY: mprotect failed");
  }
  std::unique_ptr<Backend> inner;
  std::map<void *, size_t> maps;
  HeldBytes held;
};

} // namespace

std::unique_ptr<Backend> makeCpuBackend(int threads) {
  auto cpu = std::make_unique<CpuBackend>(std::max(1, threads));
  const char *guard = std::getenv("TRLC_GUARD_DEVICE_MEMORY");
  const char *world = std::getenv("WORLD_SIZE");
  if (guard && *guard && std::string(guard) != "0" && (!world || std::atoi(world) <= 1))
    return std::make_unique<GuardedBackend>(std::move(cpu));
  return cpu;
}

} // namespace trlc
