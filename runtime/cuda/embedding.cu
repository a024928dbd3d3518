//===- embedding.cu - token embedding, forward and backward -------*- CUDA
//-*-===//
//
// Forward: one block row per token copies its table row. Backward is
// deterministic: the tokens are bucketed by id in token order (a counting
// sort, its scatter done by one thread so the order within a bucket is the
// token order), then one thread per (table row, column) sums its bucket in
// that order. The table gradient is overwritten, rows with no token
// become zero. An id outside the vocabulary sets the status word and
// reads as a zero row.
//
// Scratch of the backward: counts [vocab + 1] and the sorted token list
// [tokens], int32.
//
//===----------------------------------------------------------------------===//

#include "common.cuh"

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

/// counts[v + 1] = tokens with id v, then the exclusive prefix sum, then a
/// stable scatter of token indices: one thread, tokens in order.
__global__ void bucketKernel(Index ids, int *counts, int *order, int64_t vocab,
                             int64_t tokens) {
  if (threadIdx.x != 0 || blockIdx.x != 0)
    return;
  for (int64_t t = 0; t < tokens; ++t) {
    long long id = loadIndex(ids, t);
    if (id >= 0 && id < vocab)
      ++counts[id + 1];
  }
  for (int64_t v = 0; v < vocab; ++v)
    counts[v + 1] += counts[v];
  for (int64_t t = 0; t < tokens; ++t) {
    long long id = loadIndex(ids, t);
    if (id >= 0 && id < vocab)
      order[counts[id]++] = static_cast<int>(t);
  }
  // counts[v] is now the end of bucket v; its start is counts[v - 1]
  // (0 for v = 0), read below as `begin`.
}

__global__ void gatherRowsKernel(const float *dy, const int *counts,
                                 const int *order, float *dtable, int64_t vocab,
                                 int64_t h) {
  int64_t v = gridRow();
  if (v >= vocab)
    return;
  int begin = v == 0 ? 0 : counts[v - 1], end = counts[v];
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

size_t embeddingGradScratch(int64_t vocab, int64_t tokens) {
  return align256((vocab + 1) * sizeof(int)) + align256(tokens * sizeof(int));
}

void embeddingGrad(cudaStream_t s, const float *dy, Index ids, float *dtable,
                   int64_t vocab, int64_t h, int64_t tokens, void *scratch) {
  int *counts = static_cast<int *>(scratch);
  int *order = reinterpret_cast<int *>(static_cast<char *>(scratch) +
                                       align256((vocab + 1) * sizeof(int)));
  TRLC_CUDA_CHECK(cudaMemsetAsync(counts, 0, (vocab + 1) * sizeof(int), s));
  bucketKernel<<<1, 32, 0, s>>>(ids, counts, order, vocab, tokens);
  TRLC_LAUNCHED();
  gatherRowsKernel<<<rowGrid(vocab), 128, 0, s>>>(dy, counts, order, dtable,
                                                  vocab, h);
  TRLC_LAUNCHED();
}

} // namespace trlc::cuda
