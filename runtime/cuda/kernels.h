//===- kernels.h - the CUDA kernels' launchers ------------------*- C++ -*-===//
//
// What the .cu files export to the CUDA backend (CudaBackend.cpp). The .cu
// files know nothing of plans or JSON: the backend reads shapes and
// attributes and calls a launcher with plain pointers and sizes, llm.c
// style. Every launcher takes the stream it runs on and never synchronizes.
//
// Conventions shared by every file:
//   - float tensors are fp32, row-major, contiguous, or bf16 where a
//     launcher takes `Floats` / `FloatsOut` (the backend widens other
//     bf16-stored tensors into fp32 scratch); index tensors (token
//     ids, labels, positions, cu_seqlens, masks, step counters) may be i64,
//     i32, bool or f32 and are read through `Index`;
//   - a kernel that meets bad data (a token id outside the vocabulary) does
//     not trap: it records the first error in the backend's status word and
//     writes zeros, and the backend reports it after the step;
//   - reductions have a fixed shape that depends only on the tensor shapes,
//     never atomics on floats, so a step is bit-reproducible;
//   - matrix products run in bf16 with fp32 accumulation and an fp32 or
//     bf16 output (cuBLASLt); bf16 copies of fp32 operands live in the
//     call's scratch.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_CUDA_KERNELS_H
#define TRLC_RUNTIME_CUDA_KERNELS_H

#include "trlc/PreferenceMath.h"
#include "trlc/ScalarMath.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace trlc::cuda {

/// Bytes rounded up so that carved scratch pieces stay 256-byte aligned.
inline size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

/// An index operand: its pointer and element type.
struct Index {
  enum Type : int { I64, I32, U8, F32 };
  const void *data = nullptr;
  Type type = I64;
};

/// A float operand stored in fp32 or, with `bf16`, in bf16 (bf16 storage
/// of activations, trl-mixed-precision); kernels compute in fp32.
struct Floats {
  const void *data = nullptr;
  bool bf16 = false;
};
struct FloatsOut {
  void *data = nullptr;
  bool bf16 = false;
};

/// The device-side error word (first error wins): a code and the value.
struct Status {
  enum Code : int {
    Ok = 0,
    TokenOutsideVocab = 1,
    LabelOutsideVocab = 2,
    LongDocument = 3,
    CacheSlot = 4
  };
  int *code = nullptr;        // device
  long long *value = nullptr; // device
};

/// The bf16 matrix products (matmul.cu).
struct Matmul;
Matmul *createMatmul(void *workspace, size_t workspaceBytes);
void destroyMatmul(Matmul *m);
/// Row-major C[m,n] = alpha op(A) op(B) + beta C, as cblas_sgemm: A is
/// [m,k] (or [k,m] with `ta`), B is [k,n] (or [n,k] with `tb`). A and B are
/// bf16 (see `toBf16`), C is fp32, or bf16 with `cBf16` (then beta is 0).
void gemm(Matmul *mm, cudaStream_t s, bool ta, bool tb, int64_t m, int64_t n,
          int64_t k, const void *a, int64_t lda, const void *b, int64_t ldb,
          float beta, void *c, int64_t ldc, float alpha = 1.0f,
          bool cBf16 = false);
/// Rounds `n` floats to bf16 (round to nearest even) into `out`.
void toBf16(cudaStream_t s, const float *x, void *out, int64_t n);
/// Widens `n` bf16 values to floats.
void toF32(cudaStream_t s, const void *x, float *out, int64_t n);
/// y[r, j] += bias[j] (a bf16 y is rounded again).
void addBias(cudaStream_t s, FloatsOut y, const float *bias, int64_t rows,
             int64_t n);
/// out[j] = sum over rows of x[r, j], in a fixed order: over 256 rows,
/// partial sums of row blocks go to `scratch` (columnSumScratch bytes).
size_t columnSumScratch(int64_t rows, int64_t n);
void columnSum(cudaStream_t s, const float *x, float *out, int64_t rows,
               int64_t n, void *scratch);

// --- elementwise.cu
// ------------------------------------------------------------
void fill(cudaStream_t s, float *y, float value, int64_t n);
void add(cudaStream_t s, const float *x, const float *z, float *y, int64_t n);
void divScalar(cudaStream_t s, const float *x, const float *d, float *y,
               int64_t n);
void sqrtElements(cudaStream_t s, const float *x, float *y, int64_t n);
// The MLP activations read and write bf16 storage themselves.
void swiglu(cudaStream_t s, Floats g, Floats u, FloatsOut y, int64_t n);
void swigluGrad(cudaStream_t s, const float *dy, Floats g, Floats u, float *dg,
                float *du, int64_t n);
