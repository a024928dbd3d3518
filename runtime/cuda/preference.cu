//===- preference.cu - DPO, KTO and GRPO losses ------------*- CUDA -*-===//
//
// The preference losses work on per-sequence (DPO, KTO) or per-token (GRPO)
// log-probabilities, a few thousand numbers at most: one block each, sums
// in double in a fixed order. The DPO and KTO terms are
// trlc/PreferenceMath.h's, which the CPU kernels use too. Gradients are
// overwritten and already scaled by the incoming gradient.
//
//===----------------------------------------------------------------------===//

#include "common.cuh"

namespace trlc::cuda {
namespace {

constexpr int kThreads = 256;

__device__ inline double dpoBeta(const Dpo &d) {
  return d.betaValue ? static_cast<double>(*d.betaValue) : static_cast<double>(d.beta);
}

__global__ void dpoLossKernel(Dpo d, float *loss, float *chosen, float *rejected) {
  double acc = 0, nll = 0, beta = dpoBeta(d);
  for (int64_t i = threadIdx.x; i < d.n; i += blockDim.x) {
    acc += d.weights[i] *
           dpoTerm(d.kind, beta, d.labelSmoothing, d.pc[i], d.pr[i], d.rc[i], d.rr[i]).loss;
    nll -= d.pc[i];
    chosen[i] = static_cast<float>(beta * (d.pc[i] - d.rc[i]));
    rejected[i] = static_cast<float>(beta * (d.pr[i] - d.rr[i]));
  }
  acc = blockSum(acc);
  nll = blockSum(nll);
  if (threadIdx.x == 0)
    *loss = static_cast<float>(
        acc + (d.nllWeight ? static_cast<double>(d.rpoAlpha) * *d.nllWeight * nll : 0.0));
}

__global__ void dpoLossGradKernel(Dpo d, const float *g, float *dpc, float *dpr) {
  double nll = d.nllWeight ? static_cast<double>(d.rpoAlpha) * *d.nllWeight : 0.0;
  double beta = dpoBeta(d);
  for (int64_t i = threadIdx.x; i < d.n; i += blockDim.x) {
    DpoTerm t = dpoTerm(d.kind, beta, d.labelSmoothing, d.pc[i], d.pr[i], d.rc[i], d.rr[i]);
    dpc[i] = static_cast<float>(*g * (d.weights[i] * t.dChosen - nll));
    dpr[i] = static_cast<float>(*g * d.weights[i] * t.dRejected);
  }
}

__global__ void ktoKlKernel(const float *klPol, const float *klRef, const float *w,
                            float *out, int64_t n) {
  double kl = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    kl += static_cast<double>(w[i]) * (static_cast<double>(klPol[i]) - klRef[i]);
  kl = blockSum(kl);
  if (threadIdx.x == 0)
    *out = static_cast<float>(kl);
}

__device__ inline double ktoKlOf(const Kto &k) {
  return k.kl ? fmax(0.0, static_cast<double>(*k.kl)) : 0.0;
}

__global__ void ktoLossKernel(Kto k, float *loss, float *rewards, float *klOut) {
  double kl = ktoKlOf(k), acc = 0;
  for (int64_t i = threadIdx.x; i < k.n; i += blockDim.x) {
    double r = static_cast<double>(k.pol[i]) - k.ref[i];
    acc += k.weights[i] * ktoTerm(k.kind, k.beta, r, kl, loadIndex(k.label, i) != 0,
                                  k.desirable, k.undesirable).loss;
    rewards[i] = static_cast<float>(k.beta * r);
  }
  acc = blockSum(acc);
  if (threadIdx.x == 0) {
    *loss = static_cast<float>(acc);
    *klOut = static_cast<float>(kl);
  }
}

__global__ void ktoLossGradKernel(Kto k, const float *g, float *dpol) {
  double kl = ktoKlOf(k);
  for (int64_t i = threadIdx.x; i < k.n; i += blockDim.x) {
    double r = static_cast<double>(k.pol[i]) - k.ref[i];
    dpol[i] = static_cast<float>(*g * k.weights[i] *
                                 ktoTerm(k.kind, k.beta, r, kl, loadIndex(k.label, i) != 0,
                                         k.desirable, k.undesirable).dPolicy);
  }
}

/// GRPO over [rows, cols] tokens: the loss sum, or with `dlogp` each
/// token's gradient times *dloss.
__global__ void grpoKernel(Grpo g, float *loss, const float *dloss,
                           float *dlogp) {
  int64_t total = g.rows * g.cols;
  double active = 0;
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x)
    active += g.mask[i];
  active = blockSum(active);
  double acc = 0;
  for (int64_t b = 0; b < g.rows; ++b) {
    double rowActive = 0;
    for (int64_t j = threadIdx.x; j < g.cols; j += blockDim.x)
      rowActive += g.mask[b * g.cols + j];
    rowActive = blockSum(rowActive);
    // GSPO: the row's tokens share exp(masked mean of logp - old).
    float rowRatio = 0, rowShare = 0;
    if (g.sequenceLevel) {
      double logRatio = 0;
      for (int64_t j = threadIdx.x; j < g.cols; j += blockDim.x)
        logRatio += g.mask[b * g.cols + j] *
                    (static_cast<double>(g.logp[b * g.cols + j]) - g.old[b * g.cols + j]);
      logRatio = blockSum(logRatio);
      rowRatio = static_cast<float>(exp(logRatio / fmax(rowActive, 1.0)));
      rowShare = static_cast<float>(rowActive / fmax(rowActive, 1.0));
    }
    float weight;
    switch (g.type) {
    case GrpoType::Grpo:
      weight = 1.0f / static_cast<float>(fmax(rowActive, 1.0) * g.rows);
      break;
    case GrpoType::Bnpo:
      weight = 1.0f / static_cast<float>(fmax(active, 1.0));
      break;
    case GrpoType::DrGrpo:
      weight = 1.0f / static_cast<float>(g.rows);
      break;
    default:
      weight = 1.0f;
      break;
    }
    weight /= *g.normalizer;  // see the CPU kernel (runtime/cpu/preference.cpp)
    float A = g.advantages[b];
    for (int64_t j = threadIdx.x; j < g.cols; j += blockDim.x) {
      int64_t i = b * g.cols + j;
      float m = g.mask[i], lp = g.logp[i];
      float ratio = g.sequenceLevel ? rowRatio : expf(lp - g.old[i]);
      float unclipped = ratio * A;
      float clipped =
          fminf(fmaxf(ratio, 1 - g.epsilonLow), 1 + g.epsilonHigh) * A;
      float l = -fminf(unclipped, clipped);
      float dl = unclipped <= clipped ? -A * ratio * (g.sequenceLevel ? rowShare : 1.0f) : 0.0f;
      if (g.ref && g.beta != 0) {
        float diff = g.ref[i] - lp;
        l += g.beta * (expf(diff) - diff - 1);
        dl += g.beta * (1 - expf(diff));
      }
      if (dlogp)
        dlogp[i] = *dloss * (m * weight * dl);
      else
        acc += m * weight * l;
    }
  }
  acc = blockSum(acc);
  if (loss && threadIdx.x == 0)
    *loss = static_cast<float>(acc);
}

/// RLOO over [rows, cols]: the loss sum, or with `dlogp` each token's
/// gradient times *dloss (runtime/cpu/preference.cpp has the formulas).
__global__ void rlooKernel(Rloo r, float *loss, const float *dloss, float *dlogp) {
  double acc = 0;
  for (int64_t b = 0; b < r.rows; ++b) {
    double logps = 0;
    for (int64_t j = threadIdx.x; j < r.cols; j += blockDim.x)
      logps += static_cast<double>(r.mask[b * r.cols + j]) * r.logp[b * r.cols + j];
    logps = blockSum(logps);
    float A = r.advantages[b], ratio = static_cast<float>(exp(logps - r.old[b]));
    float unclipped = ratio * A;
    float clipped = fminf(fmaxf(ratio, 1 - r.epsilonLow), 1 + r.epsilonHigh) * A;
    float l = -fminf(unclipped, clipped) / *r.normalizer;
    float d = (unclipped <= clipped ? -A * ratio : 0.0f) / *r.normalizer;
    if (dlogp) {
      for (int64_t j = threadIdx.x; j < r.cols; j += blockDim.x)
        dlogp[b * r.cols + j] = *dloss * d * r.mask[b * r.cols + j];
    } else if (threadIdx.x == 0) {
      acc += l;
    }
  }
  if (loss && threadIdx.x == 0)
    *loss = static_cast<float>(acc);
}

} // namespace

