//===- embedding.cu - token embedding, forward and backward -------*- CUDA
//-*-===//
//
// Forward: one block row per token copies its table row. Backward is
// deterministic: the tokens are bucketed by id in token order (a stable
// radix sort of (id, token) pairs with CUB, bucket ends from an inclusive
// scan of integer counts), then one thread per (table row, column) sums
// its bucket in that order. The table gradient is overwritten, rows with
// no token become zero. An id outside the vocabulary sets the status word
// (forward) and reads as a zero row; the backward skips it (sorted last).
//
// Scratch of the backward: counts and bucket ends [vocab], keys and token
// indices before and after the sort [tokens] each (int32), and CUB's
// temporary storage.
//
//===----------------------------------------------------------------------===//

#include "common.cuh"

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

namespace trlc::cuda {
namespace {

__global__ void embeddingKernel(Status st, const float *table, Index ids,
                                float *y, int64_t vocab, int64_t h,
                                int64_t tokens) {
  int64_t t = gridRow();
  if (t >= tokens)
    return;
  long long id = loadIndex(ids, t);
  bool ok = inRange(st, Status::TokenOutsideVocab, id, vocab);
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x)
    y[t * h + j] = ok ? table[id * h + j] : 0.0f;
}

/// keys[t] = the token's id (vocab when outside it), tokens[t] = t, and
/// counts[id] += 1 (integer atomics: the same counts in any order).
__global__ void keyKernel(Index ids, int *keys, int *tokenIdx, int *counts,
                          int64_t vocab, int64_t tokens) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       t < tokens; t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    long long id = loadIndex(ids, t);
    bool ok = id >= 0 && id < vocab;
    keys[t] = static_cast<int>(ok ? id : vocab);
    tokenIdx[t] = static_cast<int>(t);
    if (ok)
      atomicAdd(&counts[id], 1);
  }
}

/// Bucket v of `order` is [ends[v - 1], ends[v]) (from 0 for v = 0).
__global__ void gatherRowsKernel(const float *dy, const int *ends,
                                 const int *order, float *dtable, int64_t vocab,
                                 int64_t h) {
  int64_t v = gridRow();
  if (v >= vocab)
    return;
  int begin = v == 0 ? 0 : ends[v - 1], end = ends[v];
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
    float acc = 0;
    for (int i = begin; i < end; ++i)
      acc += dy[static_cast<int64_t>(order[i]) * h + j];
    dtable[v * h + j] = acc;
  }
}

} // namespace

void embedding(cudaStream_t s, Status st, const float *table, Index ids,
               float *y, int64_t vocab, int64_t h, int64_t tokens) {
  if (tokens == 0)
    return;
  embeddingKernel<<<rowGrid(tokens), 128, 0, s>>>(st, table, ids, y, vocab, h,
                                                  tokens);
  TRLC_LAUNCHED();
}

namespace {
/// Where each part of the backward's scratch starts.
struct GradScratch {
  int *counts, *ends, *keys, *sortedKeys, *tokenIdx, *order;
  void *temp;
  size_t tempBytes, total;
};

int keyBits(int64_t vocab) { // ids 0..vocab (vocab: outside)
  int bits = 1;
  while ((int64_t(1) << bits) <= vocab)
    ++bits;
  return bits;
}

GradScratch gradScratch(void *base, int64_t vocab, int64_t tokens) {
  size_t sortBytes = 0, scanBytes = 0;
  int n = static_cast<int>(tokens);
  TRLC_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, sortBytes, static_cast<const int *>(nullptr),
      static_cast<int *>(nullptr), static_cast<const int *>(nullptr),
      static_cast<int *>(nullptr), n, 0, keyBits(vocab)));
  TRLC_CUDA_CHECK(cub::DeviceScan::InclusiveSum(
      nullptr, scanBytes, static_cast<const int *>(nullptr),
      static_cast<int *>(nullptr), static_cast<int>(vocab)));
  GradScratch g{};
  char *p = static_cast<char *>(base);
  size_t at = 0;
  auto take = [&](size_t bytes) {
    void *here = p ? p + at : nullptr;
    at += align256(bytes);
    return here;
  };
  g.counts = static_cast<int *>(take(vocab * sizeof(int)));
  g.ends = static_cast<int *>(take(vocab * sizeof(int)));
  g.keys = static_cast<int *>(take(tokens * sizeof(int)));
  g.sortedKeys = static_cast<int *>(take(tokens * sizeof(int)));
  g.tokenIdx = static_cast<int *>(take(tokens * sizeof(int)));
  g.order = static_cast<int *>(take(tokens * sizeof(int)));
  g.tempBytes = std::max<size_t>(std::max(sortBytes, scanBytes), 1);
  g.temp = take(g.tempBytes);
  g.total = at;
  return g;
}
} // namespace

size_t embeddingGradScratch(int64_t vocab, int64_t tokens) {
  return gradScratch(nullptr, vocab, tokens).total;
}

void embeddingGrad(cudaStream_t s, const float *dy, Index ids, float *dtable,
                   int64_t vocab, int64_t h, int64_t tokens, void *scratch) {
  if (tokens > INT32_MAX || vocab >= INT32_MAX)
    throw std::runtime_error(
        "embedding backward: more than 2^31 tokens or ids");
  GradScratch g = gradScratch(scratch, vocab, tokens);
  int n = static_cast<int>(tokens);
  TRLC_CUDA_CHECK(cudaMemsetAsync(g.counts, 0, vocab * sizeof(int), s));
  if (n > 0) {
    keyKernel<<<blocksFor(tokens, 256), 256, 0, s>>>(ids, g.keys, g.tokenIdx,
                                                     g.counts, vocab, tokens);
    TRLC_LAUNCHED();
    size_t bytes = g.tempBytes;
    TRLC_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        g.temp, bytes, g.keys, g.sortedKeys, g.tokenIdx, g.order, n, 0,
        keyBits(vocab), s));
  }
  size_t bytes = g.tempBytes;
  TRLC_CUDA_CHECK(cub::DeviceScan::InclusiveSum(g.temp, bytes, g.counts, g.ends,
                                                static_cast<int>(vocab), s));
  gatherRowsKernel<<<rowGrid(vocab), 128, 0, s>>>(dy, g.ends, g.order, dtable,
                                                  vocab, h);
  TRLC_LAUNCHED();
}

} // namespace trlc::cuda
