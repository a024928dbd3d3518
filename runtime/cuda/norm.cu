//===- norm.cu - RMSNorm and LayerNorm, forward and backward ------*- CUDA
//-*-===//
//
// x, y: [rows, h]; weight (and bias) [h]; fp32 with fp32 statistics, as
// the CPU backend; the forward's y may be stored in bf16. Forward: one block
// per row. Backward: a fixed number of blocks (kGradBlocks, fewer for few rows)
// each own a contiguous range of rows; a block writes dx for its rows and sums
// dw (db) over them into its own row of scratch, [blocks, h] (twice for
// LayerNorm); a second kernel sums those rows in block order. dx, dw and db are
// overwritten.
//
//===----------------------------------------------------------------------===//

#include "common.cuh"

namespace trlc::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kGradBlocks = 128;

int64_t gradBlocks(int64_t rows) {
  return rows < kGradBlocks ? (rows < 1 ? 1 : rows) : kGradBlocks;
}

/// 1 / sqrt(mean(x^2) + eps) of one row, by the whole block.
__device__ float rowInvRms(const float *xr, int64_t h, float eps) {
  float ss = 0;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x)
    ss += xr[j] * xr[j];
  return 1.0f / sqrtf(blockSum(ss) / h + eps);
}

/// Mean and 1 / sqrt(biased variance + eps) of one row, by the whole block.
__device__ float2 rowMoments(const float *xr, int64_t h, float eps) {
  float s = 0;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x)
    s += xr[j];
  float mean = blockSum(s) / h, var = 0;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x)
    var += (xr[j] - mean) * (xr[j] - mean);
  return make_float2(mean, 1.0f / sqrtf(blockSum(var) / h + eps));
}

__global__ void rmsNormKernel(const float *x, const float *w, FloatsOut y,
                              int64_t rows, int64_t h, float eps) {
  int64_t r = gridRow();
  if (r >= rows)
    return;
  const float *xr = x + r * h;
  float inv = rowInvRms(xr, h, eps);
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x)
    store(y, r * h + j, xr[j] * inv * w[j]);
}

__global__ void rmsNormGradKernel(const float *dy, const float *x,
                                  const float *w, float *dx, float *partial,
                                  int64_t rows, int64_t h, float eps) {
  int64_t b = blockIdx.x, blocks = gridDim.x;
  int64_t lo = rows * b / blocks, hi = rows * (b + 1) / blocks;
  float *pw = partial + b * h;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x)
    pw[j] = 0;
  for (int64_t r = lo; r < hi; ++r) {
    const float *xr = x + r * h, *g = dy + r * h;
    float inv = rowInvRms(xr, h, eps);
    float dot = 0;
    for (int64_t j = threadIdx.x; j < h; j += blockDim.x)
      dot += g[j] * w[j] * xr[j] * inv;
    dot = blockSum(dot) / h;
    for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
      float xhat = xr[j] * inv;
      dx[r * h + j] = inv * (g[j] * w[j] - xhat * dot);
      pw[j] += g[j] * xhat;
    }
  }
}

__global__ void layerNormKernel(const float *x, const float *w, const float *b,
                                FloatsOut y, int64_t rows, int64_t h,
                                float eps) {
  int64_t r = gridRow();
  if (r >= rows)
    return;
  const float *xr = x + r * h;
  float2 mi = rowMoments(xr, h, eps);
  float mean = mi.x, inv = mi.y;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x)
    store(y, r * h + j, (xr[j] - mean) * inv * w[j] + b[j]);
}

__global__ void layerNormGradKernel(const float *dy, const float *x,
                                    const float *w, float *dx, float *partial,
                                    int64_t rows, int64_t h, float eps) {
  int64_t b = blockIdx.x, blocks = gridDim.x;
  int64_t lo = rows * b / blocks, hi = rows * (b + 1) / blocks;
  float *pw = partial + b * h, *pb = partial + (blocks + b) * h;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x)
    pw[j] = pb[j] = 0;
  for (int64_t r = lo; r < hi; ++r) {
    const float *xr = x + r * h, *g = dy + r * h;
    float2 mi = rowMoments(xr, h, eps);
    float mean = mi.x, inv = mi.y;
    float m1 = 0, m2 = 0; // means of dxhat and dxhat * xhat
    for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
      float xhat = (xr[j] - mean) * inv, dxhat = g[j] * w[j];
      m1 += dxhat;
      m2 += dxhat * xhat;
    }
    m1 = blockSum(m1) / h;
    m2 = blockSum(m2) / h;
    for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
      float xhat = (xr[j] - mean) * inv;
      dx[r * h + j] = inv * (g[j] * w[j] - m1 - xhat * m2);
      pw[j] += g[j] * xhat;
      pb[j] += g[j];
    }
  }
}

} // namespace

void rmsNorm(cudaStream_t s, const float *x, const float *w, FloatsOut y,
             int64_t rows, int64_t h, float eps) {
  if (rows == 0)
    return;
  rmsNormKernel<<<rowGrid(rows), kThreads, 0, s>>>(x, w, y, rows, h, eps);
  TRLC_LAUNCHED();
}

size_t normGradScratch(int64_t rows, int64_t h, bool layer) {
  return (layer ? 2 : 1) * gradBlocks(rows) * h * sizeof(float);
}

void rmsNormGrad(cudaStream_t s, const float *dy, const float *x,
                 const float *w, float *dx, float *dw, int64_t rows, int64_t h,
                 float eps, void *scratch) {
  auto *partial = static_cast<float *>(scratch);
  int64_t blocks = gradBlocks(rows);
  rmsNormGradKernel<<<blocks, kThreads, 0, s>>>(dy, x, w, dx, partial, rows, h,
                                                eps);
  TRLC_LAUNCHED();
  columnSum(s, partial, dw, blocks, h, nullptr);
}

void layerNorm(cudaStream_t s, const float *x, const float *w, const float *b,
               FloatsOut y, int64_t rows, int64_t h, float eps) {
  if (rows == 0)
    return;
  layerNormKernel<<<rowGrid(rows), kThreads, 0, s>>>(x, w, b, y, rows, h, eps);
  TRLC_LAUNCHED();
}

void layerNormGrad(cudaStream_t s, const float *dy, const float *x,
                   const float *w, float *dx, float *dw, float *db,
                   int64_t rows, int64_t h, float eps, void *scratch) {
  auto *partial = static_cast<float *>(scratch);
  int64_t blocks = gradBlocks(rows);
  layerNormGradKernel<<<blocks, kThreads, 0, s>>>(dy, x, w, dx, partial, rows,
                                                  h, eps);
  TRLC_LAUNCHED();
  columnSum(s, partial, dw, blocks, h, nullptr);
  columnSum(s, partial + blocks * h, db, blocks, h, nullptr);
}

} // namespace trlc::cuda
