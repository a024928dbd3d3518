//===- attention.cu - flash-style attention, padded and varlen -*- CUDA -*-===//
//
// Layouts (see AttentionShape): padded q [count, rowLength, hq, d] with an
// optional key mask [count, rowLength]; varlen q [totalTokens, hq, d] with
// documents at cu_seqlens. k, v have hkv heads; query head h reads kv head
// h / (hq / hkv). lse is saved for the backward ([count, hq, rowLength],
// varlen [hq, totalTokens]); a query row with no visible key gets output 0
// and lse -inf, as on the CPU.
//
// No [S, S] matrix is ever stored. Forward: a block of kWarps warps takes
// kWarps consecutive query rows of one (sequence, head), one warp per row;
// keys stream through shared memory in tiles of 32. For a tile, lane j
// scores key j, the warp updates its running max and sum (online softmax)
// and every lane accumulates its d/32 output columns.
//
// Backward in three deterministic kernels (no atomics): D = rowsum(dO * O)
// per (token, head); dQ with one warp per query row streaming key tiles
// (recomputing P from lse); dK and dV with one warp per key row streaming
// query tiles of every query head of its group. dq, dk, dv are
// overwritten. fp32 throughout; head dimensions up to kMaxD.
//
//===----------------------------------------------------------------------===//

#include "attention.cuh"

#include <stdexcept>

