//===- cross_entropy.cpp - losses over the vocabulary, plain and fused ----===//
//
// Cross entropy sums -log p(label) over rows (-100: ignored); log_probs
// keeps each row's value. The fused forms multiply hidden states by the
// lm_head `chunk_size` rows at a time into scratch, never [rows, vocab].
//
//===----------------------------------------------------------------------===//

#include "cpu/common.h"

namespace trlc::cpu {

namespace {

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

} // namespace

template <typename T> void crossEntropy(const KernelArgs &a) {
  const TensorRef &logits = a.in[0], &labels = a.in[1];
  int64_t vocab = logits.dim(-1), ignore = attrI(a, "ignore_index");
  a.out[0].as<T>()[0] = static_cast<T>(-parallelSum(rowsOf(logits), [&](int64_t r) {
    return static_cast<double>(rowLogProb(logits.as<T>() + r * vocab, vocab,
                                          index(labels, r), ignore));
  }));
}

namespace {

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

} // namespace

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

namespace {

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

} // namespace

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

TRLC_CPU_KERNEL(crossEntropy)
TRLC_CPU_KERNEL(crossEntropyGrad)
TRLC_CPU_KERNEL(logProbs)
TRLC_CPU_KERNEL(logProbsGrad)
TRLC_CPU_KERNEL(fusedLinearCrossEntropy)
TRLC_CPU_KERNEL(fusedLinearCrossEntropyGrad)
TRLC_CPU_KERNEL(fusedLinearLogProbs)
TRLC_CPU_KERNEL(fusedLinearLogProbsGrad)

} // namespace trlc::cpu
