//===- cross_entropy.cu - log-probs, cross entropy, fused head -*- CUDA -*-===//
//
// Rows of logits [rows, vocab] fp32, one block per row: the row's max and
// sum of exponentials by block reductions, then the label's
// log-probability, or the gradient coef * (softmax - onehot) written over
// the row (in place is allowed) or, in the fused head, to bf16. Ignored
// labels (ignore_index) give 0 and a zero gradient row; a label outside the
// vocabulary sets the status word and counts as ignored. The loss sum adds
// the rows in order in one block.
//
// The fused lm_head never holds [rows, vocab]: `chunk` rows of logits at a
// time in scratch, with the bf16 weight and hidden states converted once
// per call (bf16-stored hidden states are read in place). Scratch, in
// order: weight bf16 [vocab, h], hidden bf16 [rows, h] when they are fp32,
// logits fp32 [chunk, vocab], and for the backward the logits
// gradient in bf16 [chunk, vocab], or for the forward the per-row values
// fp32 [rows].
//
//===----------------------------------------------------------------------===//

#include "common.cuh"

namespace trlc::cuda {
namespace {

constexpr int kThreads = 256;

__device__ float rowLse(const float *row, int64_t vocab) {
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
    mx = fmaxf(mx, row[j]);
  mx = blockMax(mx);
  float sum = 0;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
    sum += expf(row[j] - mx);
  return mx + logf(blockSum(sum));
}

/// The row's label, or -1 when ignored or (reported) out of range.
__device__ long long rowLabel(Status st, Index labels, int64_t r, int64_t vocab,
                              int64_t ignore) {
  long long label = loadIndex(labels, r);
  if (label == ignore || !inRange(st, Status::LabelOutsideVocab, label, vocab))
    return -1;
  return label;
}

__global__ void logProbsKernel(Status st, const float *logits, Index labels,
                               float *y, int64_t rows, int64_t vocab,
                               int64_t ignore) {
  int64_t r = gridRow();
  if (r >= rows)
    return;
  long long label = rowLabel(st, labels, r, vocab, ignore);
  if (label < 0) {
    if (threadIdx.x == 0)
      y[r] = 0;
    return;
  }
  const float *row = logits + r * vocab;
  float lse = rowLse(row, vocab);
  if (threadIdx.x == 0)
    y[r] = row[label] - lse;
}

__global__ void logitsGradKernel(Status st, const float *logits, Index labels,
                                 RowCoef coef, FloatsOut out, int64_t rows,
                                 int64_t vocab, int64_t ignore) {
  int64_t r = gridRow();
  if (r >= rows)
    return;
  long long label = rowLabel(st, labels, r, vocab, ignore);
  const float *row = logits + r * vocab;
  int64_t at = r * vocab;
  if (label < 0) {
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
      store(out, at + j, 0.0f);
    return;
  }
  float c = coef.sign * coef.value[r * coef.stride];
  float lse = rowLse(row, vocab); // every read of the row is done here
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
    store(out, at + j, c * expf(row[j] - lse) - (j == label ? c : 0.0f));
}

/// out[0] = sign * sum of x[0..n), in order of fixed blocks.
__global__ void sumKernel(const float *x, int64_t n, float sign, float *out) {
  double acc = orderedSum(x, n);
  if (threadIdx.x == 0)
    *out = static_cast<float>(sign * acc);
}

Index offsetIndex(Index x, int64_t rows) {
  static constexpr int bytes[] = {8, 4, 1, 4};
  x.data = static_cast<const char *>(x.data) + rows * bytes[x.type];
  return x;
}

/// fp32 hidden states are rounded into scratch; bf16 ones are used in place.
size_t hiddenCopyBytes(const FusedLinear &f) {
  return f.hidden.bf16 ? 0 : align256(f.rows * f.h * 2);
}

/// The bf16 hidden states: in place, or rounded into the scratch.
const void *bf16Hidden(cudaStream_t s, const FusedLinear &f, void *copy) {
  if (f.hidden.bf16)
    return f.hidden.data;
  toBf16(s, static_cast<const float *>(f.hidden.data), copy, f.rows * f.h);
  return copy;
}

struct FusedScratch {
  void *weight, *hidden, *dlogits;
  float *logits, *rowVals;
};

FusedScratch carve(const FusedLinear &f, void *scratch, bool grad) {
  char *p = static_cast<char *>(scratch);
  FusedScratch s{};
  s.weight = p;
  p += align256(f.vocab * f.h * 2);
  s.hidden = p;
  p += hiddenCopyBytes(f);
  s.logits = reinterpret_cast<float *>(p);
  p += align256(f.chunk * f.vocab * sizeof(float));
  if (grad)
    s.dlogits = p;
  else
    s.rowVals = reinterpret_cast<float *>(p);
  return s;
}

const void *bf16Rows(const void *base, int64_t row, int64_t h) {
  return static_cast<const char *>(base) + row * h * 2;
}

} // namespace

size_t lossScratch(int64_t rows) { return align256(rows * sizeof(float)); }

void logProbs(cudaStream_t s, Status st, const float *logits, Index labels,
              float *y, int64_t rows, int64_t vocab, int64_t ignore) {
  if (rows == 0)
    return;
  logProbsKernel<<<rowGrid(rows), kThreads, 0, s>>>(st, logits, labels, y, rows,
                                                    vocab, ignore);
  TRLC_LAUNCHED();
}

void crossEntropy(cudaStream_t s, Status st, const float *logits, Index labels,
                  float *out, int64_t rows, int64_t vocab, int64_t ignore,
                  void *scratch) {
  auto *vals = static_cast<float *>(scratch);
  logProbs(s, st, logits, labels, vals, rows, vocab, ignore);
  sumKernel<<<1, 1024, 0, s>>>(vals, rows, -1.0f, out);
  TRLC_LAUNCHED();
}

void logitsGrad(cudaStream_t s, Status st, const float *logits, Index labels,
                RowCoef coef, FloatsOut dlogits, int64_t rows, int64_t vocab,
                int64_t ignore) {
  if (rows == 0)
    return;
  logitsGradKernel<<<rowGrid(rows), kThreads, 0, s>>>(
      st, logits, labels, coef, dlogits, rows, vocab, ignore);
  TRLC_LAUNCHED();
}

size_t fusedLinearScratch(const FusedLinear &f, bool grad) {
  size_t common = align256(f.vocab * f.h * 2) + hiddenCopyBytes(f) +
                  align256(f.chunk * f.vocab * sizeof(float));
  return common + (grad ? align256(f.chunk * f.vocab * 2)
                        : align256(f.rows * sizeof(float)));
}

void fusedLinearForward(Matmul *mm, cudaStream_t s, Status st,
                        const FusedLinear &f, float *rowOut, float *sumOut,
                        void *scratch) {
  FusedScratch sc = carve(f, scratch, false);
  toBf16(s, f.weight, sc.weight, f.vocab * f.h);
  const void *hiddenBf16 = bf16Hidden(s, f, sc.hidden);
  float *vals = rowOut ? rowOut : sc.rowVals;
  for (int64_t r0 = 0; r0 < f.rows; r0 += f.chunk) {
    int64_t n = std::min(f.chunk, f.rows - r0);
    gemm(mm, s, false, true, n, f.vocab, f.h, bf16Rows(hiddenBf16, r0, f.h),
         f.h, sc.weight, f.h, 0.0f, sc.logits, f.vocab);
    logProbs(s, st, sc.logits, offsetIndex(f.labels, r0), vals + r0, n, f.vocab,
             f.ignore);
  }
  if (sumOut) {
    sumKernel<<<1, 1024, 0, s>>>(vals, f.rows, -1.0f, sumOut);
    TRLC_LAUNCHED();
  }
}

void fusedLinearBackward(Matmul *mm, cudaStream_t s, Status st,
                         const FusedLinear &f, RowCoef coef, float *dhidden,
                         float *dweight, void *scratch) {
  FusedScratch sc = carve(f, scratch, true);
  toBf16(s, f.weight, sc.weight, f.vocab * f.h);
  const void *hiddenBf16 = bf16Hidden(s, f, sc.hidden);
  TRLC_CUDA_CHECK(
      cudaMemsetAsync(dweight, 0, f.vocab * f.h * sizeof(float), s));
  for (int64_t r0 = 0; r0 < f.rows; r0 += f.chunk) {
    int64_t n = std::min(f.chunk, f.rows - r0);
    const void *hidden = bf16Rows(hiddenBf16, r0, f.h);
    gemm(mm, s, false, true, n, f.vocab, f.h, hidden, f.h, sc.weight, f.h, 0.0f,
         sc.logits, f.vocab);
    RowCoef c = coef;
    c.value += r0 * coef.stride;
    // The gradient goes straight to bf16, the products' operand.
    logitsGrad(s, st, sc.logits, offsetIndex(f.labels, r0), c,
               {sc.dlogits, true}, n, f.vocab, f.ignore);
    gemm(mm, s, false, false, n, f.h, f.vocab, sc.dlogits, f.vocab, sc.weight,
         f.h, 0.0f, dhidden + r0 * f.h, f.h);
    gemm(mm, s, true, false, f.vocab, f.h, n, sc.dlogits, f.vocab, hidden, f.h,
         1.0f, dweight, f.h);
  }
}

} // namespace trlc::cuda
