//===- ScalarMath.h - scalar math both backends compute alike ---*- C++ -*-===//
//
// The learning-rate schedule, the AdamW update and the dropout mask,
// written once for the
// CPU kernels and the CUDA kernels (`__host__ __device__` under nvcc), so
// the two backends differ only in how they parallelise, not in what they
// compute.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_SCALARMATH_H
#define TRLC_RUNTIME_SCALARMATH_H

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define TRLC_HD __host__ __device__
#else
#define TRLC_HD
#endif

namespace trlc {

/// The schedules of [train] lr_scheduler_type (transformers' names).
enum class LrScheduleKind : int { Constant, Linear, Cosine };

/// Hugging Face's schedules with linear warmup: the factor of the base
/// learning rate at 0-based optimizer step `step`.
TRLC_HD inline double lrFactor(LrScheduleKind kind, double step, double warmup,
                               double total) {
  if (step < warmup)
    return step / fmax(1.0, warmup);
  if (kind == LrScheduleKind::Constant)
    return 1;
  double progress = (step - warmup) / fmax(1.0, total - warmup);
  if (kind == LrScheduleKind::Linear)
    return fmax(0.0, 1 - progress);
  return fmax(0.0, 0.5 * (1 + cos(3.14159265358979323846 * progress)));
}

TRLC_HD inline float sqrtOf(float x) { return sqrtf(x); }
TRLC_HD inline double sqrtOf(double x) { return sqrt(x); }

/// torch.optim.AdamW's hyperparameters.
struct AdamWHyper {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0;
};

/// torch.nn.utils.clip_grad_norm_'s factor: min(1, max / (norm + 1e-6)).
template <typename T> TRLC_HD inline T clipCoefficient(T norm, T maxNorm) {
  T coef = maxNorm / (norm + T(1e-6));
  return coef < T(1) ? coef : T(1);
}

/// What every element of one AdamW step uses: the hyperparameters in T,
/// the learning rate, the bias corrections of step `step` + 1, and the
/// factor the gradient is clipped by (1: none).
template <typename T> struct AdamWStep {
  T beta1, beta2, eps, weightDecay, lr, stepSize, bc2sqrt, gradScale;
};

template <typename T>
TRLC_HD inline AdamWStep<T> adamwStep(const AdamWHyper &h, T lr, double step,
                                      T gradScale = T(1)) {
  double t = step + 1;
  AdamWStep<T> s;
  s.gradScale = gradScale;
  s.beta1 = static_cast<T>(h.beta1);
  s.beta2 = static_cast<T>(h.beta2);
  s.eps = static_cast<T>(h.eps);
  s.weightDecay = static_cast<T>(h.weightDecay);
  s.lr = lr;
  s.stepSize = lr / static_cast<T>(1 - pow(h.beta1, t));
  s.bc2sqrt = static_cast<T>(sqrt(1 - pow(h.beta2, t)));
  return s;
}

/// One element: decoupled weight decay, the moments, the update.
template <typename T>
TRLC_HD inline void adamwUpdate(const AdamWStep<T> &s, T p, T grad, T m, T v,
                                T &pOut, T &mOut, T &vOut) {
  T g = grad * s.gradScale;
  T w = p * (1 - s.lr * s.weightDecay);
  T mi = s.beta1 * m + (1 - s.beta1) * g;
  T vi = s.beta2 * v + (1 - s.beta2) * g * g;
  pOut = w - s.stepSize * mi / (sqrtOf(vi) / s.bc2sqrt + s.eps);
  mOut = mi;
  vOut = vi;
}

/// trl.dropout's mask (dialect/TrlOps.td): what a dropout with
/// probability p keeps, as an integer threshold on 24 hash bits, computed
/// once on the host so both backends compare the same integers.
inline uint32_t dropoutThreshold(double p) {
  return static_cast<uint32_t>(llround(p * 16777216.0));
}

/// The seed the runtime gives trl.dropout for micro-batch `micro` of a
/// run seeded `seed`, counting micro-batches over the run: (optimizer step
/// x accumulation + k) x world + rank.
inline int64_t dropoutSeed(int64_t seed, int64_t micro) {
  return static_cast<int64_t>((static_cast<uint64_t>(seed) << 32) ^ static_cast<uint64_t>(micro));
}

/// Whether element `i` of the dropout of (`seed`, `stream`) is kept: the
/// splitmix64 finaliser over seed, stream and position.
TRLC_HD inline bool dropoutKeeps(uint64_t seed, uint64_t stream, uint64_t i,
                                 uint32_t threshold) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + (stream + 1) * 0xD1B54A32D192ED03ull + i;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<uint32_t>(z >> 40) >= threshold;
}

} // namespace trlc

#endif // TRLC_RUNTIME_SCALARMATH_H
