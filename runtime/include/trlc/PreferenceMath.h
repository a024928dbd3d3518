//===- PreferenceMath.h - TRL's preference losses, per pair or row -*- C++ -*-===//
//
// The per-pair DPO and per-example KTO terms and their derivatives, in
// double, written once for the CPU kernels and the CUDA kernels
// (`__host__ __device__` under nvcc). The kinds follow the dialect's
// DpoLossType and KtoLossType enums (dialect/TrlAttrs.td), in order.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_PREFERENCEMATH_H
#define TRLC_RUNTIME_PREFERENCEMATH_H

#include "trlc/ScalarMath.h" // TRLC_HD

#include <math.h>

namespace trlc {

enum class DpoKind : int { Sigmoid, Hinge, Ipo, Robust, ApoZero, ApoDown };
enum class KtoKind : int { Kto, ApoZeroUnpaired };

TRLC_HD inline double sigmoidOf(double x) { return 1.0 / (1.0 + exp(-x)); }
TRLC_HD inline double logSigmoidOf(double x) {
  return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

/// One DPO pair's loss and its derivatives by the policy's chosen and
/// rejected log-probabilities.
struct DpoTerm {
  double loss, dChosen, dRejected;
};

/// h_c = pi_c - ref_c, h_r = pi_r - ref_r, z = beta (h_c - h_r); `ls` is
/// label_smoothing.
TRLC_HD inline DpoTerm dpoTerm(DpoKind kind, double beta, double ls, double pc, double pr,
                               double rc, double rr) {
  double hc = pc - rc, hr = pr - rr, z = beta * (hc - hr);
  switch (kind) {
  case DpoKind::Hinge: {
    double d = 1 - z > 0 ? -beta : 0.0;
    return {fmax(0.0, 1 - z), d, -d};
  }
  case DpoKind::Ipo: {
    double e = hc - hr - 1 / (2 * beta);
    return {e * e, 2 * e, -2 * e};
  }
  case DpoKind::Robust: {
    double loss = (-logSigmoidOf(z) * (1 - ls) + logSigmoidOf(-z) * ls) / (1 - 2 * ls);
    double dz = (-(1 - ls) * sigmoidOf(-z) - ls * sigmoidOf(z)) / (1 - 2 * ls);
    return {loss, dz * beta, -dz * beta};
  }
  case DpoKind::ApoZero: {
    double sc = sigmoidOf(beta * hc), sr = sigmoidOf(beta * hr);
    return {1 - sc + sr, -beta * sc * (1 - sc), beta * sr * (1 - sr)};
  }
  case DpoKind::ApoDown: {
    double sc = sigmoidOf(beta * hc), sz = sigmoidOf(z);
    double dz = -beta * sz * (1 - sz);
    return {sc + 1 - sz, beta * sc * (1 - sc) + dz, -dz};
  }
  case DpoKind::Sigmoid:
  default: {
    double loss = -logSigmoidOf(z) * (1 - ls) - logSigmoidOf(-z) * ls;
    double dz = (1 - ls) * (sigmoidOf(z) - 1) + ls * sigmoidOf(z);
    return {loss, dz * beta, -dz * beta};
  }
  }
}

/// One KTO example's loss (before its weight) and its derivative by the
/// policy's log-probability; r = pi - ref, kl the clamped estimate.
struct KtoTerm {
  double loss, dPolicy;
};

TRLC_HD inline KtoTerm ktoTerm(KtoKind kind, double beta, double r, double kl,
                               bool desirable, double wDesirable, double wUndesirable) {
  if (kind == KtoKind::ApoZeroUnpaired) {
    double s = sigmoidOf(beta * r);
    return desirable ? KtoTerm{wDesirable * (1 - s), -wDesirable * beta * s * (1 - s)}
                     : KtoTerm{wUndesirable * s, wUndesirable * beta * s * (1 - s)};
  }
  double s = desirable ? sigmoidOf(beta * (r - kl)) : sigmoidOf(beta * (kl - r));
  return desirable ? KtoTerm{wDesirable * (1 - s), -wDesirable * beta * s * (1 - s)}
                   : KtoTerm{wUndesirable * (1 - s), wUndesirable * beta * s * (1 - s)};
}

} // namespace trlc

#endif // TRLC_RUNTIME_PREFERENCEMATH_H
