//===- attention.cpp - causal attention, padded or varlen -----------------===//
//
// One (sequence, head) per iteration of a parallel loop; each thread makes
// its own single-threaded products into its slice of the call's scratch.
// The forward saves the log-sum-exp per query [.., heads, tokens] that the
// backward normalises with.
//
//===----------------------------------------------------------------------===//

#include "cpu/common.h"

namespace trlc::cpu {

namespace {

/// The sequences of an attention call: padded rows or varlen documents.
struct Sequences {
  bool varlen = false;
  int64_t count = 0, rowLength = 0, totalTokens = 0;
  const TensorRef *mask = nullptr, *cu = nullptr;
  int64_t start(int64_t s) const { return varlen ? index(*cu, s) : s * rowLength; }
  int64_t length(int64_t s) const {
    return varlen ? index(*cu, s + 1) - index(*cu, s) : rowLength;
  }
  bool keyVisible(int64_t s, int64_t j) const {
    return !mask || !*mask || index(*mask, s * rowLength + j) != 0;
  }
  int64_t lseIndex(int64_t s, int64_t h, int64_t i, int64_t heads) const {
    return varlen ? h * totalTokens + start(s) + i : (s * heads + h) * rowLength + i;
  }
};

Sequences sequences(const KernelArgs &a, const TensorRef &q, int maskArg) {
  Sequences s;
  s.varlen = attrS(a, "layout") == "varlen";
  if (s.varlen) {
    s.cu = &a.in[maskArg + 1];
    s.count = s.cu->numel() - 1;
    s.totalTokens = q.dim(0);
  } else {
    s.count = q.dim(0);
    s.rowLength = q.dim(1);
    s.totalTokens = s.count * s.rowLength;
    if (a.in[maskArg])
      s.mask = &a.in[maskArg];
  }
  return s;
}

/// Softmax probabilities of one (sequence, head): P = softmax(scale Q K^T)
/// over the visible keys, in `p` [len, len] (rows of invisible keys are 0).
/// With `lse` given (backward), the saved log-sum-exp normalises instead.
template <typename T>
void probabilities(const Sequences &seq, int64_t s, int64_t len, bool causal,
                   T *p, T *lse, bool useLse) {
  const T inf = std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < len; ++i) {
    T *row = p + i * len;
    int64_t last = causal ? i : len - 1;
    T mx = -inf;
    for (int64_t j = 0; j <= last; ++j)
      if (seq.keyVisible(s, j))
        mx = std::max(mx, row[j]);
    else
        row[j] = -inf;
    for (int64_t j = last + 1; j < len; ++j)
      row[j] = 0;
    if (mx == -inf) {  // no visible key: the row attends to nothing
      std::fill(row, row + len, T(0));
      if (!useLse)
        lse[i] = -inf;
      continue;
    }
    T l;
    if (useLse) {
      l = lse[i];
    } else {
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j <= last; ++j)
        sum += row[j] == -inf ? T(0) : vexp(row[j] - mx);
      l = mx + std::log(sum);
      lse[i] = l;
    }
#pragma omp simd
    for (int64_t j = 0; j <= last; ++j)
      row[j] = row[j] == -inf ? T(0) : vexp(row[j] - l);
  }
}

/// The scratch of a varlen call is sized by its `max_seqlen`: a longer
/// document (bad cu_seqlens) is an error, not an overrun.
void checkMaxSeqlen(const KernelArgs &a, const Sequences &seq, int64_t maxLen) {
  if (!seq.varlen || !a.attrs->contains("max_seqlen"))
    return;
  int64_t bound = (*a.attrs)["max_seqlen"].get<int64_t>();
  if (maxLen > bound)
    throw KernelError("attention: a document of " + std::to_string(maxLen) +
                      " tokens exceeds max_seqlen " + std::to_string(bound) +
                      " (cu_seqlens does not match the plan)");
}

} // namespace