void gelu(cudaStream_t s, bool tanhApprox, Floats x, FloatsOut y, int64_t n);
/// trl.dropout: x scaled by `scale` where dropoutKeeps(*seed, stream, i,
/// threshold) (trlc/ScalarMath.h), else 0; `seed` is on the device.
void dropout(cudaStream_t s, Floats x, const int64_t *seed, uint64_t stream,
             uint32_t threshold, float scale, FloatsOut y, int64_t n);
void geluGrad(cudaStream_t s, bool tanhApprox, const float *dy, Floats x,
              float *dx, int64_t n);
/// y[r] = sum_j x[r, j] * mask[r, j] (x and mask fp32 or bf16); with
/// `shared` x is one row every mask row reads.
void maskedSum(cudaStream_t s, Floats x, Floats mask, float *y, int64_t rows,
               int64_t cols, bool shared);
/// dx[r, j] = g[r] * mask[r, j]; with `shared`, dx[j] = sum_r g[r] mask[r, j].
void maskedSumGrad(cudaStream_t s, const float *g, const float *mask, float *dx,
                   int64_t rows, int64_t cols, bool shared);

// --- embedding.cu
// --------------------------------------------------------------
void embedding(cudaStream_t s, Status st, const float *table, Index ids,
               float *y, int64_t vocab, int64_t h, int64_t tokens);
/// dtable = sum of dy rows per token id, every row summed in token order.
/// Scratch: `embeddingGradScratch` bytes.
size_t embeddingGradScratch(int64_t vocab, int64_t tokens);
void embeddingGrad(cudaStream_t s, const float *dy, Index ids, float *dtable,
                   int64_t vocab, int64_t h, int64_t tokens, void *scratch);

// --- norm.cu
// -------------------------------------------------------------------
/// The forwards write y in fp32 or bf16.
void rmsNorm(cudaStream_t s, const float *x, const float *w, FloatsOut y,
             int64_t rows, int64_t h, float eps);
size_t normGradScratch(int64_t rows, int64_t h, bool layer);
void rmsNormGrad(cudaStream_t s, const float *dy, const float *x,
                 const float *w, float *dx, float *dw, int64_t rows, int64_t h,
                 float eps, void *scratch);
void layerNorm(cudaStream_t s, const float *x, const float *w, const float *b,
               FloatsOut y, int64_t rows, int64_t h, float eps);
void layerNormGrad(cudaStream_t s, const float *dy, const float *x,
                   const float *w, float *dx, float *dw, float *db,
                   int64_t rows, int64_t h, float eps, void *scratch);

// --- rope.cu
// -------------------------------------------------------------------
/// Llama-3 frequency scaling (factor 0: none).
struct RopeScaling {
  double factor = 0, lowFreqFactor = 1, highFreqFactor = 1, originalMax = 1;
};
void rope(cudaStream_t s, Floats x, Index pos, FloatsOut y, int64_t tokens,
          int64_t heads, int64_t d, double theta, RopeScaling scaling,
          bool inverse);

// --- attention.cu
// --------------------------------------------------------------
/// The sequences of an attention call. Padded: `count` rows of `rowLength`
/// tokens, q [count, rowLength, hq, d], optional key mask [count,
/// rowLength]; lse [count, hq, rowLength]. Varlen: `count` documents at
/// cu_seqlens offsets, q [totalTokens, hq, d], at most `maxLen` tokens
/// each; lse [hq, totalTokens].
struct AttentionShape {
  bool varlen = false;
  int64_t count = 0, rowLength = 0, totalTokens = 0, maxLen = 0;
  int64_t hq = 0, hkv = 0, d = 0;
  bool causal = true;
  float scale = 1;
  Index mask, cuSeqlens;
};
/// A document longer than `maxLen` (cu_seqlens that do not match the
/// plan) is reported in the status word.
void attention(cudaStream_t s, Status st, const AttentionShape &shape,
               const float *q, const float *k, const float *v, float *out,
               float *lse);
/// Scratch of the backward for `tokens` (all of the layout's positions)
/// and `hq` query heads.
size_t attentionGradScratch(int64_t tokens, int64_t hq);
void attentionGrad(cudaStream_t s, Status st, const AttentionShape &shape,
                   const float *dout, const float *q, const float *k,
                   const float *v, const float *out, const float *lse,
                   float *dq, float *dk, float *dv, void *scratch);