namespace trlc::cuda {
namespace {

constexpr int kWarps = 8;     // rows per block
constexpr int kTileKeys = 32; // one key per lane
constexpr int kMaxD = 256;
constexpr int kPer = kMaxD / 32; // columns per lane

/// Loads rows [r0, r0 + 32) of one head of x ([tokens, heads, d]) into a
/// [32][ld] tile, zeros past `len`.
__device__ inline void loadTile(float *tile, int ld, const float *x, Seq seq,
                                int64_t r0, int64_t heads, int64_t head,
                                int64_t d) {
  for (int64_t e = threadIdx.x; e < kTileKeys * d; e += blockDim.x) {
    int64_t j = e / d, c = e % d, r = r0 + j;
    tile[j * ld + c] =
        r < seq.len ? x[((seq.start + r) * heads + head) * d + c] : 0.0f;
  }
}

/// acc[t] += sum over the tile's rows j of w_j tile[j][lane + 32 t], where
/// w_j is lane j's `w` (rows whose weight is 0 are skipped).
__device__ inline void addWeightedRows(float (&acc)[kPer], float w,
                                       const float *tile, int ld, int64_t d,
                                       int lane) {
  for (int j = 0; j < kTileKeys; ++j) {
    float wj = __shfl_sync(0xffffffffu, w, j);
    if (wj == 0.0f)
      continue;
    for (int t = 0; t < kPer; ++t) {
      int64_t c = lane + 32 * t;
      if (c < d)
        acc[t] += wj * tile[j * ld + c];
    }
  }
}

__global__ void forwardKernel(Status st, AttentionShape a, const float *q,
                              const float *k, const float *v, float *out,
                              float *lse) {
  extern __shared__ float smem[];
  int64_t d = a.d, h = blockIdx.y, kh = h / (a.hq / a.hkv);
  int ld = static_cast<int>(d) + 1;
  float *ks = smem, *vs = ks + kTileKeys * ld, *qs = vs + kTileKeys * ld;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  forEachTile(a, kWarps, [&](const Tile &t) {
    checkLength(st, a, t);
    int64_t s = t.s, i = t.row0 + warp;
    Seq seq = t.seq;
    bool active = i < t.end;
    float *qw = qs + warp * d;
    const float *qrow = q + ((seq.start + i) * a.hq + h) * d;
    for (int64_t c = lane; c < d; c += 32)
      qw[c] = active ? qrow[c] : 0.0f;
    float o[kPer];
    for (int u = 0; u < kPer; ++u)
      o[u] = 0;
    float mx = -INFINITY, l = 0;
    int64_t keyEnd = a.causal ? t.end : seq.len;
    for (int64_t k0 = 0; k0 < keyEnd; k0 += kTileKeys) {
      __syncthreads(); // the previous tile is consumed
      loadTile(ks, ld, k, seq, k0, a.hkv, kh, d);
      loadTile(vs, ld, v, seq, k0, a.hkv, kh, d);
      __syncthreads();
      if (!active)
        continue;
      int64_t j = k0 + lane;
      bool visible =
          j < seq.len && (!a.causal || j <= i) && keyVisible(a, s, j);
      float score = -INFINITY;
      if (visible) {
        float dot = 0;
        for (int64_t c = 0; c < d; ++c)
          dot += qw[c] * ks[lane * ld + c];
        score = dot * a.scale;
      }
      float tileMax = warpMax(score);
      if (tileMax == -INFINITY)
        continue;
      float next = fmaxf(mx, tileMax);
      float p = visible ? expf(score - next) : 0.0f;
      float rescale = expf(mx - next); // 0 while mx is -inf
      l = l * rescale + warpSum(p);
      mx = next;
      for (int u = 0; u < kPer; ++u)
        o[u] *= rescale;
      addWeightedRows(o, p, vs, ld, d, lane);
    }
    if (!active)
      return;
    float *orow = out + ((seq.start + i) * a.hq + h) * d;
    for (int u = 0; u < kPer; ++u) {
      int64_t c = lane + 32 * u;
      if (c < d)
        orow[c] = l > 0 ? o[u] / l : 0.0f;
    }
    if (lane == 0)
      lse[lseIndex(a, seq, s, h, i)] = l > 0 ? mx + logf(l) : -INFINITY;
  });
}

__global__ void dqKernel(Status st, AttentionShape a, const float *dout,
                         const float *q, const float *k, const float *v,
                         const float *lse, const float *dsum, float *dq) {
  extern __shared__ float smem[];
  int64_t d = a.d, h = blockIdx.y, kh = h / (a.hq / a.hkv);
  int ld = static_cast<int>(d) + 1;
  float *ks = smem, *vs = ks + kTileKeys * ld, *qs = vs + kTileKeys * ld,
        *gs = qs + kWarps * d;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  forEachTile(a, kWarps, [&](const Tile &t) {
    checkLength(st, a, t);
    int64_t s = t.s, i = t.row0 + warp;
    Seq seq = t.seq;
    bool active = i < t.end;
    float *qw = qs + warp * d, *gw = gs + warp * d;
    int64_t at = ((seq.start + i) * a.hq + h) * d;
    for (int64_t c = lane; c < d; c += 32) {
      qw[c] = active ? q[at + c] : 0.0f;
      gw[c] = active ? dout[at + c] : 0.0f;
    }
    float rowLse = active ? lse[lseIndex(a, seq, s, h, i)] : -INFINITY;
    float rowD = active ? dsum[(seq.start + i) * a.hq + h] : 0.0f;
    float acc[kPer];
    for (int c = 0; c < kPer; ++c)
      acc[c] = 0;
    int64_t keyEnd = a.causal ? t.end : seq.len;
    for (int64_t k0 = 0; k0 < keyEnd; k0 += kTileKeys) {
      __syncthreads();
      loadTile(ks, ld, k, seq, k0, a.hkv, kh, d);
      loadTile(vs, ld, v, seq, k0, a.hkv, kh, d);
      __syncthreads();
      if (!active || rowLse == -INFINITY)
        continue;
      int64_t j = k0 + lane;
      bool visible =
          j < seq.len && (!a.causal || j <= i) && keyVisible(a, s, j);
      float ds = 0;
      if (visible) {
        float dot = 0, dp = 0;
        for (int64_t c = 0; c < d; ++c) {
          dot += qw[c] * ks[lane * ld + c];
          dp += gw[c] * vs[lane * ld + c];
        }
        float p = expf(dot * a.scale - rowLse);
        ds = p * (dp - rowD) * a.scale;
      }
      addWeightedRows(acc, ds, ks, ld, d, lane);
    }
    if (!active)
      return;
    for (int u = 0; u < kPer; ++u) {
      int64_t c = lane + 32 * u;
      if (c < d)
        dq[at + c] = acc[u];
    }
  });
}

__global__ void dkdvKernel(AttentionShape a, const float *dout, const float *q,
                           const float *k, const float *v, const float *lse,
                           const float *dsum, float *dk, float *dv) {
  extern __shared__ float smem[];
  int64_t d = a.d, kh = blockIdx.y, group = a.hq / a.hkv;
  int ld = static_cast<int>(d) + 1;
  float *qs = smem, *gs = qs + kTileKeys * ld, *kw0 = gs + kTileKeys * ld,
        *vw0 = kw0 + kWarps * d, *tileLse = vw0 + kWarps * d,
        *tileD = tileLse + kTileKeys;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float *kw = kw0 + warp * d, *vw = vw0 + warp * d;
  forEachTile(a, kWarps, [&](const Tile &t) {
    int64_t s = t.s, key0 = t.row0, j = key0 + warp;
    Seq seq = t.seq;
    bool active = j < t.end && keyVisible(a, s, j);
    int64_t at = ((seq.start + j) * a.hkv + kh) * d;
    for (int64_t c = lane; c < d; c += 32) {
      kw[c] = j < t.end ? k[at + c] : 0.0f;
      vw[c] = j < t.end ? v[at + c] : 0.0f;
    }
    float dkAcc[kPer], dvAcc[kPer];
    for (int u = 0; u < kPer; ++u)
      dkAcc[u] = dvAcc[u] = 0;
    int64_t firstQuery = a.causal ? key0 / kTileKeys * kTileKeys : 0;
    for (int64_t h = kh * group; h < (kh + 1) * group; ++h)
      for (int64_t i0 = firstQuery; i0 < seq.len; i0 += kTileKeys) {
        __syncthreads();
        loadTile(qs, ld, q, seq, i0, a.hq, h, d);
        loadTile(gs, ld, dout, seq, i0, a.hq, h, d);
        if (threadIdx.x < kTileKeys) {
          int64_t i = i0 + threadIdx.x;
          tileLse[threadIdx.x] =
              i < seq.len ? lse[lseIndex(a, seq, s, h, i)] : -INFINITY;
          tileD[threadIdx.x] =
              i < seq.len ? dsum[(seq.start + i) * a.hq + h] : 0.0f;
        }
        __syncthreads();
        if (!active)
          continue;
        int64_t i = i0 + lane;
        float rowLse = tileLse[lane];
        bool visible =
            i < seq.len && (!a.causal || j <= i) && rowLse != -INFINITY;
        float p = 0, ds = 0;
        if (visible) {
          float dot = 0, dp = 0;
          for (int64_t c = 0; c < d; ++c) {
            dot += qs[lane * ld + c] * kw[c];
            dp += gs[lane * ld + c] * vw[c];
          }
          p = expf(dot * a.scale - rowLse);
          ds = p * (dp - tileD[lane]) * a.scale;
        }
        addWeightedRows(dvAcc, p, gs, ld, d, lane);
        addWeightedRows(dkAcc, ds, qs, ld, d, lane);
      }
    if (j >= t.end)
      return;
    for (int u = 0; u < kPer; ++u) {
      int64_t c = lane + 32 * u;
      if (c < d) {
        dk[at + c] = dkAcc[u];
        dv[at + c] = dvAcc[u];
      }
    }
  });
}

size_t forwardSmem(int64_t d) {
  return (2 * kTileKeys * (d + 1) + kWarps * d) * sizeof(float);
}
size_t dqSmem(int64_t d) {
  return (2 * kTileKeys * (d + 1) + 2 * kWarps * d) * sizeof(float);
}
size_t dkdvSmem(int64_t d) {
  return (2 * kTileKeys * (d + 1) + 2 * kWarps * d + 2 * kTileKeys) *
         sizeof(float);
}

void checkShape(const AttentionShape &a) {
  if (a.d > kMaxD)
    throw std::runtime_error(
        "attention: head dimension " + std::to_string(a.d) +
        " is above the CUDA kernel's limit of " + std::to_string(kMaxD));
  if (a.hkv <= 0 || a.hq % a.hkv != 0)
    throw std::runtime_error(
        "attention: query heads must be a multiple of kv heads");
}

} // namespace

void attention(cudaStream_t s, Status st, const AttentionShape &a,
               const float *q, const float *k, const float *v, float *out,
               float *lse) {
  checkShape(a);
  if (a.count == 0 || a.maxLen == 0)
    return;
  size_t smem = forwardSmem(a.d);
  allowSmem(forwardKernel, smem);
  forwardKernel<<<tileGrid(a, a.hq, kWarps), kWarps * 32, smem, s>>>(
      st, a, q, k, v, out, lse);
  TRLC_LAUNCHED();
}

size_t attentionGradScratch(int64_t tokens, int64_t hq) {
  return align256(tokens * hq * sizeof(float));
}

void attentionGrad(cudaStream_t s, Status st, const AttentionShape &a,
                   const float *dout, const float *q, const float *k,
                   const float *v, const float *out, const float *lse,
                   float *dq, float *dk, float *dv, void *scratch) {
  checkShape(a);
  float *dsum = gradPrologue(s, a, {dout}, {out}, dq, dk, dv, scratch);
  if (!dsum)
    return;
  size_t smem = dqSmem(a.d);
  allowSmem(dqKernel, smem);
  dqKernel<<<tileGrid(a, a.hq, kWarps), kWarps * 32, smem, s>>>(
      st, a, dout, q, k, v, lse, dsum, dq);
  TRLC_LAUNCHED();
  smem = dkdvSmem(a.d);
  allowSmem(dkdvKernel, smem);
  dkdvKernel<<<tileGrid(a, a.hkv, kWarps), kWarps * 32, smem, s>>>(
      a, dout, q, k, v, lse, dsum, dk, dv);
  TRLC_LAUNCHED();
}

// --- generation's KV cache ------------------------------------------------

namespace {

/// One block per new token: its row of the cache is overwritten.
__global__ void cacheWriteKernel(Status st, const float *x, Index pos, float *cache,
                                 int64_t perRow, int64_t slots, int64_t row,
                                 int64_t tokens) {
  int64_t t = gridRow();
  if (t >= tokens)
    return;
  long long p = loadIndex(pos, t);
  if (!inRange(st, Status::CacheSlot, p, slots))
    return;
  float *dst = cache + ((t / perRow) * slots + p) * row;
  for (int64_t j = threadIdx.x; j < row; j += blockDim.x)
    dst[j] = x[t * row + j];
}

/// One block per (token, query head): its scores over the visible slots
/// in `scores` (slots floats), a block max and sum, then each thread its
/// output columns. Fixed reduction shapes: deterministic.
__global__ void cachedAttentionKernel(Status st, CachedAttentionShape a, const float *q,
                                      const float *kc, const float *vc, float *out,
                                      float *scores) {
  int64_t id = gridRow();
  if (id >= a.batch * a.tokens * a.hq)
    return;
  int64_t h = id % a.hq, token = id / a.hq, r = token / a.tokens;
  int64_t kh = h / (a.hq / a.hkv);
  long long last = loadIndex(a.positions, token);
  if (!inRange(st, Status::CacheSlot, last, a.slots))
    last = -1;
  const float *qv = q + (token * a.hq + h) * a.d;
  float *p = scores + id * a.slots;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j <= last; j += blockDim.x) {
    float v = -INFINITY;
    if (loadIndex(a.mask, r * a.slots + j) != 0) {
      const float *kv = kc + ((r * a.slots + j) * a.hkv + kh) * a.d;
      float dot = 0;
      for (int64_t c = 0; c < a.d; ++c)
        dot += qv[c] * kv[c];
      v = dot * a.scale;
    }
    p[j] = v;
    mx = fmaxf(mx, v);
  }
  mx = blockMax(mx);
  float *o = out + (token * a.hq + h) * a.d;
  if (mx == -INFINITY) {  // nothing visible
    for (int64_t c = threadIdx.x; c < a.d; c += blockDim.x)
      o[c] = 0.0f;
    return;
  }
  float sum = 0;
  for (int64_t j = threadIdx.x; j <= last; j += blockDim.x) {
    float e = p[j] == -INFINITY ? 0.0f : expf(p[j] - mx);
    p[j] = e;
    sum += e;
  }
  sum = blockSum(sum);
  __syncthreads();  // every p[j] written before any thread reads them all
  for (int64_t c = threadIdx.x; c < a.d; c += blockDim.x) {
    float acc = 0;
    for (int64_t j = 0; j <= last; ++j)
      acc += p[j] * vc[((r * a.slots + j) * a.hkv + kh) * a.d + c];
    o[c] = acc / sum;
  }
}

} // namespace