void dpoLoss(cudaStream_t s, const Dpo &d, float *loss, float *chosen, float *rejected) {
  dpoLossKernel<<<1, kThreads, 0, s>>>(d, loss, chosen, rejected);
  TRLC_LAUNCHED();
}

void dpoLossGrad(cudaStream_t s, const Dpo &d, const float *g, float *dpc, float *dpr) {
  dpoLossGradKernel<<<1, kThreads, 0, s>>>(d, g, dpc, dpr);
  TRLC_LAUNCHED();
}

void ktoKl(cudaStream_t s, const float *klPol, const float *klRef, const float *w,
           float *out, int64_t n) {
  ktoKlKernel<<<1, kThreads, 0, s>>>(klPol, klRef, w, out, n);
  TRLC_LAUNCHED();
}

void ktoLoss(cudaStream_t s, const Kto &k, float *loss, float *rewards, float *klOut) {
  ktoLossKernel<<<1, kThreads, 0, s>>>(k, loss, rewards, klOut);
  TRLC_LAUNCHED();
}

void ktoLossGrad(cudaStream_t s, const Kto &k, const float *g, float *dpol) {
  ktoLossGradKernel<<<1, kThreads, 0, s>>>(k, g, dpol);
  TRLC_LAUNCHED();
}

void grpoLoss(cudaStream_t s, const Grpo &g, float *loss) {
  grpoKernel<<<1, kThreads, 0, s>>>(g, loss, nullptr, nullptr);
  TRLC_LAUNCHED();
}