/// Generation's KV cache: x [batch, tokens, row] written into cache
/// [batch, slots, row] at slots `pos` [batch, tokens] (out is the cache in
/// place, or a copy of it first). A slot outside the cache is reported.
void cacheWrite(cudaStream_t s, Status st, const float *cache, const float *x, Index pos,
                float *out, int64_t batch, int64_t tokens, int64_t slots, int64_t row);
/// q [batch, tokens, hq, d] over caches [batch, slots, hkv, d]: slot j is
/// visible to token t of row b when mask[b, j] != 0 and j <= positions[b, t].
struct CachedAttentionShape {
  int64_t batch = 0, tokens = 0, hq = 0, hkv = 0, d = 0, slots = 0;
  float scale = 1;
  Index mask, positions;
};
size_t cachedAttentionScratch(int64_t batch, int64_t tokens, int64_t hq, int64_t slots);
void cachedAttention(cudaStream_t s, Status st, const CachedAttentionShape &a, const float *q,
                     const float *kc, const float *vc, float *out, void *scratch);
/// The same on bf16 tensor cores (attention_bf16.cu) for bf16-stored q, k
/// and v, when `attentionBf16Supports(d)`; out may be bf16, the gradients
/// are fp32. Scratch of the backward: attentionGradScratch.
bool attentionBf16Supports(int64_t d);
void attentionBf16(cudaStream_t s, Status st, const AttentionShape &shape,
                   Floats q, Floats k, Floats v, FloatsOut out, float *lse);
void attentionBf16Grad(cudaStream_t s, Status st, const AttentionShape &shape,
                       Floats dout, Floats q, Floats k, Floats v, Floats out,
                       const float *lse, float *dq, float *dk, float *dv,
                       void *scratch);

// --- cross_entropy.cu
// -------------------------------------------------------------
/// The coefficient of a row's logits gradient: `sign * value[r * stride]`
/// (stride 0: one value for every row).
struct RowCoef {
  const float *value = nullptr;
  int64_t stride = 0;
  float sign = 1;
};
size_t lossScratch(int64_t rows);
/// out[0] = -sum of the log-probabilities of the labels (ignored rows: 0).
void crossEntropy(cudaStream_t s, Status st, const float *logits, Index labels,
                  float *out, int64_t rows, int64_t vocab, int64_t ignore,
                  void *scratch);
/// y[r] = log softmax(logits[r])[label[r]] (0 where ignored).
void logProbs(cudaStream_t s, Status st, const float *logits, Index labels,
              float *y, int64_t rows, int64_t vocab, int64_t ignore);
/// dlogits[r] = coef(r) (softmax(logits[r]) - onehot(label[r])), 0 where
/// ignored; fp32 (in place is allowed) or bf16.
void logitsGrad(cudaStream_t s, Status st, const float *logits, Index labels,
                RowCoef coef, FloatsOut dlogits, int64_t rows, int64_t vocab,
                int64_t ignore);
/// Fused lm_head + log-probabilities, `chunk` rows of logits at a time:
/// never [rows, vocab]. Forward: `rowOut` gets each row's log-probability,
/// or with `sumOut` the negated sum (cross entropy). Backward: dhidden and
/// dweight (overwritten) for the logits gradient coef(r) (softmax - onehot).
struct FusedLinear {
  Floats hidden; // bf16 hidden states are multiplied as they are
  const float *weight = nullptr;
  Index labels;
  int64_t rows = 0, h = 0, vocab = 0, chunk = 0, ignore = -100;
};
size_t fusedLinearScratch(const FusedLinear &f, bool grad);
void fusedLinearForward(Matmul *mm, cudaStream_t s, Status st,
                        const FusedLinear &f, float *rowOut, float *sumOut,
                        void *scratch);
void fusedLinearBackward(Matmul *mm, cudaStream_t s, Status st,
                         const FusedLinear &f, RowCoef coef, float *dhidden,
                         float *dweight, void *scratch);

