//===- rope.cu - rotary position embedding ---------------------------*- CUDA
//-*-===//
//
// x, y: [tokens, heads, d] (any leading shape whose product is `tokens`);
// positions [tokens], per document with packing. Rotate-half convention:
// (x1, x2) = (x[i], x[i + d/2]) turns by angle = position * inv_freq[i].
// As transformers (and the CPU backend): inv_freq = 1 / theta^(2i/d) in
// fp32, the Llama-3 scaling in double, the angle and its cos/sin in fp32.
// `inverse` turns the other way (the backward of a rotation). One thread
// per (token, head, pair); x and y are fp32 or bf16 (computed in fp32).
//
//===----------------------------------------------------------------------===//

#include "common.cuh"

namespace trlc::cuda {
namespace {

__device__ double inverseFrequency(int64_t i, int64_t d, double theta,
                                   RopeScaling sc) {
  float expo = static_cast<float>(2 * i) / static_cast<float>(d);
  double f = 1.0f / powf(static_cast<float>(theta), expo);
  if (sc.factor == 0)
    return f;
  double lowWavelen = sc.originalMax / sc.lowFreqFactor;
  double highWavelen = sc.originalMax / sc.highFreqFactor;
  double wavelen = 2 * 3.14159265358979323846 / f;
  if (wavelen < highWavelen)
    return f;
  if (wavelen > lowWavelen)
    return f / sc.factor;
  double smooth = (sc.originalMax / wavelen - sc.lowFreqFactor) /
                  (sc.highFreqFactor - sc.lowFreqFactor);
  return (1 - smooth) * f / sc.factor + smooth * f;
}

__global__ void ropeKernel(Floats x, Index pos, FloatsOut y, int64_t tokens,
                           int64_t heads, int64_t d, double theta,
                           RopeScaling sc, float sign) {
  int64_t half = d / 2, n = tokens * heads * half;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       e < n; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t i = e % half, th = e / half, t = th / heads;
    float angle = static_cast<float>(loadIndex(pos, t)) *
                  static_cast<float>(inverseFrequency(i, d, theta, sc));
    float c = cosf(angle), s = sign * sinf(angle);
    int64_t at = th * d + i;
    float x1 = load(x, at), x2 = load(x, at + half);
    store(y, at, x1 * c - x2 * s);
    store(y, at + half, x2 * c + x1 * s);
  }
}

} // namespace

void rope(cudaStream_t s, Floats x, Index pos, FloatsOut y, int64_t tokens,
          int64_t heads, int64_t d, double theta, RopeScaling scaling,
          bool inverse) {
  int64_t n = tokens * heads * (d / 2);
  if (n == 0)
    return;
  ropeKernel<<<blocksFor(n, 256), 256, 0, s>>>(
      x, pos, y, tokens, heads, d, theta, scaling, inverse ? -1.0f : 1.0f);
  TRLC_LAUNCHED();
}

} // namespace trlc::cuda