/// Attention by matrix products per (sequence, head): S = scale Q K^T,
/// P = softmax(S) masked, O = P V. Threads take (sequence, head) pairs;
/// each makes its own single-threaded products into its scratch.
template <typename T> void attention(const KernelArgs &a) {
  const TensorRef &q = a.in[0], &k = a.in[1], &v = a.in[2];
  Sequences seq = sequences(a, q, 3);
  int64_t d = q.dim(-1), hq = q.dim(-2), hkv = k.dim(-2), group = hq / hkv;
  bool causal = attrB(a, "causal");
  T scale = static_cast<T>(attrF(a, "scale"));
  T *out = a.out[0].as<T>(), *lse = a.out[1].as<T>();
  int64_t maxLen = 0;
  for (int64_t s = 0; s < seq.count; ++s)
    maxLen = std::max(maxLen, seq.length(s));
  checkMaxSeqlen(a, seq, maxLen);
  withSerialBlas([&] {
#pragma omp parallel
    {
      T *p = static_cast<T *>(a.scratch) + omp_get_thread_num() * (maxLen * maxLen + maxLen);
      T *rowLse = p + maxLen * maxLen;
#pragma omp for schedule(static) collapse(2)
      for (int64_t s = 0; s < seq.count; ++s)
        for (int64_t h = 0; h < hq; ++h) {
          int64_t base = seq.start(s), len = seq.length(s), kh = h / group;
          if (len == 0)
            continue;
          const T *qh = q.as<T>() + (base * hq + h) * d;
          const T *kk = k.as<T>() + (base * hkv + kh) * d;
          const T *vk = v.as<T>() + (base * hkv + kh) * d;
          gemm<T>(false, true, len, len, d, qh, hq * d, kk, hkv * d, T(0), p, len, scale);
          probabilities(seq, s, len, causal, p, rowLse, false);
          gemm<T>(false, false, len, d, len, p, len, vk, hkv * d, T(0),
                  out + (base * hq + h) * d, hq * d);
          for (int64_t i = 0; i < len; ++i)
            lse[seq.lseIndex(s, h, i, hq)] = rowLse[i];
        }
    }
  });
}

/// dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO O)) scale, dQ = dS K,
/// dK = dS^T Q. One thread owns a (sequence, kv head): the dk and dv rows of
/// its query-head group are summed by no one else, in a fixed order.
template <typename T> void attentionGrad(const KernelArgs &a) {
  const TensorRef &dout = a.in[0], &q = a.in[1], &k = a.in[2], &v = a.in[3],
                  &o = a.in[4], &lse = a.in[5];
  Sequences seq = sequences(a, q, 6);
  int64_t d = q.dim(-1), hq = q.dim(-2), hkv = k.dim(-2), group = hq / hkv;
  bool causal = attrB(a, "causal");
  T scale = static_cast<T>(attrF(a, "scale"));
  T *dq = a.out[0].as<T>(), *dk = a.out[1].as<T>(), *dv = a.out[2].as<T>();
  std::memset(dk, 0, a.out[1].desc->bytes());
  std::memset(dv, 0, a.out[2].desc->bytes());
  int64_t maxLen = 0;
  for (int64_t s = 0; s < seq.count; ++s)
    maxLen = std::max(maxLen, seq.length(s));
  checkMaxSeqlen(a, seq, maxLen);
  withSerialBlas([&] {
#pragma omp parallel
    {
      T *p = static_cast<T *>(a.scratch) + omp_get_thread_num() * (2 * maxLen * maxLen + maxLen);
      T *dp = p + maxLen * maxLen, *rowLse = dp + maxLen * maxLen;
#pragma omp for schedule(static) collapse(2)
      for (int64_t s = 0; s < seq.count; ++s)
        for (int64_t kh = 0; kh < hkv; ++kh) {
          int64_t base = seq.start(s), len = seq.length(s);
          if (len == 0)
            continue;
          const T *kk = k.as<T>() + (base * hkv + kh) * d;
          const T *vk = v.as<T>() + (base * hkv + kh) * d;
          T *dkk = dk + (base * hkv + kh) * d, *dvk = dv + (base * hkv + kh) * d;
          for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {
            const T *qh = q.as<T>() + (base * hq + h) * d;
            const T *gh = dout.as<T>() + (base * hq + h) * d;
            const T *oh = o.as<T>() + (base * hq + h) * d;
            for (int64_t i = 0; i < len; ++i)
              rowLse[i] = lse.as<T>()[seq.lseIndex(s, h, i, hq)];
            gemm<T>(false, true, len, len, d, qh, hq * d, kk, hkv * d, T(0), p, len, scale);
            probabilities(seq, s, len, causal, p, rowLse, true);
            gemm<T>(true, false, len, d, len, p, len, gh, hq * d, T(1), dvk, hkv * d);
            gemm<T>(false, true, len, len, d, gh, hq * d, vk, hkv * d, T(0), dp, len);
            for (int64_t i = 0; i < len; ++i) {
              T di = 0;
#pragma omp simd reduction(+ : di)
              for (int64_t c = 0; c < d; ++c)
                di += gh[i * hq * d + c] * oh[i * hq * d + c];
              T *pr = p + i * len, *dpr = dp + i * len;
#pragma omp simd
              for (int64_t j = 0; j < len; ++j)
                dpr[j] = pr[j] * (dpr[j] - di) * scale;
            }
            gemm<T>(false, false, len, d, len, dp, len, kk, hkv * d, T(0),
                    dq + (base * hq + h) * d, hq * d);
            gemm<T>(true, false, len, d, len, dp, len, qh, hq * d, T(1), dkk, hkv * d);
          }
        }
    }
  });
}

