//===- elementwise.cpp - fill, copies, elementwise math, split/concat, masked sums ===//
//
// Elementwise kernels and byte moves: one static OpenMP loop each (the
// MLP activations in one contiguous block per thread, which the compiler
// vectorises). split/concat move the parts of a tensor along an axis;
// pack_flat lays a ZeRO-3 group's gradients into its flat buffer.
//
//===----------------------------------------------------------------------===//

#include "cpu/common.h"

namespace trlc::cpu {

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

template <typename T> void divide(const KernelArgs &a) {
  const T *x = a.in[0].as<T>();
  T d = a.in[1].as<T>()[0];
  T *y = a.out[0].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    y[i] = x[i] / d;
}

/// trl.dropout: kept elements scaled by 1 / (1 - p), the mask from
/// (seed, stream, position) alone (trlc/ScalarMath.h).
template <typename T> void dropout(const KernelArgs &a) {
  double p = attrF(a, "p");
  uint32_t threshold = dropoutThreshold(p);
  uint64_t seed = static_cast<uint64_t>(index(a.in[1], 0)),
           stream = static_cast<uint64_t>(attrI(a, "stream"));
  T scale = static_cast<T>(1 / (1 - p));
  const T *x = a.in[0].as<T>();
  T *y = a.out[0].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    y[i] = dropoutKeeps(seed, stream, static_cast<uint64_t>(i), threshold) ? x[i] * scale : T(0);
}

namespace {

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

} // namespace

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

namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654;

} // namespace

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

template <typename T> void copyTensor(const KernelArgs &a) {
  if (a.out[0].data != a.in[0].data)
    std::memcpy(a.out[0].data, a.in[0].data, a.in[0].desc->bytes());
}

namespace {

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

} // namespace

template <typename T> void split(const KernelArgs &a) {
  moveParts<T>(a, a.in[0], a.out, true);
}

template <typename T> void concat(const KernelArgs &a) {
  moveParts<T>(a, a.out[0], a.in, false);
}

/// x is the mask's shape, or one row every mask row reads (shared).
template <typename T> void maskedSum(const KernelArgs &a) {
  const T *x = a.in[0].as<T>(), *m = a.in[1].as<T>();
  int64_t s = a.in[1].dim(-1);
  bool shared = a.in[0].numel() == s;
  T *y = a.out[0].as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < a.out[0].numel(); ++r) {
    T acc = 0;
    const T *xr = shared ? x : x + r * s;
    for (int64_t j = 0; j < s; ++j)
      acc += xr[j] * m[r * s + j];
    y[r] = acc;
  }
}

template <typename T> void maskedSumGrad(const KernelArgs &a) {
  const T *g = a.in[0].as<T>(), *m = a.in[1].as<T>();
  int64_t s = a.in[1].dim(-1), rows = a.in[0].numel();
  T *dx = a.out[0].as<T>();
  if (a.out[0].numel() == s) {  // a shared row: the mask rows' sum, in order
    for (int64_t j = 0; j < s; ++j) {
      T acc = 0;
      for (int64_t r = 0; r < rows; ++r)
        acc += g[r] * m[r * s + j];
      dx[j] = acc;
    }
    return;
  }
  for (int64_t i = 0; i < a.out[0].numel(); ++i)
    dx[i] = g[i / s] * m[i];
}

template <typename T> void sqrtElements(const KernelArgs &a) {
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

TRLC_CPU_KERNEL(fill)
TRLC_CPU_KERNEL(add)
TRLC_CPU_KERNEL(divide)
TRLC_CPU_KERNEL(dropout)
TRLC_CPU_KERNEL(swiglu)
TRLC_CPU_KERNEL(swigluGrad)
TRLC_CPU_KERNEL(gelu)
TRLC_CPU_KERNEL(geluGrad)
TRLC_CPU_KERNEL(copyTensor)
TRLC_CPU_KERNEL(split)
TRLC_CPU_KERNEL(concat)
TRLC_CPU_KERNEL(maskedSum)
TRLC_CPU_KERNEL(maskedSumGrad)
TRLC_CPU_KERNEL(sqrtElements)
TRLC_CPU_KERNEL(packFlat)

} // namespace trlc::cpu
