//===- elementwise.cu - fill, add, activations, masked sums --------*- CUDA
//-*-===//
//
// One thread per element (grid-stride), fp32 throughout; backward kernels
// overwrite their outputs (the plan adds gradients explicitly). The
// activations follow the CPU backend's formulas term by term. Also the
// small reductions other files share: bias add, column sums.
//
//===----------------------------------------------------------------------===//

#include "common.cuh"

#include <algorithm>

namespace trlc::cuda {
namespace {

constexpr int kThreads = 256;

#define TRLC_GRID_STRIDE(i, n)                                                 \
  for (int64_t i =                                                             \
           blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;        \
       i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void fillKernel(float *y, float v, int64_t n) {
  TRLC_GRID_STRIDE(i, n) y[i] = v;
}

__global__ void addKernel(const float *x, const float *z, float *y, int64_t n) {
  TRLC_GRID_STRIDE(i, n) y[i] = x[i] + z[i];
}

__global__ void divKernel(const float *x, const float *d, float *y, int64_t n) {
  float div = *d;
  TRLC_GRID_STRIDE(i, n) y[i] = x[i] / div;
}

__global__ void sqrtKernel(const float *x, float *y, int64_t n) {
  TRLC_GRID_STRIDE(i, n) y[i] = sqrtf(x[i]);
}

__device__ inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void swigluKernel(Floats g, Floats u, FloatsOut y, int64_t n) {
  TRLC_GRID_STRIDE(i, n) {
    float gi = load(g, i);
    store(y, i, gi * sigmoidf(gi) * load(u, i));
  }
}

__global__ void swigluGradKernel(const float *dy, Floats g, Floats u, float *dg,
                                 float *du, int64_t n) {
  TRLC_GRID_STRIDE(i, n) {
    float gi = load(g, i), s = sigmoidf(gi);
    du[i] = dy[i] * gi * s;
    dg[i] = dy[i] * load(u, i) * (s + gi * s * (1 - s));
  }
}

constexpr float kSqrt2OverPi = 0.7978845608028654f;

__global__ void geluKernel(bool tanhApprox, Floats x, FloatsOut y, int64_t n) {
  TRLC_GRID_STRIDE(i, n) {
    float v = load(x, i);
    store(y, i,
          tanhApprox
              ? 0.5f * v *
                    (1 + tanhf(kSqrt2OverPi * (v + 0.044715f * v * v * v)))
              : 0.5f * v * (1 + erff(v * 0.70710678118654752f)));
  }
}

__global__ void geluGradKernel(bool tanhApprox, const float *dy, Floats x,
                               float *dx, int64_t n) {
  TRLC_GRID_STRIDE(i, n) {
    float v = load(x, i), d;
    if (tanhApprox) {
      float t = tanhf(kSqrt2OverPi * (v + 0.044715f * v * v * v));
      d = 0.5f * (1 + t) +
          0.5f * v * (1 - t * t) * kSqrt2OverPi * (1 + 3 * 0.044715f * v * v);
    } else {
      d = 0.5f * (1 + erff(v * 0.70710678118654752f)) +
          v * expf(-v * v / 2) * 0.3989422804014327f;
    }
    dx[i] = dy[i] * d;
  }
}

__global__ void dropoutKernel(Floats x, const int64_t *seed, uint64_t stream,
                              uint32_t threshold, float scale, FloatsOut y,
                              int64_t n) {
  uint64_t sd = static_cast<uint64_t>(*seed);
  TRLC_GRID_STRIDE(i, n) {
    bool keep = dropoutKeeps(sd, stream, static_cast<uint64_t>(i), threshold);
    store(y, i, keep ? load(x, i) * scale : 0.0f);
  }
}

/// One warp per row.
__global__ void maskedSumKernel(Floats x, Floats m, float *y, int64_t rows,
                                int64_t cols, bool shared) {
  int64_t r =
      blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  if (r >= rows)
    return;
  float acc = 0;
  int64_t xr = shared ? 0 : r * cols;
  for (int64_t j = threadIdx.x % 32; j < cols; j += 32)
    acc += load(x, xr + j) * load(m, r * cols + j);
  acc = warpSum(acc);
  if (threadIdx.x % 32 == 0)
    y[r] = acc;
}

__global__ void maskedSumGradKernel(const float *g, const float *m, float *dx,
                                    int64_t rows, int64_t cols) {
  TRLC_GRID_STRIDE(i, rows * cols) dx[i] = g[i / cols] * m[i];
}

/// A shared row: one thread per column sums the mask rows in order.
__global__ void maskedSumGradSharedKernel(const float *g, const float *m, float *dx,
                                          int64_t rows, int64_t cols) {
  TRLC_GRID_STRIDE(j, cols) {
    float acc = 0;
    for (int64_t r = 0; r < rows; ++r)
      acc += g[r] * m[r * cols + j];
    dx[j] = acc;
  }
}

__global__ void addBiasKernel(FloatsOut y, const float *bias, int64_t rows,
                              int64_t n) {
  Floats in{y.data, y.bf16};
  TRLC_GRID_STRIDE(i, rows * n) store(y, i, load(in, i) + bias[i % n]);
}

/// One thread per column, rows in order.
__global__ void columnSumKernel(const float *x, float *out, int64_t rows,
                                int64_t n) {
  int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= n)
    return;
  float acc = 0;
  for (int64_t r = 0; r < rows; ++r)
    acc += x[r * n + j];
  out[j] = acc;
}

/// partial[p, j] = sum of x[r, j] over rows [p per, (p + 1) per): a block
/// of 256 threads takes 32 columns in 8 row lanes (warps), whose sums add
/// in order.
__global__ void columnPartialKernel(const float *x, float *partial,
                                    int64_t rows, int64_t n, int64_t per) {
  __shared__ float lanes[8][33];
  int col = threadIdx.x % 32, lane = threadIdx.x / 32;
  int64_t j = blockIdx.x * 32ll + col;
  int64_t lo = blockIdx.y * per, hi = min(lo + per, rows);
  float acc = 0;
  if (j < n)
    for (int64_t r = lo + lane; r < hi; r += 8)
      acc += x[r * n + j];
  lanes[lane][col] = acc;
  __syncthreads();
  if (lane == 0 && j < n) {
    float sum = 0;
    for (int y = 0; y < 8; ++y)
      sum += lanes[y][col];
    partial[blockIdx.y * n + j] = sum;
  }
}

/// Rows per partial sum of columnSum: at least 256, and few enough parts
/// for a grid's 65535 rows.
int64_t rowsPerPart(int64_t rows) {
  return std::max<int64_t>(256, (rows + 65534) / 65535);
}

} // namespace

void addBias(cudaStream_t s, FloatsOut y, const float *bias, int64_t rows,
             int64_t n) {
  addBiasKernel<<<blocksFor(rows * n, kThreads), kThreads, 0, s>>>(y, bias,
                                                                   rows, n);
  TRLC_LAUNCHED();
}

size_t columnSumScratch(int64_t rows, int64_t n) {
  int64_t per = rowsPerPart(rows);
  return rows > per ? align256((rows + per - 1) / per * n * sizeof(float)) : 0;
}

void columnSum(cudaStream_t s, const float *x, float *out, int64_t rows,
               int64_t n, void *scratch) {
  if (n == 0)
    return;
  int64_t per = rowsPerPart(rows), parts = (rows + per - 1) / per;
  if (parts > 1) { // a few rows per block, then the parts in order
    auto *partial = static_cast<float *>(scratch);
    dim3 grid(static_cast<unsigned>((n + 31) / 32),
              static_cast<unsigned>(parts));
    columnPartialKernel<<<grid, 256, 0, s>>>(x, partial, rows, n, per);
    TRLC_LAUNCHED();
    x = partial;
    rows = parts;
  }
  columnSumKernel<<<blocksFor(n, kThreads, 1ll << 31), kThreads, 0, s>>>(
      x, out, rows, n);
  TRLC_LAUNCHED();
}

void fill(cudaStream_t s, float *y, float value, int64_t n) {
  fillKernel<<<blocksFor(n, kThreads), kThreads, 0, s>>>(y, value, n);
  TRLC_LAUNCHED();
}

void add(cudaStream_t s, const float *x, const float *z, float *y, int64_t n) {
  addKernel<<<blocksFor(n, kThreads), kThreads, 0, s>>>(x, z, y, n);
  TRLC_LAUNCHED();
}

void divScalar(cudaStream_t s, const float *x, const float *d, float *y,
               int64_t n) {
  divKernel<<<blocksFor(n, kThreads), kThreads, 0, s>>>(x, d, y, n);
  TRLC_LAUNCHED();
}

void sqrtElements(cudaStream_t s, const float *x, float *y, int64_t n) {
  sqrtKernel<<<blocksFor(n, kThreads), kThreads, 0, s>>>(x, y, n);
  TRLC_LAUNCHED();
}

void swiglu(cudaStream_t s, Floats g, Floats u, FloatsOut y, int64_t n) {
  swigluKernel<<<blocksFor(n, kThreads), kThreads, 0, s>>>(g, u, y, n);
  TRLC_LAUNCHED();
}

void swigluGrad(cudaStream_t s, const float *dy, Floats g, Floats u, float *dg,
                float *du, int64_t n) {
  swigluGradKernel<<<blocksFor(n, kThreads), kThreads, 0, s>>>(dy, g, u, dg, du,
                                                               n);
  TRLC_LAUNCHED();
}

void gelu(cudaStream_t s, bool tanhApprox, Floats x, FloatsOut y, int64_t n) {
  geluKernel<<<blocksFor(n, kThreads), kThreads, 0, s>>>(tanhApprox, x, y, n);
  TRLC_LAUNCHED();
}

void dropout(cudaStream_t s, Floats x, const int64_t *seed, uint64_t stream,
             uint32_t threshold, float scale, FloatsOut y, int64_t n) {
  dropoutKernel<<<blocksFor(n, kThreads), kThreads, 0, s>>>(
      x, seed, stream, threshold, scale, y, n);
  TRLC_LAUNCHED();
}

void geluGrad(cudaStream_t s, bool tanhApprox, const float *dy, Floats x,
              float *dx, int64_t n) {
  geluGradKernel<<<blocksFor(n, kThreads), kThreads, 0, s>>>(tanhApprox, dy, x,
                                                             dx, n);
  TRLC_LAUNCHED();
}

void maskedSum(cudaStream_t s, Floats x, Floats mask, float *y, int64_t rows,
               int64_t cols, bool shared) {
  maskedSumKernel<<<blocksFor(rows, kThreads / 32, 1ll << 31), kThreads, 0,
                    s>>>(x, mask, y, rows, cols, shared);
  TRLC_LAUNCHED();
}

void maskedSumGrad(cudaStream_t s, const float *g, const float *mask, float *dx,
                   int64_t rows, int64_t cols, bool shared) {
  if (shared)
    maskedSumGradSharedKernel<<<blocksFor(cols, kThreads), kThreads, 0, s>>>(
        g, mask, dx, rows, cols);
  else
    maskedSumGradKernel<<<blocksFor(rows * cols, kThreads), kThreads, 0, s>>>(
        g, mask, dx, rows, cols);
  TRLC_LAUNCHED();
}

} // namespace trlc::cuda