namespace {
/// Slot of token (b, s) of a cache call: its position, which must lie in
/// the cache.
int64_t cacheSlot(const TensorRef &positions, int64_t i, int64_t slots, const char *kernel) {
  int64_t p = index(positions, i);
  if (p < 0 || p >= slots)
    throw KernelError(std::string(kernel) + ": position " + std::to_string(p) +
                      " is outside the cache's " + std::to_string(slots) + " slots");
  return p;
}
} // namespace

/// cache [B, T, H, D] with x [B, S, H, D] written at slots positions [B, S];
/// the output is the cache itself when planned in place.
template <typename T> void cacheWrite(const KernelArgs &a) {
  const TensorRef &cache = a.in[0], &x = a.in[1], &pos = a.in[2];
  T *out = a.out[0].as<T>();
  int64_t b = cache.dim(0), slots = cache.dim(1), s = x.dim(1);
  int64_t row = cache.dim(2) * cache.dim(3);
  if (out != cache.as<T>())
    std::memcpy(out, cache.as<T>(), cache.numel() * sizeof(T));
  for (int64_t r = 0; r < b; ++r)
    for (int64_t t = 0; t < s; ++t) {
      int64_t slot = cacheSlot(pos, r * s + t, slots, "cache_write");
      std::memcpy(out + (r * slots + slot) * row, x.as<T>() + (r * s + t) * row,
                  row * sizeof(T));
    }
}

/// Queries [B, S, Hq, D] over the cache's visible slots (mask, and slot <=
/// the query's position). One (row, query head) per loop iteration; the
/// scores of one query live in the thread's scratch row of T.
template <typename T> void cachedAttention(const KernelArgs &a) {
  const TensorRef &q = a.in[0], &kc = a.in[1], &vc = a.in[2], &mask = a.in[3],
                  &pos = a.in[4];
  int64_t b = q.dim(0), s = q.dim(1), hq = q.dim(2), d = q.dim(3);
  int64_t slots = kc.dim(1), hkv = kc.dim(2), group = hq / hkv;
  T scale = static_cast<T>(attrF(a, "scale"));
  T *out = a.out[0].as<T>();
  for (int64_t i = 0; i < b * s; ++i)
    cacheSlot(pos, i, slots, "cached_attention");
  const T inf = std::numeric_limits<T>::infinity();
#pragma omp parallel
  {
    T *p = static_cast<T *>(a.scratch) + omp_get_thread_num() * slots;
#pragma omp for schedule(static) collapse(2)
    for (int64_t r = 0; r < b; ++r)
      for (int64_t h = 0; h < hq; ++h)
        for (int64_t t = 0; t < s; ++t) {
          const T *qv = q.as<T>() + ((r * s + t) * hq + h) * d;
          T *o = out + ((r * s + t) * hq + h) * d;
          int64_t last = index(pos, r * s + t), kh = h / group;
          T mx = -inf;
          for (int64_t j = 0; j <= last; ++j) {
            if (index(mask, r * slots + j) == 0) {
              p[j] = -inf;
              continue;
            }
            const T *kv = kc.as<T>() + ((r * slots + j) * hkv + kh) * d;
            T dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int64_t c = 0; c < d; ++c)
              dot += qv[c] * kv[c];
            p[j] = dot * scale;
            mx = std::max(mx, p[j]);
          }
          std::fill(o, o + d, T(0));
          if (mx == -inf)  // nothing visible: the query attends to nothing
            continue;
          T sum = 0;
          for (int64_t j = 0; j <= last; ++j) {
            p[j] = p[j] == -inf ? T(0) : vexp(p[j] - mx);
            sum += p[j];
          }
          for (int64_t j = 0; j <= last; ++j) {
            if (p[j] == 0)
              continue;
            const T *vv = vc.as<T>() + ((r * slots + j) * hkv + kh) * d;
            T w = p[j] / sum;
#pragma omp simd
            for (int64_t c = 0; c < d; ++c)
              o[c] += w * vv[c];
          }
        }
  }
}

TRLC_CPU_KERNEL(attention)
TRLC_CPU_KERNEL(attentionGrad)
TRLC_CPU_KERNEL(cacheWrite)
TRLC_CPU_KERNEL(cachedAttention)

} // namespace trlc::cpu