void grpoLossGrad(cudaStream_t s, const Grpo &g, const float *dloss,
                  float *dlogp) {
  grpoKernel<<<1, kThreads, 0, s>>>(g, nullptr, dloss, dlogp);
  TRLC_LAUNCHED();
}

namespace {

__global__ void ppoLossKernel(Ppo p, float *loss) {
  double pg = 0, vf = 0;
  int64_t lo = p.n * threadIdx.x / blockDim.x, hi = p.n * (threadIdx.x + 1) / blockDim.x;
  for (int64_t i = lo; i < hi; ++i) {
    pg += p.mask[i] * ppoPolicyTerm(p.logp[i], p.old[i], p.advantages[i], p.cliprange).loss;
    vf += p.valueMask[i] *
          ppoValueTerm(p.values[i], p.oldValues[i], p.returns[i], p.cliprangeValue).loss;
  }
  pg = blockSum(pg);
  vf = blockSum(vf);
  if (threadIdx.x == 0)
    *loss = static_cast<float>(static_cast<double>(*p.pgWeight) * pg +
                               static_cast<double>(p.vfCoef) * 0.5 * *p.vfWeight * vf);
}

__global__ void ppoLossGradKernel(Ppo p, const float *g, float *dlogp, float *dvalues) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= p.n)
    return;
  double wp = static_cast<double>(*g) * *p.pgWeight,
         wv = static_cast<double>(*g) * p.vfCoef * 0.5 * *p.vfWeight;
  dlogp[i] = static_cast<float>(
      wp * p.mask[i] * ppoPolicyTerm(p.logp[i], p.old[i], p.advantages[i], p.cliprange).d);
  dvalues[i] = static_cast<float>(
      wv * p.valueMask[i] *
      ppoValueTerm(p.values[i], p.oldValues[i], p.returns[i], p.cliprangeValue).d);
}

} // namespace

void ppoLoss(cudaStream_t s, const Ppo &p, float *loss) {
  ppoLossKernel<<<1, kThreads, 0, s>>>(p, loss);
  TRLC_LAUNCHED();
}

void ppoLossGrad(cudaStream_t s, const Ppo &p, const float *dloss, float *dlogp,
                 float *dvalues) {
  int64_t blocks = (p.n + kThreads - 1) / kThreads;
  ppoLossGradKernel<<<static_cast<unsigned>(std::max<int64_t>(blocks, 1)), kThreads, 0, s>>>(
      p, dloss, dlogp, dvalues);
  TRLC_LAUNCHED();
}

void rlooLoss(cudaStream_t s, const Rloo &r, float *loss) {
  rlooKernel<<<1, kThreads, 0, s>>>(r, loss, nullptr, nullptr);
  TRLC_LAUNCHED();
}

void rlooLossGrad(cudaStream_t s, const Rloo &r, const float *dloss, float *dlogp) {
  rlooKernel<<<1, kThreads, 0, s>>>(r, nullptr, dloss, dlogp);
  TRLC_LAUNCHED();
}

} // namespace trlc::cuda
