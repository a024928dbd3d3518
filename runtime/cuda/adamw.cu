//===- adamw.cu - AdamW with clipping, gradient norm, LR schedule -*- CUDA -*-===//
//
// The optimizer works on the fp32 master weights in place or out of place
// (out may alias in). The step counter, learning rate and gradient norm
// are device scalars, so an optimizer step launches the same kernels with
// the same arguments every time (what a CUDA graph needs). The gradient
// norm sums squares in double: each tensor in kNormBlocks fixed slices,
// the partials then summed in order by one block.
//
//===----------------------------------------------------------------------===//

#include "common.cuh"

namespace trlc::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kNormBlocks = 64;

__global__ void adamwKernel(AdamWHyper hp, const float *p, const float *g,
                            const float *m, const float *v, const float *lrPtr,
                            Index step, const float *norm, float maxNorm,
                            float *po, float *mo, float *vo, int64_t n) {
  __shared__ AdamWStep<float> st;
  if (threadIdx.x == 0)
    st = adamwStep(hp, *lrPtr, static_cast<double>(loadIndex(step, 0)),
                   norm ? clipCoefficient(*norm, maxNorm) : 1.0f);
  __syncthreads();
  AdamWStep<float> s = st;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    adamwUpdate(s, p[i], g[i], m[i], v[i], po[i], mo[i], vo[i]);
}

__global__ void squaresKernel(const float *x, int64_t n, double *partial) {
  int64_t lo = n * blockIdx.x / gridDim.x,
          hi = n * (blockIdx.x + 1) / gridDim.x;
  double acc = 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    double v = x[i];
    acc += v * v;
  }
  acc = blockSum(acc);
  if (threadIdx.x == 0)
    partial[blockIdx.x] = acc;
}

__global__ void finishNormKernel(const double *partial, int64_t n, bool squared,
                                 float *out) {
  double acc = orderedSum(partial, n);
  if (threadIdx.x == 0)
    *out = static_cast<float>(squared ? acc : sqrt(acc));
}

__global__ void lrKernel(LrSchedule l, Index step, float *out) {
  double f = lrFactor(l.kind, static_cast<double>(loadIndex(step, 0)),
                      l.warmup, l.total);
  *out = static_cast<float>(l.base * f);
}

} // namespace

void adamw(cudaStream_t s, AdamWHyper h, const float *p, const float *g,
           const float *m, const float *v, const float *lr, Index step,
           const float *norm, float maxNorm, float *pOut, float *mOut,
           float *vOut, int64_t n) {
  adamwKernel<<<blocksFor(n, kThreads), kThreads, 0, s>>>(
      h, p, g, m, v, lr, step, norm, maxNorm, pOut, mOut, vOut, n);
  TRLC_LAUNCHED();
}

size_t gradNormScratch(int tensors) {
  return align256(tensors * kNormBlocks * sizeof(double));
}

void gradNorm(cudaStream_t s, const float *const *tensors, const int64_t *sizes,
              int count, bool squared, float *out, void *scratch) {
  auto *partial = static_cast<double *>(scratch);
  for (int t = 0; t < count; ++t) {
    squaresKernel<<<kNormBlocks, kThreads, 0, s>>>(tensors[t], sizes[t],
                                                   partial + t * kNormBlocks);
    TRLC_LAUNCHED();
  }
  finishNormKernel<<<1, 1024, 0, s>>>(
      partial, static_cast<int64_t>(count) * kNormBlocks, squared, out);
  TRLC_LAUNCHED();
}

void lrSchedule(cudaStream_t s, LrSchedule l, Index step, float *out) {
  lrKernel<<<1, 1, 0, s>>>(l, step, out);
  TRLC_LAUNCHED();
}

} // namespace trlc::cuda
