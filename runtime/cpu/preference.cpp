//===- preference.cpp - DPO, KTO and GRPO losses --------------------------===//
//
// TRL's loss types (../shared/REFERENCE.md); each backward gives the
// gradient with respect to the policy's log-probabilities.
//
//===----------------------------------------------------------------------===//

#include "cpu/common.h"
#include "trlc/PreferenceMath.h"

namespace trlc::cpu {

// DPO and KTO: the terms of trlc/PreferenceMath.h (shared with CUDA), in
// double, weighted by the runtime's per-row weights.

namespace {
/// dpo_loss(_grad)'s beta: the beta value operand at `at` when the call
/// has one (a scheduled beta), else the attribute.
template <typename T> double dpoBeta(const KernelArgs &a, size_t at) {
  return a.in.size() > at && a.in[at] ? static_cast<double>(a.in[at].as<T>()[0])
                                      : attrF(a, "beta");
}
} // namespace

template <typename T> void dpoLoss(const KernelArgs &a) {
  int64_t n = a.in[0].numel();
  double beta = dpoBeta<T>(a, 6), ls = attrF(a, "label_smoothing");
  DpoKind kind = attrDpoKind(a);
  const T *pc = a.in[0].as<T>(), *pr = a.in[1].as<T>(), *rc = a.in[2].as<T>(),
          *rr = a.in[3].as<T>(), *w = a.in[4].as<T>();
  double total = 0, nll = 0;
  for (int64_t i = 0; i < n; ++i) {
    total += w[i] * dpoTerm(kind, beta, ls, pc[i], pr[i], rc[i], rr[i]).loss;
    nll -= pc[i];
    a.out[1].as<T>()[i] = static_cast<T>(beta * (pc[i] - rc[i]));
    a.out[2].as<T>()[i] = static_cast<T>(beta * (pr[i] - rr[i]));
  }
  if (a.in.size() > 5 && a.in[5])  // rpo_alpha: the chosen completions' NLL
    total += attrF(a, "rpo_alpha") * a.in[5].as<T>()[0] * nll;
  a.out[0].as<T>()[0] = static_cast<T>(total);
}

template <typename T> void dpoLossGrad(const KernelArgs &a) {
  double g = a.in[0].as<T>()[0];
  int64_t n = a.in[1].numel();
  double beta = dpoBeta<T>(a, 7), ls = attrF(a, "label_smoothing");
  DpoKind kind = attrDpoKind(a);
  const T *pc = a.in[1].as<T>(), *pr = a.in[2].as<T>(), *rc = a.in[3].as<T>(),
          *rr = a.in[4].as<T>(), *w = a.in[5].as<T>();
  double nll = a.in.size() > 6 && a.in[6] ? attrF(a, "rpo_alpha") * a.in[6].as<T>()[0] : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    DpoTerm t = dpoTerm(kind, beta, ls, pc[i], pr[i], rc[i], rr[i]);
    a.out[0].as<T>()[i] = static_cast<T>(g * (w[i] * t.dChosen - nll));
    a.out[1].as<T>()[i] = static_cast<T>(g * w[i] * t.dRejected);
  }
}

template <typename T> void ktoKl(const KernelArgs &a) {
  const T *p = a.in[0].as<T>(), *r = a.in[1].as<T>(), *w = a.in[2].as<T>();
  double kl = 0;
  for (int64_t i = 0; i < a.in[0].numel(); ++i)
    kl += static_cast<double>(w[i]) * (static_cast<double>(p[i]) - r[i]);
  a.out[0].as<T>()[0] = static_cast<T>(kl);
}

namespace {
/// The clamped KL estimate of a kto_loss call (0 without one).
template <typename T> double ktoKlOf(const KernelArgs &a, size_t at) {
  return a.in.size() > at && a.in[at] ? std::max(0.0, static_cast<double>(a.in[at].as<T>()[0]))
                                      : 0.0;
}
} // namespace

template <typename T> void ktoLoss(const KernelArgs &a) {
  int64_t n = a.in[0].numel();
  double beta = attrF(a, "beta"), wd = attrF(a, "desirable_weight"),
         wu = attrF(a, "undesirable_weight"), kl = ktoKlOf<T>(a, 4);
  KtoKind kind = attrKtoKind(a);
  const T *pol = a.in[0].as<T>(), *ref = a.in[1].as<T>(), *w = a.in[3].as<T>();
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    double r = static_cast<double>(pol[i]) - ref[i];
    total += w[i] * ktoTerm(kind, beta, r, kl, index(a.in[2], i) != 0, wd, wu).loss;
    a.out[1].as<T>()[i] = static_cast<T>(beta * r);
  }
  a.out[0].as<T>()[0] = static_cast<T>(total);
  a.out[2].as<T>()[0] = static_cast<T>(kl);
}

