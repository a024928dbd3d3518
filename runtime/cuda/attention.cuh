//===- attention.cuh - what both attention kernels share ----*- CUDA -*-===//
//
// The sequences of an AttentionShape on the device (padded rows or varlen
// documents), the key mask, where a row's lse lives, and the host-side
// launch helpers. attention.cu (fp32, CUDA cores) and attention_bf16.cu
// (bf16 tensor cores) both include it.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_CUDA_ATTENTION_CUH
#define TRLC_RUNTIME_CUDA_ATTENTION_CUH

#include "common.cuh"

namespace trlc::cuda {
namespace {

/// Where a sequence's tokens are, on the device.
struct Seq {
  int64_t start, len;
};

__device__ inline Seq sequenceOf(const AttentionShape &a, int64_t s) {
  if (!a.varlen)
    return {s * a.rowLength, a.rowLength};
  long long lo = loadIndex(a.cuSeqlens, s), hi = loadIndex(a.cuSeqlens, s + 1);
  return {lo, hi - lo};
}

__device__ inline bool keyVisible(const AttentionShape &a, int64_t s,
                                  int64_t j) {
  return a.varlen || !a.mask.data ||
         loadIndex(a.mask, s * a.rowLength + j) != 0;
}

__device__ inline int64_t lseIndex(const AttentionShape &a, Seq q, int64_t s,
                                   int64_t h, int64_t i) {
  return a.varlen ? h * a.totalTokens + q.start + i
                  : (s * a.hq + h) * a.rowLength + i;
}

/// The grid covers maxLen rows: a longer document is an error, not rows
/// silently left out.
__device__ inline void checkLength(Status st, const AttentionShape &a,
                                   Seq seq) {
  if (seq.len > a.maxLen && blockIdx.x == 0 && blockIdx.y == 0 &&
      threadIdx.x == 0)
    report(st, Status::LongDocument, seq.len);
}

/// Lets `kernel` use `bytes` of dynamic shared memory (above 48 KiB needs
/// an opt-in).
template <typename K> void allowSmem(K kernel, size_t bytes) {
  TRLC_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(bytes)));
}

inline int64_t tokensOf(const AttentionShape &a) {
  return a.varlen ? a.totalTokens : a.count * a.rowLength;
}

/// The backward's first steps, before its dQ and dK/dV kernels: tokens
/// outside every document get zero gradients (the kernels write the
/// others), and D[token, h] = sum_c dO O goes to the start of scratch.
/// Returns D, or null when there is nothing more to do.
inline float *gradPrologue(cudaStream_t s, const AttentionShape &a, Floats dout,
                           Floats out, float *dq, float *dk, float *dv,
                           void *scratch) {
  int64_t tokens = tokensOf(a);
  TRLC_CUDA_CHECK(
      cudaMemsetAsync(dq, 0, tokens * a.hq * a.d * sizeof(float), s));
  TRLC_CUDA_CHECK(
      cudaMemsetAsync(dk, 0, tokens * a.hkv * a.d * sizeof(float), s));
  TRLC_CUDA_CHECK(
      cudaMemsetAsync(dv, 0, tokens * a.hkv * a.d * sizeof(float), s));
  if (a.count == 0 || a.maxLen == 0 || tokens == 0)
    return nullptr;
  auto *dsum = static_cast<float *>(scratch);
  maskedSum(s, dout, out, dsum, tokens * a.hq, a.d);
  return dsum;
}

} // namespace
} // namespace trlc::cuda

#endif // TRLC_RUNTIME_CUDA_ATTENTION_CUH
