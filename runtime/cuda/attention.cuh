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

/// The rows [row0, end) of sequence `s` (counted from its start) that a
/// block works on.
struct Tile {
  int64_t s;
  Seq seq;
  int64_t row0, end;
};

/// The grid of a kernel whose blocks take `rows` rows of one head each.
/// Padded: (row tiles of maxLen, heads, count). Varlen: (tiles of `rows`
/// packed tokens, heads); a block takes in turn the rows of each document
/// that meets its tokens (forEachTile), so the grid does not grow with the
/// number of documents the plan has room for, most of them empty.
inline dim3 tileGrid(const AttentionShape &a, int64_t heads, int rows) {
  int64_t n = a.varlen ? a.totalTokens : a.maxLen;
  return dim3(static_cast<unsigned>((n + rows - 1) / rows),
              static_cast<unsigned>(heads),
              static_cast<unsigned>(a.varlen ? 1 : a.count));
}

/// Calls body(Tile) for each of the block's tiles of tileGrid, with a
/// barrier between tiles, so that each body may reuse all of shared memory.
/// Every thread of the block sees the same tiles, so the body may hold
/// barriers too.
template <typename Body>
__device__ void forEachTile(const AttentionShape &a, int rows, Body &&body) {
  int64_t first = static_cast<int64_t>(blockIdx.x) * rows;
  if (!a.varlen) {
    Seq seq = sequenceOf(a, blockIdx.z);
    if (first < seq.len)
      body(Tile{blockIdx.z, seq, first, min(first + rows, seq.len)});
    return;
  }
  int64_t last = min(first + rows, a.totalTokens);
  // The first document that ends after `first`: cu_seqlens is sorted.
  int64_t lo = 0, hi = a.count;
  while (lo < hi) {
    int64_t mid = (lo + hi) / 2;
    if (loadIndex(a.cuSeqlens, mid + 1) > first)
      hi = mid;
    else
      lo = mid + 1;
  }
  for (int64_t s = lo; s < a.count; ++s) {
    Seq seq = sequenceOf(a, s);
    if (seq.start >= last)
      break;
    if (seq.len == 0)
      continue;
    __syncthreads(); // the previous tile is done with shared memory
    body(Tile{s, seq, max(first, seq.start) - seq.start,
              min(last, seq.start + seq.len) - seq.start});
  }
}

/// A document longer than maxLen breaks the plan's contract (its buffers
/// and the padded grid are sized by maxLen): reported once per document.
__device__ inline void checkLength(Status st, const AttentionShape &a,
                                   const Tile &t) {
  if (t.seq.len > a.maxLen && t.row0 == 0 && blockIdx.y == 0 &&
      threadIdx.x == 0)
    report(st, Status::LongDocument, t.seq.len);
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
  maskedSum(s, dout, out, dsum, tokens * a.hq, a.d, false);
  return dsum;
}

} // namespace
} // namespace trlc::cuda

#endif // TRLC_RUNTIME_CUDA_ATTENTION_CUH
