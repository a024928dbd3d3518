//===- preference.cu - DPO, KTO and GRPO losses ------------------------*- CUDA
//-*-===//
//
// The preference losses work on per-sequence (DPO, KTO) or per-token (GRPO)
// log-probabilities, a few thousand numbers at most: one block each, the
// formulas of the CPU backend term by term (see CpuKernels.cpp for what
// each loss type means), sums in double in a fixed order. Gradients are
// overwritten and already scaled by the incoming gradient.
//
//===----------------------------------------------------------------------===//

#include "common.cuh"

namespace trlc::cuda {
namespace {

constexpr int kThreads = 256;

__device__ inline double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
__device__ inline double logSigmoid(double x) {
  return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

struct Pair {
  double loss, dChosen;
};

__device__ Pair dpoPair(DpoType type, double beta, double ls, double pc,
                        double pr, double rc, double rr) {
  double h = (pc - rc) - (pr - rr), z = beta * h;
  if (type == DpoType::Hinge)
    return {fmax(0.0, 1 - z), 1 - z > 0 ? -beta : 0.0};
  if (type == DpoType::Ipo) {
    double e = h - 1 / (2 * beta);
    return {e * e, 2 * e};
  }
  double loss = -logSigmoid(z) * (1 - ls) - logSigmoid(-z) * ls;
  double dz = (1 - ls) * (sigmoid(z) - 1) + ls * sigmoid(z);
  return {loss, dz * beta};
}

__global__ void dpoLossKernel(DpoType type, float beta, float ls,
                              const float *pc, const float *pr, const float *rc,
                              const float *rr, float *loss, float *chosen,
                              float *rejected, int64_t n) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    acc += dpoPair(type, beta, ls, pc[i], pr[i], rc[i], rr[i]).loss;
    chosen[i] = beta * (pc[i] - rc[i]);
    rejected[i] = beta * (pr[i] - rr[i]);
  }
  acc = blockSum(acc);
  if (threadIdx.x == 0)
    *loss = static_cast<float>(acc / n);
}

__global__ void dpoLossGradKernel(DpoType type, float beta, float ls,
                                  const float *g, const float *pc,
                                  const float *pr, const float *rc,
                                  const float *rr, float *dpc, float *dpr,
                                  int64_t n) {
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float d = static_cast<float>(
                  dpoPair(type, beta, ls, pc[i], pr[i], rc[i], rr[i]).dChosen) *
              *g / n;
    dpc[i] = d;
    dpr[i] = -d;
  }
}

/// max(0, mean(klPol - klRef)): KTO's reference point.
__device__ double ktoKl(const float *klPol, const float *klRef, int64_t n) {
  double kl = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    kl += klPol[i] - klRef[i];
  return fmax(0.0, blockSum(kl) / n);
}

__global__ void ktoLossKernel(Kto k, const float *pol, const float *ref,
                              const float *klPol, const float *klRef,
                              Index desirable, float *loss, float *rewards,
                              float *klOut, int64_t n) {
  float klv = static_cast<float>(ktoKl(klPol, klRef, n));
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float r = pol[i] - ref[i];
    bool good = loadIndex(desirable, i) != 0;
    acc += good ? k.desirable * (1 - sigmoid(k.beta * (r - klv)))
                : k.undesirable * (1 - sigmoid(k.beta * (klv - r)));
    rewards[i] = k.beta * r;
  }
  acc = blockSum(acc);
  if (threadIdx.x == 0) {
    *loss = static_cast<float>(acc / n);
    *klOut = klv;
  }
}

__global__ void ktoLossGradKernel(Kto k, const float *g, const float *pol,
                                  const float *ref, const float *kl,
                                  Index desirable, float *dpol, int64_t n) {
  float klv = *kl;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float r = pol[i] - ref[i];
    bool good = loadIndex(desirable, i) != 0;
    float s = static_cast<float>(good ? sigmoid(k.beta * (r - klv))
                                      : sigmoid(k.beta * (klv - r)));
    float d = good ? -k.desirable * k.beta * s * (1 - s)
                   : k.undesirable * k.beta * s * (1 - s);
    dpol[i] = *g * d / n;
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
    float weight;
    switch (g.type) {
    case GrpoType::Grpo:
      weight = 1.0f / static_cast<float>(fmax(rowActive, 1.0) * g.rows);
      break;
    case GrpoType::Bnpo:
      weight = 1.0f / static_cast<float>(fmax(active, 1.0));
      break;
    case GrpoType::DrGrpo:
      weight = 1.0f / static_cast<float>(g.rows * g.cols);
      break;
    default:
      weight = 1.0f / *g.normalizer;
      break;
    }
    float A = g.advantages[b];
    for (int64_t j = threadIdx.x; j < g.cols; j += blockDim.x) {
      int64_t i = b * g.cols + j;
      float m = g.mask[i], lp = g.logp[i], ratio = expf(lp - g.old[i]);
      float unclipped = ratio * A;
      float clipped =
          fminf(fmaxf(ratio, 1 - g.epsilonLow), 1 + g.epsilonHigh) * A;
      float l = -fminf(unclipped, clipped);
      float dl = unclipped <= clipped ? -A * ratio : 0.0f;
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

} // namespace

void dpoLoss(cudaStream_t s, DpoType type, float beta, float labelSmoothing,
             const float *pc, const float *pr, const float *rc, const float *rr,
             float *loss, float *chosen, float *rejected, int64_t n) {
  dpoLossKernel<<<1, kThreads, 0, s>>>(type, beta, labelSmoothing, pc, pr, rc,
                                       rr, loss, chosen, rejected, n);
  TRLC_LAUNCHED();
}

void dpoLossGrad(cudaStream_t s, DpoType type, float beta, float labelSmoothing,
                 const float *g, const float *pc, const float *pr,
                 const float *rc, const float *rr, float *dpc, float *dpr,
                 int64_t n) {
  dpoLossGradKernel<<<1, kThreads, 0, s>>>(type, beta, labelSmoothing, g, pc,
                                           pr, rc, rr, dpc, dpr, n);
  TRLC_LAUNCHED();
}

void ktoLoss(cudaStream_t s, Kto k, const float *pol, const float *ref,
             const float *klPol, const float *klRef, Index desirable,
             float *loss, float *rewards, float *kl, int64_t n) {
  ktoLossKernel<<<1, kThreads, 0, s>>>(k, pol, ref, klPol, klRef, desirable,
                                       loss, rewards, kl, n);
  TRLC_LAUNCHED();
}

void ktoLossGrad(cudaStream_t s, Kto k, const float *g, const float *pol,
                 const float *ref, const float *kl, Index desirable,
                 float *dpol, int64_t n) {
  ktoLossGradKernel<<<1, kThreads, 0, s>>>(k, g, pol, ref, kl, desirable, dpol,
                                           n);
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

} // namespace trlc::cuda
