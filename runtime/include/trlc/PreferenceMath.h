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

/// One token of PPO's objective (trl.ppo_loss): the clipped policy term
/// max(-A r, -A clip(r, 1 - c, 1 + c)), r = exp(lp - old), and its
/// derivative by lp; the clipped value term max((v - R)^2, (v' - R)^2),
/// v' = old_v + clip(v - old_v, -cv, cv), and its derivative by v. As
/// PyTorch differentiates them: torch.maximum gives each side half on a
/// tie, torch.clamp passes the gradient inside its closed range. `clipped`:
/// the clipped side is the larger (TRL's pg_clipfrac and vf_clipfrac).
struct PpoTerm {
  double loss, d;
  bool clipped;
};

TRLC_HD inline PpoTerm ppoPolicyTerm(double lp, double old, double adv, double clip) {
  double r = exp(lp - old), lo = 1 - clip, hi = 1 + clip;
  double rc = r < lo ? lo : (r > hi ? hi : r);
  double u1 = -adv * r, u2 = -adv * rc;
  double d1 = -adv * r, d2 = r >= lo && r <= hi ? -adv * r : 0.0;
  double d = u1 > u2 ? d1 : (u1 < u2 ? d2 : 0.5 * (d1 + d2));
  return {u1 > u2 ? u1 : u2, d, u2 > u1};
}

TRLC_HD inline PpoTerm ppoValueTerm(double v, double oldV, double ret, double clip) {
  double diff = v - oldV;
  double vc = oldV + (diff < -clip ? -clip : (diff > clip ? clip : diff));
  double l1 = (v - ret) * (v - ret), l2 = (vc - ret) * (vc - ret);
  double d1 = 2 * (v - ret), d2 = diff >= -clip && diff <= clip ? 2 * (vc - ret) : 0.0;
  double d = l1 > l2 ? d1 : (l1 < l2 ? d2 : 0.5 * (d1 + d2));
  return {l1 > l2 ? l1 : l2, d, l2 > l1};
}

} // namespace trlc

#endif // TRLC_RUNTIME_PREFERENCEMATH_H