void cacheWrite(cudaStream_t s, Status st, const float *cache, const float *x, Index pos,
                float *out, int64_t batch, int64_t tokens, int64_t slots, int64_t row) {
  if (out != cache)
    TRLC_CUDA_CHECK(cudaMemcpyAsync(out, cache, batch * slots * row * sizeof(float),
                                    cudaMemcpyDeviceToDevice, s));
  if (batch * tokens == 0)
    return;
  cacheWriteKernel<<<rowGrid(batch * tokens), 128, 0, s>>>(st, x, pos, out, tokens, slots,
                                                           row, batch * tokens);
  TRLC_LAUNCHED();
}

size_t cachedAttentionScratch(int64_t batch, int64_t tokens, int64_t hq, int64_t slots) {
  return align256(batch * tokens * hq * slots * sizeof(float));
}

void cachedAttention(cudaStream_t s, Status st, const CachedAttentionShape &a, const float *q,
                     const float *kc, const float *vc, float *out, void *scratch) {
  int64_t blocks = a.batch * a.tokens * a.hq;
  if (blocks == 0)
    return;
  cachedAttentionKernel<<<rowGrid(blocks), 128, 0, s>>>(st, a, q, kc, vc, out,
                                                        static_cast<float *>(scratch));
  TRLC_LAUNCHED();
}

} // namespace trlc::cuda
