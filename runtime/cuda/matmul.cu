//===- matmul.cu - bf16 matrix products over cuBLASLt --------------*- CUDA
//-*-===//
//
// Weights are fp32 master copies and activations fp32 or bf16 (bf16 storage,
// trl-mixed-precision); a product takes bf16 operands (fp32 ones are rounded
// into the call's scratch with `toBf16`), accumulates in fp32 and writes an
// fp32 or a bf16 result, as mixed precision training does. Callers speak
// row-major, like cblas_sgemm; cuBLASLt is column-major, so C = op(A) op(B)
// runs as C^T = op(B)^T op(A)^T with the operands swapped.
//
// A product's descriptors and its algorithm (cuBLASLt's first heuristic
// pick for the shape, the operands' alignment and the workspace) are made
// once per distinct product and cached; products with no cuBLASLt
// algorithm (odd leading dimensions on some architectures) run on a plain
// tiled kernel with the same precision.
//
//===----------------------------------------------------------------------===//

#include "common.cuh"

#include <cublasLt.h>
#include <cuda_bf16.h>

#include <map>
#include <tuple>

namespace trlc::cuda {

namespace {

void checkBlas(cublasStatus_t st, const char *what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLASLt: ") + what +
                             " failed with status " +
                             std::to_string(static_cast<int>(st)));
}

__global__ void toBf16Kernel(const float *x, uint16_t *y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = floatToBf16(x[i]);
}

__global__ void toF32Kernel(const uint16_t *x, float *y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = bf16ToFloat(x[i]);
}

__device__ void storeProduct(float *out, float value, float beta) {
  *out = value + (beta != 0.0f ? beta * *out : 0.0f);
}
__device__ void storeProduct(__nv_bfloat16 *out, float value, float) {
  *out = __float2bfloat16_rn(value); // beta is 0 for bf16 results
}

constexpr int kTile = 16;

/// The fallback product: row-major, 16x16 tiles in shared memory.
template <typename OutT>
__global__ void tiledGemmKernel(bool ta, bool tb, int64_t m, int64_t n,
                                int64_t k, const __nv_bfloat16 *a, int64_t lda,
                                const __nv_bfloat16 *b, int64_t ldb, float beta,
                                OutT *c, int64_t ldc, float alpha) {
  __shared__ float as[kTile][kTile + 1], bs[kTile][kTile + 1];
  int64_t row = blockIdx.y * static_cast<int64_t>(kTile) + threadIdx.y;
  int64_t col = blockIdx.x * static_cast<int64_t>(kTile) + threadIdx.x;
  float acc = 0;
  for (int64_t k0 = 0; k0 < k; k0 += kTile) {
    int64_t ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
    as[threadIdx.y][threadIdx.x] =
        row < m && ka < k
            ? __bfloat162float(ta ? a[ka * lda + row] : a[row * lda + ka])
            : 0.0f;
    bs[threadIdx.y][threadIdx.x] =
        kb < k && col < n
            ? __bfloat162float(tb ? b[col * ldb + kb] : b[kb * ldb + col])
            : 0.0f;
    __syncthreads();
    for (int i = 0; i < kTile; ++i)
      acc += as[threadIdx.y][i] * bs[i][threadIdx.x];
    __syncthreads();
  }
  if (row < m && col < n)
    storeProduct(c + row * ldc + col, alpha * acc, beta);
}

int alignmentOf(const void *p) {
  auto v = reinterpret_cast<uintptr_t>(p);
  int a = 1;
  while (a < 256 && v % (2 * a) == 0)
    a *= 2;
  return a;
}

} // namespace

struct Matmul {
  using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t,
                         int64_t, int64_t, bool, int, int, int, bool>;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool lt = false; // false: the tiled fallback
  };
  cublasLtHandle_t handle = nullptr;
  void *workspace = nullptr;
  size_t workspaceBytes = 0;
  std::map<Key, Plan> plans;

  const Plan &plan(const Key &key);
  ~Matmul() {
    for (auto &[key, p] : plans) {
      if (p.op)
        cublasLtMatmulDescDestroy(p.op);
      for (auto l : {p.a, p.b, p.c})
        if (l)
          cublasLtMatrixLayoutDestroy(l);
    }
    if (handle)
      cublasLtDestroy(handle);
  }
};

