//===- preference.cpp - DPO, KTO and GRPO losses --------------------------===//
//
// TRL's loss types (../shared/REFERENCE.md); each backward gives the
// gradient with respect to the policy's log-probabilities.
//
//===----------------------------------------------------------------------===//

#include "cpu/common.h"

namespace trlc::cpu {

namespace {

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

} // namespace

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

namespace {

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

} // namespace

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

TRLC_CPU_KERNEL(dpoLoss)
TRLC_CPU_KERNEL(dpoLossGrad)
TRLC_CPU_KERNEL(ktoLoss)
TRLC_CPU_KERNEL(ktoLossGrad)
TRLC_CPU_KERNEL(grpoLoss)
TRLC_CPU_KERNEL(grpoLossGrad)

} // namespace trlc::cpu
