//===- attention_bf16.cu - attention on bf16 tensor cores ---*- CUDA -*-===//
//
// attention.cu's flash attention for bf16 q, k and v (trl-mixed-precision
// stores them in bf16), with every product on tensor cores through WMMA
// (16x16x16 bf16 fragments, fp32 accumulation). Same layouts, masks, lse
// and results as attention.cu, for head dimensions 16, 32, 64 and 128;
// other head dimensions run attention.cu on fp32 copies.
//
// A block of kWarps warps owns 64 rows (queries in the forward and dQ, keys
// in dK/dV), 16 per warp; tiles of 64 rows of the other side stream
// through shared memory in bf16. A warp's 16 x 64 product goes from the
// accumulators to shared memory, where its lanes, two per row, apply the
// mask and the softmax in fp32 and write the bf16 tile the next product
// reads:
//   forward  S = Q K^T; online softmax; O = diag(alpha) O + P V, with O in
//            shared memory in fp32 (rescaled there);
//   dQ       S = Q K^T, dP = dO V^T, dS = P (dP - D) scale, dQ += dS K;
//   dK, dV   S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q, over
//            the query tiles of every query head of the kv head's group.
// dQ, dK and dV accumulate in registers and are written once: no atomics,
// so a step is reproducible. P and dS are rounded to bf16 for their
// products, as in FlashAttention-2; everything else is fp32. dO and an
// fp32 q, k or v are rounded to bf16 as their tiles load.
//
//===----------------------------------------------------------------------===//

#include "attention.cuh"

#include <mma.h>

#include <stdexcept>
#include <type_traits>