const Matmul::Plan &Matmul::plan(const Key &key) {
  auto it = plans.find(key);
  if (it != plans.end())
    return it->second;
  auto [ta, tb, m, n, k, lda, ldb, ldc, accumulate, alignA, alignB, alignC,
        cBf16] = key;
  Plan p;
  // Column-major: D (n x m) = op(B') (n x k) op(A') (k x m).
  cublasOperation_t opA = tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                    opB = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  checkBlas(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
            "descriptor");
  checkBlas(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA,
                                           &opA, sizeof opA),
            "transa");
  checkBlas(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB,
                                           &opB, sizeof opB),
            "transb");
  checkBlas(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, tb ? k : n,
                                       tb ? n : k, ldb),
            "layout");
  checkBlas(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, ta ? m : k,
                                       ta ? k : m, lda),
            "layout");
  checkBlas(cublasLtMatrixLayoutCreate(&p.c, cBf16 ? CUDA_R_16BF : CUDA_R_32F,
                                       n, m, ldc),
            "layout");
  cublasLtMatmulPreference_t pref;
  checkBlas(cublasLtMatmulPreferenceCreate(&pref), "preference");
  uint32_t aA = alignB, aB = alignA, aC = alignC; // swapped with the operands
  cublasLtMatmulPreferenceSetAttribute(pref,
                                       CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                       &workspaceBytes, sizeof workspaceBytes);
  cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aA, sizeof aA);
  cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &aB, sizeof aB);
  cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &aC, sizeof aC);
  cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &aC, sizeof aC);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      handle, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && found > 0) {
    p.algo = result.algo;
    p.lt = true;
  }
  return plans.emplace(key, p).first->second;
}

Matmul *createMatmul(void *workspace, size_t workspaceBytes) {
  auto *mm = new Matmul;
  mm->workspace = workspace;
  mm->workspaceBytes = workspaceBytes;
  cublasStatus_t st = cublasLtCreate(&mm->handle);
  if (st != CUBLAS_STATUS_SUCCESS) {
    delete mm;
    checkBlas(st, "cublasLtCreate");
  }
  return mm;
}

void destroyMatmul(Matmul *m) { delete m; }

void toBf16(cudaStream_t s, const float *x, void *out, int64_t n) {
  if (n == 0)
    return;
  toBf16Kernel<<<blocksFor(n, 256), 256, 0, s>>>(
      x, static_cast<uint16_t *>(out), n);
  TRLC_LAUNCHED();
}

void toF32(cudaStream_t s, const void *x, float *out, int64_t n) {
  if (n == 0)
    return;
  toF32Kernel<<<blocksFor(n, 256), 256, 0, s>>>(
      static_cast<const uint16_t *>(x), out, n);
  TRLC_LAUNCHED();
}

void gemm(Matmul *mm, cudaStream_t s, bool ta, bool tb, int64_t m, int64_t n,
          int64_t k, const void *a, int64_t lda, const void *b, int64_t ldb,
          float beta, void *c, int64_t ldc, float alpha, bool cBf16) {
  if (m == 0 || n == 0)
    return;
  if (cBf16 && beta != 0.0f)
    throw std::runtime_error("gemm: a bf16 result cannot accumulate (beta)");
  size_t e = cBf16 ? 2 : sizeof(float);
  if (k == 0) { // an empty sum: C = beta C
    if (beta == 0.0f)
      TRLC_CUDA_CHECK(cudaMemset2DAsync(c, ldc * e, 0, n * e, m, s));
    else if (beta != 1.0f)
      throw std::runtime_error("gemm: k = 0 with beta other than 0 or 1");
    return;
  }
  Matmul::Key key{ta,
                  tb,
                  m,
                  n,
                  k,
                  lda,
                  ldb,
                  ldc,
                  beta != 0.0f,
                  alignmentOf(a),
                  alignmentOf(b),
                  alignmentOf(c),
                  cBf16};
  const Matmul::Plan &p = mm->plan(key);
  if (p.lt) {
    checkBlas(cublasLtMatmul(mm->handle, p.op, &alpha, b, p.a, a, p.b, &beta, c,
                             p.c, c, p.c, &p.algo, mm->workspace,
                             mm->workspaceBytes, s),
              "cublasLtMatmul");
    return;
  }
  dim3 grid(static_cast<unsigned>((n + kTile - 1) / kTile),
            static_cast<unsigned>((m + kTile - 1) / kTile));
  auto *ab = static_cast<const __nv_bfloat16 *>(a),
       *bb = static_cast<const __nv_bfloat16 *>(b);
  if (cBf16)
    tiledGemmKernel<<<grid, dim3(kTile, kTile), 0, s>>>(
        ta, tb, m, n, k, ab, lda, bb, ldb, beta,
        static_cast<__nv_bfloat16 *>(c), ldc, alpha);
  else
    tiledGemmKernel<<<grid, dim3(kTile, kTile), 0, s>>>(
        ta, tb, m, n, k, ab, lda, bb, ldb, beta, static_cast<float *>(c), ldc,
        alpha);
  TRLC_LAUNCHED();
}

} // namespace trlc::cuda