template <typename T> void ktoLossGrad(const KernelArgs &a) {
  double g = a.in[0].as<T>()[0];
  int64_t n = a.in[1].numel();
  double beta = attrF(a, "beta"), wd = attrF(a, "desirable_weight"),
         wu = attrF(a, "undesirable_weight"), kl = ktoKlOf<T>(a, 5);
  KtoKind kind = attrKtoKind(a);
  const T *pol = a.in[1].as<T>(), *ref = a.in[2].as<T>(), *w = a.in[4].as<T>();
  for (int64_t i = 0; i < n; ++i) {
    double r = static_cast<double>(pol[i]) - ref[i];
    a.out[0].as<T>()[i] = static_cast<T>(
        g * w[i] * ktoTerm(kind, beta, r, kl, index(a.in[3], i) != 0, wd, wu).dPolicy);
  }
}

namespace {

/// GRPO: the per-token loss, its derivative in logp, and each token's
/// normalisation weight. Loss types: grpo averages each sequence over its
/// completion tokens, then over sequences; bnpo divides by the
/// micro-batch's completion tokens; dr_grpo by its rows; each then by
/// `normalizer` (the runtime's: the micro-batches of the global batch, for
/// dr_grpo times max_completion_length, so the accumulated sum is TRL's
/// mean); dapo by `normalizer` alone (the completion tokens of the global
/// batch). With `sequence_level` (GSPO) a row's tokens share one ratio,
/// exp(sum mask (logp - old) / max(active, 1)), so token j's derivative of
/// the row's clipped term is that term's derivative in the ratio, times
/// ratio mask_j / active, summed over the row's weighted tokens.
template <typename T, typename F>
void grpoTokens(const KernelArgs &a, int first, F f) {
  const TensorRef &logp = a.in[first], &old = a.in[first + 1],
                  &adv = a.in[first + 2], &mask = a.in[first + 3];
  T normalizer = a.in[first + 4].as<T>()[0];
  bool hasRef = a.in.size() > static_cast<size_t>(first + 5) && a.in[first + 5];
  T el = static_cast<T>(attrF(a, "epsilon_low")), eh = static_cast<T>(attrF(a, "epsilon_high"));
  T beta = static_cast<T>(attrF(a, "beta"));
  std::string type = attrS(a, "loss_type");
  bool sequence = attrB(a, "sequence_level");
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
      weight = T(1) / rows;
    else
      weight = T(1);
    weight /= normalizer;
    T A = adv.as<T>()[b];
    T rowRatio = 0, rowShare = 0;
    if (sequence) {
      double logRatio = 0;
      for (int64_t j = 0; j < s; ++j)
        logRatio += mask.as<T>()[b * s + j] * (logp.as<T>()[b * s + j] - old.as<T>()[b * s + j]);
      rowRatio = static_cast<T>(std::exp(logRatio / std::max(rowActive, 1.0)));
      rowShare = static_cast<T>(rowActive / std::max(rowActive, 1.0));
    }
    for (int64_t j = 0; j < s; ++j) {
      int64_t i = b * s + j;
      T m = mask.as<T>()[i];
      T lp = logp.as<T>()[i];
      T ratio = sequence ? rowRatio : std::exp(lp - old.as<T>()[i]);
      T unclipped = ratio * A, clipped = std::clamp(ratio, 1 - el, 1 + eh) * A;
      T loss = -std::min(unclipped, clipped);
      T dloss = unclipped <= clipped ? -A * ratio * (sequence ? rowShare : T(1)) : T(0);
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

/// RLOO: one ratio per row, exp(sum mask logp - old), clipped; the rows'
/// sum over `normalizer`. Token j's derivative is mask_j times its row's.
template <typename T, typename F>
void rlooRows(const KernelArgs &a, int first, F f) {
  const TensorRef &logp = a.in[first], &old = a.in[first + 1], &adv = a.in[first + 2],
                  &mask = a.in[first + 3];
  T normalizer = a.in[first + 4].as<T>()[0];
  T el = static_cast<T>(attrF(a, "epsilon_low")), eh = static_cast<T>(attrF(a, "epsilon_high"));
  int64_t rows = logp.dim(0), s = logp.dim(1);
  for (int64_t b = 0; b < rows; ++b) {
    double logps = 0;
    for (int64_t j = 0; j < s; ++j)
      logps += double(mask.as<T>()[b * s + j]) * logp.as<T>()[b * s + j];
    T A = adv.as<T>()[b], ratio = static_cast<T>(std::exp(logps - double(old.as<T>()[b])));
    T unclipped = ratio * A, clipped = std::clamp(ratio, 1 - el, 1 + eh) * A;
    T loss = -std::min(unclipped, clipped), dratio = unclipped <= clipped ? -A * ratio : T(0);
    f(b, s, loss / normalizer, dratio / normalizer);
  }
}

template <typename T> void rlooLoss(const KernelArgs &a) {
  double total = 0;
  rlooRows<T>(a, 0, [&](int64_t, int64_t, T l, T) { total += l; });
  a.out[0].as<T>()[0] = static_cast<T>(total);
}

template <typename T> void rlooLossGrad(const KernelArgs &a) {
  T g = a.in[0].as<T>()[0];
  const T *mask = a.in[4].as<T>();
  T *dl = a.out[0].as<T>();
  rlooRows<T>(a, 1, [&](int64_t b, int64_t s, T, T d) {
    for (int64_t j = 0; j < s; ++j)
      dl[b * s + j] = g * d * mask[b * s + j];
  });
}

namespace {
/// ppo_loss(_grad)'s operands from `f`: every token's policy and value
/// terms, `each(i, policy, value)`.
template <typename T, typename Each>
void ppoTokens(const KernelArgs &a, size_t f, Each each) {
  const T *lp = a.in[f].as<T>(), *old = a.in[f + 1].as<T>(), *adv = a.in[f + 2].as<T>(),
          *v = a.in[f + 4].as<T>(), *oldV = a.in[f + 5].as<T>(), *ret = a.in[f + 6].as<T>();
  double clip = attrF(a, "cliprange"), clipV = attrF(a, "cliprange_value");
  for (int64_t i = 0; i < a.in[f].numel(); ++i)
    each(i, ppoPolicyTerm(lp[i], old[i], adv[i], clip), ppoValueTerm(v[i], oldV[i], ret[i], clipV));
}
} // namespace

template <typename T> void ppoLoss(const KernelArgs &a) {
  const T *mask = a.in[3].as<T>(), *vmask = a.in[7].as<T>();
  double pg = 0, vf = 0;
  ppoTokens<T>(a, 0, [&](int64_t i, PpoTerm p, PpoTerm v) {
    pg += mask[i] * p.loss;
    vf += vmask[i] * v.loss;
  });
  double wp = a.in[8].as<T>()[0], wv = a.in[9].as<T>()[0];
  a.out[0].as<T>()[0] = static_cast<T>(wp * pg + attrF(a, "vf_coef") * 0.5 * wv * vf);
}

template <typename T> void ppoLossGrad(const KernelArgs &a) {
  double g = a.in[0].as<T>()[0];
  const T *mask = a.in[4].as<T>(), *vmask = a.in[8].as<T>();
  double wp = g * a.in[9].as<T>()[0], wv = g * attrF(a, "vf_coef") * 0.5 * a.in[10].as<T>()[0];
  T *dlp = a.out[0].as<T>(), *dv = a.out[1].as<T>();
  ppoTokens<T>(a, 1, [&](int64_t i, PpoTerm p, PpoTerm v) {
    dlp[i] = static_cast<T>(wp * mask[i] * p.d);
    dv[i] = static_cast<T>(wv * vmask[i] * v.d);
  });
}

TRLC_CPU_KERNEL(dpoLoss)
TRLC_CPU_KERNEL(dpoLossGrad)
TRLC_CPU_KERNEL(ktoKl)
TRLC_CPU_KERNEL(ktoLoss)
TRLC_CPU_KERNEL(ktoLossGrad)
TRLC_CPU_KERNEL(grpoLoss)
TRLC_CPU_KERNEL(grpoLossGrad)
TRLC_CPU_KERNEL(rlooLoss)
TRLC_CPU_KERNEL(rlooLossGrad)
TRLC_CPU_KERNEL(ppoLoss)
TRLC_CPU_KERNEL(ppoLossGrad)

} // namespace trlc::cpu