namespace trlc::cuda {
namespace {

namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;

constexpr int kRows = 16;                  // a warp's rows
constexpr int kWarps = 4;                  // warps per block
constexpr int kBlockRows = kRows * kWarps; // a block's rows
constexpr int kTile = 64;                  // rows of a streamed tile
constexpr int kThreads = kWarps * 32;
constexpr int kLdS = kTile + 4; // fp32 product tiles [16][kLdS]
constexpr int kLdP = kTile + 8; // bf16 probability tiles [16][kLdP]

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBRow =
    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragBCol =
    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

/// Dynamic shared memory cut into 128-byte aligned pieces (WMMA wants 32).
/// On the host, with base 0, it only counts the bytes.
struct Carve {
  uintptr_t base = 0;
  size_t at = 0;
  template <typename T> __host__ __device__ T *take(size_t count) {
    T *p = reinterpret_cast<T *>(base + at);
    at += (count * sizeof(T) + 127) / 128 * 128;
    return p;
  }
};

/// The pieces of each kernel: shared tiles of kTile (or kBlockRows) rows of
/// D + 8 bf16, then per-warp areas ([kWarps][...], a warp takes its slice).
/// `work` holds a warp's fp32 products (one in the forward, two in the
/// backward, where they also stage its [16][D + 4] results at the end).
template <int D> struct Layout {
  static constexpr int ld = D + 8, ldO = D + 4;
  static constexpr int kWork = 2 * kRows * kLdS; // backward, per warp
  static_assert(kRows * ldO <= kWork, "results fit the product tiles");
  bf16 *a, *b, *c, *d; // forward: q, k, v; backward: the four tiles
  float *work, *o, *lse, *dsum;
  bf16 *p, *ds;
  __host__ __device__ Layout(Carve &cv, bool forward) {
    a = cv.take<bf16>(kBlockRows * ld);
    b = cv.take<bf16>(kTile * ld);
    c = cv.take<bf16>(kTile * ld);
    d = forward ? nullptr : cv.take<bf16>(kTile * ld);
    work = cv.take<float>(kWarps * (forward ? kRows * kLdS : kWork));
    o = forward ? cv.take<float>(kWarps * kRows * ldO) : nullptr;
    lse = forward ? nullptr : cv.take<float>(kTile);
    dsum = forward ? nullptr : cv.take<float>(kTile);
    p = cv.take<bf16>(kWarps * kRows * kLdP);
    ds = forward ? nullptr : cv.take<bf16>(kWarps * kRows * kLdP);
  }
  static size_t bytes(bool forward) {
    Carve cv;
    Layout l(cv, forward);
    return cv.at;
  }
};

/// Rows [r0, r0 + 64) of one head of x ([tokens, heads, D]) into a bf16
/// [64][D + 8] tile, zeros past the sequence's end. bf16 rows move 16 bytes
/// at a time when aligned; fp32 (dO) is rounded as it loads.
template <int D>
__device__ void loadTile(bf16 *tile, Floats x, Seq seq, int64_t r0,
                         int64_t heads, int64_t head) {
  constexpr int ld = D + 8;
  if (x.bf16 && (reinterpret_cast<uintptr_t>(x.data) & 15) == 0) {
    constexpr int perRow = D / 8; // 8 bf16 in a uint4
    const auto *src = static_cast<const uint4 *>(x.data);
    for (int e = threadIdx.x; e < kTile * perRow; e += blockDim.x) {
      int j = e / perRow, c = e % perRow;
      int64_t r = r0 + j;
      uint4 val = make_uint4(0, 0, 0, 0);
      if (r < seq.len)
        val = src[((seq.start + r) * heads + head) * perRow + c];
      *reinterpret_cast<uint4 *>(tile + j * ld + c * 8) = val;
    }
    return;
  }
  for (int e = threadIdx.x; e < kTile * D; e += blockDim.x) {
    int j = e / D, c = e % D;
    int64_t r = r0 + j;
    float val =
        r < seq.len ? load(x, ((seq.start + r) * heads + head) * D + c) : 0.0f;
    tile[j * ld + c] = __float2bfloat16_rn(val);
  }
}

/// out[16][64] (ld kLdS) = A B^T: A is 16 rows of D (a warp's rows of a
/// tile), B is a tile of 64 rows of D, the product's columns.
template <int D>
__device__ void scores(const bf16 *a, const bf16 *b, float *out) {
  constexpr int ld = D + 8;
  FragC acc[kTile / 16];
#pragma unroll
  for (int n = 0; n < kTile / 16; ++n)
    wmma::fill_fragment(acc[n], 0.0f);
#pragma unroll
  for (int t = 0; t < D / 16; ++t) {
    FragA af;
    wmma::load_matrix_sync(af, a + t * 16, ld);
#pragma unroll
    for (int n = 0; n < kTile / 16; ++n) {
      FragBCol bf; // B^T: element (dim, row) of B at b[row * ld + dim]
      wmma::load_matrix_sync(bf, b + n * 16 * ld + t * 16, ld);
      wmma::mma_sync(acc[n], af, bf, acc[n]);
    }
  }
#pragma unroll
  for (int n = 0; n < kTile / 16; ++n)
    wmma::store_matrix_sync(out + n * 16, acc[n], kLdS, wmma::mem_row_major);
}

/// acc[t] += P B over a tile: P is a warp's [16][64] bf16 (ld kLdP), B a
/// tile of 64 rows of D; acc[t] covers columns [16 t, 16 t + 16).
template <int D>
__device__ void accumulate(FragC (&acc)[D / 16], const bf16 *p, const bf16 *b) {
  constexpr int ld = D + 8;
#pragma unroll
  for (int kb = 0; kb < kTile / 16; ++kb) {
    FragA pf;
    wmma::load_matrix_sync(pf, p + kb * 16, kLdP);
#pragma unroll
    for (int t = 0; t < D / 16; ++t) {
      FragBRow bf;
      wmma::load_matrix_sync(bf, b + kb * 16 * ld + t * 16, ld);
      wmma::mma_sync(acc[t], pf, bf, acc[t]);
    }
  }
}

/// Writes a warp's 16 rows of fp32 results ([16][D + 4] in `stage`) to
/// rows w0.. of one head of y ([tokens, heads, D]), up to the tile's end;
/// row rr is scaled by lane 2 rr's `scale`.
template <int D>
__device__ void writeRows(const float *stage, FloatsOut y, const Tile &t,
                          int64_t w0, int64_t heads, int64_t head,
                          float scale = 1.0f) {
  int lane = threadIdx.x % 32;
  for (int rr = 0; rr < kRows; ++rr) {
    float f = __shfl_sync(0xffffffffu, scale, 2 * rr);
    if (w0 + rr >= t.end)
      break;
    int64_t at = ((t.seq.start + w0 + rr) * heads + head) * D;
    for (int c = lane; c < D; c += 32)
      store(y, at + c, stage[rr * (D + 4) + c] * f);
  }
}

/// Stores accumulators into `stage` ([16][D + 4]) for writeRows.
template <int D>
__device__ void stageRows(float *stage, const FragC (&acc)[D / 16]) {
#pragma unroll
  for (int t = 0; t < D / 16; ++t)
    wmma::store_matrix_sync(stage + t * 16, acc[t], D + 4, wmma::mem_row_major);
  __syncwarp();
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    forwardKernel(Status st, AttentionShape a, Floats q, Floats k, Floats v,
                  FloatsOut out, float *lse) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int ld = Layout<D>::ld, ldO = Layout<D>::ldO;
  int64_t h = blockIdx.y, kh = h / (a.hq / a.hkv);
  Carve cv{reinterpret_cast<uintptr_t>(smem)};
  Layout<D> L(cv, true);
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float *sw = L.work + warp * kRows * kLdS, *ow = L.o + warp * kRows * ldO;
  bf16 *pw = L.p + warp * kRows * kLdP, *qw = L.a + warp * kRows * ld;
  forEachTile(a, kBlockRows, [&](const Tile &t) {
    checkLength(st, a, t);
    int64_t s = t.s, row0 = t.row0;
    Seq seq = t.seq;
    loadTile<D>(L.a, q, seq, row0, a.hq, h);
    for (int e = lane; e < kRows * ldO; e += 32)
      ow[e] = 0;
    // Lane 2r + half works on the warp's row r, columns 2c + half; both lanes
    // of a pair keep the row's running max and sum.
    int r = lane >> 1, half = lane & 1;
    int64_t w0 = row0 + warp * kRows, i = w0 + r;
    float m = -INFINITY, l = 0;
    int64_t keyEnd = a.causal ? t.end : seq.len;
    for (int64_t k0 = 0; k0 < keyEnd; k0 += kTile) {
      __syncthreads(); // the previous tiles are consumed (and q is loaded)
      loadTile<D>(L.b, k, seq, k0, a.hkv, kh);
      loadTile<D>(L.c, v, seq, k0, a.hkv, kh);
      __syncthreads();
      if (w0 >= t.end || (a.causal && k0 > w0 + kRows - 1))
        continue; // every score of the warp's rows is masked
      scores<D>(qw, L.b, sw);
      __syncwarp();
      // The masked, scaled scores go back over S; then P = exp(S - max).
      float tileMax = -INFINITY;
      for (int c = half; c < kTile; c += 2) {
        int64_t j = k0 + c;
        bool visible = i < t.end && j < seq.len && (!a.causal || j <= i) &&
                       keyVisible(a, s, j);
        float sc = visible ? sw[r * kLdS + c] * a.scale : -INFINITY;
        sw[r * kLdS + c] = sc;
        tileMax = fmaxf(tileMax, sc);
      }
      tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 1));
      float next = fmaxf(m, tileMax);
      float alpha = next == -INFINITY ? 1.0f : expf(m - next); // 0 from -inf
      float sum = 0;
      for (int c = half; c < kTile; c += 2) {
        float sc = sw[r * kLdS + c];
        bf16 p = __float2bfloat16_rn(sc == -INFINITY ? 0.0f : expf(sc - next));
        pw[r * kLdP + c] = p;
        sum += __bfloat162float(p); // the weights P V adds up
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      l = l * alpha + sum;
      m = next;
      if (alpha != 1.0f)
        for (int c = half; c < D; c += 2)
          ow[r * ldO + c] *= alpha;
      __syncwarp();
      FragC acc[D / 16];
#pragma unroll
      for (int t = 0; t < D / 16; ++t)
        wmma::load_matrix_sync(acc[t], ow + t * 16, ldO, wmma::mem_row_major);
      accumulate<D>(acc, pw, L.c);
#pragma unroll
      for (int t = 0; t < D / 16; ++t)
        wmma::store_matrix_sync(ow + t * 16, acc[t], ldO, wmma::mem_row_major);
      __syncwarp();
    }
    if (w0 >= t.end)
      return;
    if (half == 0 && i < t.end)
      lse[lseIndex(a, seq, s, h, i)] = l > 0 ? m + logf(l) : -INFINITY;
    // A row with no visible key has l = 0 and O = 0: output 0.
    writeRows<D>(ow, out, t, w0, a.hq, h, l > 0 ? 1.0f / l : 0.0f);
  });
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    dqKernel(Status st, AttentionShape a, Floats dout, Floats q, Floats k,
             Floats v, const float *lse, const float *dsum, float *dq) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int ld = Layout<D>::ld;
  int64_t h = blockIdx.y, kh = h / (a.hq / a.hkv);
  Carve cv{reinterpret_cast<uintptr_t>(smem)};
  Layout<D> L(cv, false); // a: q, d: dO, b: k, c: v
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float *sw = L.work + warp * Layout<D>::kWork, *dpw = sw + kRows * kLdS;
  bf16 *dsw = L.ds + warp * kRows * kLdP;
  const bf16 *qw = L.a + warp * kRows * ld, *gw = L.d + warp * kRows * ld;
  forEachTile(a, kBlockRows, [&](const Tile &t) {
    checkLength(st, a, t);
    int64_t s = t.s, row0 = t.row0;
    Seq seq = t.seq;
    loadTile<D>(L.a, q, seq, row0, a.hq, h);
    loadTile<D>(L.d, dout, seq, row0, a.hq, h);
    int r = lane >> 1, half = lane & 1;
    int64_t w0 = row0 + warp * kRows, i = w0 + r;
    float rowLse = i < t.end ? lse[lseIndex(a, seq, s, h, i)] : -INFINITY;
    float rowD = i < t.end ? dsum[(seq.start + i) * a.hq + h] : 0.0f;
    FragC acc[D / 16];
#pragma unroll
    for (int t = 0; t < D / 16; ++t)
      wmma::fill_fragment(acc[t], 0.0f);
    int64_t keyEnd = a.causal ? t.end : seq.len;
    for (int64_t k0 = 0; k0 < keyEnd; k0 += kTile) {
      __syncthreads();
      loadTile<D>(L.b, k, seq, k0, a.hkv, kh);
      loadTile<D>(L.c, v, seq, k0, a.hkv, kh);
      __syncthreads();
      if (w0 >= t.end || (a.causal && k0 > w0 + kRows - 1))
        continue;
      scores<D>(qw, L.b, sw);
      scores<D>(gw, L.c, dpw);
      __syncwarp();
      for (int col = half; col < kTile; col += 2) {
        int64_t j = k0 + col;
        bool visible = rowLse != -INFINITY && j < seq.len &&
                       (!a.causal || j <= i) && keyVisible(a, s, j);
        float ds = 0;
        if (visible) {
          float p = expf(sw[r * kLdS + col] * a.scale - rowLse);
          ds = p * (dpw[r * kLdS + col] - rowD) * a.scale;
        }
        dsw[r * kLdP + col] = __float2bfloat16_rn(ds);
      }
      __syncwarp();
      accumulate<D>(acc, dsw, L.b);
    }
    if (w0 >= t.end)
      return;
    stageRows<D>(sw, acc);
    writeRows<D>(sw, FloatsOut{dq, false}, t, w0, a.hq, h);
  });
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    dkdvKernel(AttentionShape a, Floats dout, Floats q, Floats k, Floats v,
               const float *lse, const float *dsum, float *dk, float *dv) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int ld = Layout<D>::ld;
  int64_t kh = blockIdx.y, group = a.hq / a.hkv;
  Carve cv{reinterpret_cast<uintptr_t>(smem)};
  Layout<D> L(cv, false); // a: the block's k, d: its v, b: q, c: dO
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float *sw = L.work + warp * Layout<D>::kWork, *dpw = sw + kRows * kLdS;
  bf16 *pw = L.p + warp * kRows * kLdP, *dsw = L.ds + warp * kRows * kLdP;
  const bf16 *kw = L.a + warp * kRows * ld, *vw = L.d + warp * kRows * ld;
  forEachTile(a, kBlockRows, [&](const Tile &t) {
    int64_t s = t.s, key0 = t.row0;
    Seq seq = t.seq;
    loadTile<D>(L.a, k, seq, key0, a.hkv, kh);
    loadTile<D>(L.d, v, seq, key0, a.hkv, kh);
    int r = lane >> 1, half = lane & 1;
    int64_t w0 = key0 + warp * kRows, j = w0 + r;
    bool keyOk = j < t.end && keyVisible(a, s, j); // else no gradient
    FragC dkAcc[D / 16], dvAcc[D / 16];
#pragma unroll
    for (int t = 0; t < D / 16; ++t) {
      wmma::fill_fragment(dkAcc[t], 0.0f);
      wmma::fill_fragment(dvAcc[t], 0.0f);
    }
    int64_t firstQuery = a.causal ? key0 : 0; // queries before key0 see none
    for (int64_t h = kh * group; h < (kh + 1) * group; ++h)
      for (int64_t i0 = firstQuery; i0 < seq.len; i0 += kTile) {
        __syncthreads();
        loadTile<D>(L.b, q, seq, i0, a.hq, h);
        loadTile<D>(L.c, dout, seq, i0, a.hq, h);
        if (threadIdx.x < kTile) {
          int64_t i = i0 + threadIdx.x;
          L.lse[threadIdx.x] =
              i < seq.len ? lse[lseIndex(a, seq, s, h, i)] : -INFINITY;
          L.dsum[threadIdx.x] =
              i < seq.len ? dsum[(seq.start + i) * a.hq + h] : 0.0f;
        }
        __syncthreads();
        if (w0 >= t.end)
          continue;
        scores<D>(kw, L.b, sw);  // S^T
        scores<D>(vw, L.c, dpw); // dP^T
        __syncwarp();
        for (int col = half; col < kTile; col += 2) {
          int64_t i = i0 + col;
          float rowLse = L.lse[col];
          bool visible = keyOk && i < seq.len && (!a.causal || j <= i) &&
                         rowLse != -INFINITY;
          float p = 0, ds = 0;
          if (visible) {
            p = expf(sw[r * kLdS + col] * a.scale - rowLse);
            ds = p * (dpw[r * kLdS + col] - L.dsum[col]) * a.scale;
          }
          pw[r * kLdP + col] = __float2bfloat16_rn(p);
          dsw[r * kLdP + col] = __float2bfloat16_rn(ds);
        }
        __syncwarp();
        accumulate<D>(dvAcc, pw, L.c);
        accumulate<D>(dkAcc, dsw, L.b);
      }
    if (w0 >= t.end)
      return;
    stageRows<D>(sw, dvAcc);
    writeRows<D>(sw, FloatsOut{dv, false}, t, w0, a.hkv, kh);
    __syncwarp();
    stageRows<D>(sw, dkAcc);
    writeRows<D>(sw, FloatsOut{dk, false}, t, w0, a.hkv, kh);
  });
}

/// Calls fn with std::integral_constant<int, d>.
template <typename Fn> void withHeadDim(int64_t d, Fn &&fn) {
  switch (d) {
  case 16:
    return fn(std::integral_constant<int, 16>{});
  case 32:
    return fn(std::integral_constant<int, 32>{});
  case 64:
    return fn(std::integral_constant<int, 64>{});
  case 128:
    return fn(std::integral_constant<int, 128>{});
  }
  throw std::runtime_error("attention (bf16): no tensor-core kernel for head "
                           "dimension " +
                           std::to_string(d));
}

void checkHeads(const AttentionShape &a) {
  if (a.hkv <= 0 || a.hq % a.hkv != 0)
    throw std::runtime_error(
        "attention: query heads must be a multiple of kv heads");
}

} // namespace