// --- preference.cu
// -------------------------------------------------------------
/// DPO over n pairs (trlc/PreferenceMath.h): loss = sum_i w_i l_i, plus
/// rpoAlpha * *nllWeight * sum_i (-pc_i) when nllWeight is not null; the
/// rewards beta (pi - ref). The gradient is scaled by *g.
struct Dpo {
  DpoKind kind = DpoKind::Sigmoid;
  float beta = 0.1f, labelSmoothing = 0, rpoAlpha = 0;
  const float *pc = nullptr, *pr = nullptr, *rc = nullptr, *rr = nullptr,
              *weights = nullptr, *nllWeight = nullptr;
  const float *betaValue = nullptr;  // a scheduled beta: used instead of `beta`
  int64_t n = 0;
};
void dpoLoss(cudaStream_t s, const Dpo &d, float *loss, float *chosen, float *rejected);
void dpoLossGrad(cudaStream_t s, const Dpo &d, const float *g, float *dpc, float *dpr);
/// KTO's KL estimate of a micro-batch: sum_i w_i (klPol_i - klRef_i).
void ktoKl(cudaStream_t s, const float *klPol, const float *klRef, const float *w,
           float *out, int64_t n);
/// KTO over n examples: loss = sum_i w_i l_i with the KL max(0, *kl) (kl
/// null for apo_zero_unpaired); rewards beta (pi - ref), klOut the KL used.
struct Kto {
  KtoKind kind = KtoKind::Kto;
  float beta = 0.1f, desirable = 1, undesirable = 1;
  const float *pol = nullptr, *ref = nullptr, *weights = nullptr, *kl = nullptr;
  Index label;
  int64_t n = 0;
};
void ktoLoss(cudaStream_t s, const Kto &k, float *loss, float *rewards, float *klOut);
void ktoLossGrad(cudaStream_t s, const Kto &k, const float *g, float *dpol);
enum class GrpoType : int { Grpo, Bnpo, DrGrpo, Dapo };
struct Grpo {
  GrpoType type = GrpoType::Grpo;
  float epsilonLow = 0.2f, epsilonHigh = 0.2f, beta = 0;
  bool sequenceLevel = false;  // GSPO: one ratio per row
  const float *logp = nullptr, *old = nullptr, *advantages = nullptr,
              *mask = nullptr, *normalizer = nullptr, *ref = nullptr;
  int64_t rows = 0, cols = 0;
};
void grpoLoss(cudaStream_t s, const Grpo &g, float *loss);
void grpoLossGrad(cudaStream_t s, const Grpo &g, const float *dloss,
                  float *dlogp);
/// RLOO (trl.rloo_loss): one ratio per row of the masked log-probability
/// sum against `old` [rows]; the clipped rows' sum over *normalizer.
struct Rloo {
  float epsilonLow = 0.2f, epsilonHigh = 0.2f;
  const float *logp = nullptr, *old = nullptr, *advantages = nullptr, *mask = nullptr,
              *normalizer = nullptr;
  int64_t rows = 0, cols = 0;
};
void rlooLoss(cudaStream_t s, const Rloo &r, float *loss);
void rlooLossGrad(cudaStream_t s, const Rloo &r, const float *dloss, float *dlogp);
/// PPO's clipped policy and value losses over n tokens (trl.ppo_loss).
struct Ppo {
  float cliprange = 0.2f, cliprangeValue = 0.2f, vfCoef = 0.1f;
  const float *logp = nullptr, *old = nullptr, *advantages = nullptr, *mask = nullptr,
              *values = nullptr, *oldValues = nullptr, *returns = nullptr,
              *valueMask = nullptr, *pgWeight = nullptr, *vfWeight = nullptr;
  int64_t n = 0;
};
void ppoLoss(cudaStream_t s, const Ppo &p, float *loss);
void ppoLossGrad(cudaStream_t s, const Ppo &p, const float *dloss, float *dlogp, float *dvalues);

// --- adamw.cu
// ------------------------------------------------------------------
/// One AdamW step of `n` elements (trlc/ScalarMath.h); lr, the step
/// counter (0-based, the step taken is step + 1) and, when not null, the
/// global gradient norm the gradient is clipped by (to `maxNorm`) are read
/// on the device.
void adamw(cudaStream_t s, AdamWHyper h, const float *p, const float *g,
           const float *m, const float *v, const float *lr, Index step,
           const float *norm, float maxNorm, float *pOut, float *mOut, float *vOut,
           int64_t n);
/// out[0] = sqrt(sum of squares) (or the sum itself with `squared`) over
/// every tensor; deterministic.
size_t gradNormScratch(int tensors);
void gradNorm(cudaStream_t s, const float *const *tensors, const int64_t *sizes,
              int count, bool squared, float *out, void *scratch);
struct LrSchedule {
  double base = 0, warmup = 0, total = 0;
  LrScheduleKind kind = LrScheduleKind::Constant;
};
void lrSchedule(cudaStream_t s, LrSchedule l, Index step, float *out);

} // namespace trlc::cuda

#endif // TRLC_RUNTIME_CUDA_KERNELS_H