bool attentionBf16Supports(int64_t d) {
  return d == 16 || d == 32 || d == 64 || d == 128;
}

void attentionBf16(cudaStream_t s, Status st, const AttentionShape &a, Floats q,
                   Floats k, Floats v, FloatsOut out, float *lse) {
  checkHeads(a);
  if (a.count == 0 || a.maxLen == 0)
    return;
  withHeadDim(a.d, [&](auto dim) {
    constexpr int D = decltype(dim)::value;
    size_t smem = Layout<D>::bytes(true);
    allowSmem(forwardKernel<D>, smem);
    forwardKernel<D><<<tileGrid(a, a.hq, kBlockRows), kThreads, smem, s>>>(
        st, a, q, k, v, out, lse);
    TRLC_LAUNCHED();
  });
}

void attentionBf16Grad(cudaStream_t s, Status st, const AttentionShape &a,
                       Floats dout, Floats q, Floats k, Floats v, Floats out,
                       const float *lse, float *dq, float *dk, float *dv,
                       void *scratch) {
  checkHeads(a);
  float *dsum = gradPrologue(s, a, dout, out, dq, dk, dv, scratch);
  if (!dsum)
    return;
  withHeadDim(a.d, [&](auto dim) {
    constexpr int D = decltype(dim)::value;
    size_t smem = Layout<D>::bytes(false);
    allowSmem(dqKernel<D>, smem);
    dqKernel<D><<<tileGrid(a, a.hq, kBlockRows), kThreads, smem, s>>>(
        st, a, dout, q, k, v, lse, dsum, dq);
    TRLC_LAUNCHED();
    allowSmem(dkdvKernel<D>, smem);
    dkdvKernel<D><<<tileGrid(a, a.hkv, kBlockRows), kThreads, smem, s>>>(
        a, dout, q, k, v, lse, dsum, dk, dv);
    TRLC_LAUNCHED();
  });
}

} // namespace trlc::cuda
