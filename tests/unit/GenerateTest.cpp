//===- GenerateTest.cpp - the KV cache kernels and token picking ----------===//
//
// Decoding with a KV cache must give what recomputing the whole prefix
// gives: every query of a full causal attention equals cached_attention of
// that one query over a cache holding the sequence's keys (cache_write), on
// the CPU backend, padding included. pickToken: greedy is the argmax,
// filters that leave one token (top_k 1, a tiny top_p, min_p 1) agree with
// it, the repetition penalty follows transformers, and a seed fixes the
// samples.
//
//===----------------------------------------------------------------------===//

#include "OpTest.h"
#include "trlc/Generate.h"

#include <gtest/gtest.h>

using namespace trlc;
using namespace trlc::test;

namespace {

constexpr int64_t B = 2, S = 7, HQ = 4, HKV = 2, D = 16;

std::vector<float> values(const Op &op, int t) { return op.values(t); }

TEST(KvCache, CachedAttentionEqualsFullCausalAttention) {
  auto cpu = makeCpuBackend(2);
  double scale = 0.25;
  // Row 1 is padded after 5 tokens.
  std::vector<int64_t> mask(B * S, 1);
  mask[S + 5] = mask[S + 6] = 0;
  Op full("attention", {{"layout", "padded"}, {"causal", true}, {"scale", scale}});
  int q = full.floats({B, S, HQ, D}), k = full.floats({B, S, HKV, D}),
      v = full.floats({B, S, HKV, D}), m = full.i64({B, S}, mask);
  full.in({q, k, v, m, -1}).out({full.output({B, S, HQ, D}), full.output({B, HQ, S})});
  std::vector<float> want = full.runOn(*cpu)[0];

  // The cache: written token by token at slot = position, from a cache of
  // other values.
  std::vector<float> kc, vc;
  for (const char *which : {"k", "v"}) {
    std::vector<float> cache(B * S * HKV * D, 7.0f);
    std::vector<float> src = values(full, which[0] == 'k' ? k : v);
    for (int64_t p = 0; p < S; ++p) {
      Op w("cache_write");
      int c = w.floats({B, S, HKV, D}), x = w.floats({B, 1, HKV, D});
      w.set(c, cache);
      std::vector<float> tok(B * HKV * D);
      for (int64_t r = 0; r < B; ++r)
        std::copy_n(src.begin() + (r * S + p) * HKV * D, HKV * D, tok.begin() + r * HKV * D);
      w.set(x, tok);
      int pos = w.i64({B, 1}, {p, p});
      w.in({c, x, pos}).out({w.output({B, S, HKV, D})});
      cache = w.runOn(*cpu)[0];
    }
    EXPECT_EQ(cache, src) << which << ": the cache holds every token at its position";
    (which[0] == 'k' ? kc : vc) = cache;
  }

  std::vector<float> qs = values(full, q);
  for (int64_t p = 0; p < S; ++p) {
    Op dec("cached_attention", {{"scale", scale}});
    int q1 = dec.floats({B, 1, HQ, D}), kk = dec.floats({B, S, HKV, D}),
        vv = dec.floats({B, S, HKV, D});
    std::vector<float> qp(B * HQ * D);
    for (int64_t r = 0; r < B; ++r)
      std::copy_n(qs.begin() + (r * S + p) * HQ * D, HQ * D, qp.begin() + r * HQ * D);
    dec.set(q1, qp);
    dec.set(kk, kc);
    dec.set(vv, vc);
    int mm = dec.i64({B, S}, mask), pos = dec.i64({B, 1}, {p, p});
    dec.in({q1, kk, vv, mm, pos}).out({dec.output({B, 1, HQ, D})});
    std::vector<float> got = dec.runOn(*cpu)[0];
    for (int64_t r = 0; r < B; ++r)
      for (int64_t i = 0; i < HQ * D; ++i)
        EXPECT_NEAR(got[r * HQ * D + i], want[(r * S + p) * HQ * D + i], 1e-5)
            << "row " << r << " position " << p;
  }
}

TEST(KvCache, PositionOutsideTheCacheIsAnError) {
  auto cpu = makeCpuBackend(1);
  Op w("cache_write");
  int c = w.floats({1, 4, 1, 2}), x = w.floats({1, 1, 1, 2}), pos = w.i64({1, 1}, {4});
  w.in({c, x, pos}).out({w.output({1, 4, 1, 2})});
  EXPECT_THROW(w.runOn(*cpu), KernelError);
}

TEST(PickToken, GreedyAndOneTokenFilters) {
  std::mt19937_64 rng(1);
  std::vector<float> logits{0.5f, 2.0f, -1.0f, 1.9f, 0.0f};
  Sampling greedy;
  greedy.greedy = true;
  EXPECT_EQ(pickToken(logits, {}, greedy, rng), 1);
  for (int variant = 0; variant < 3; ++variant) {
    Sampling s;
    s.topK = variant == 0 ? 1 : 0;
    s.topP = variant == 1 ? 1e-6 : 1.0;
    s.minP = variant == 2 ? 1.0 : 0.0;
    for (int i = 0; i < 20; ++i)
      EXPECT_EQ(pickToken(logits, {}, s, rng), 1) << "variant " << variant;
  }
  // transformers' repetition penalty divides positive logits of seen tokens
  // and multiplies negative ones: 2.0 / 4 = 0.5 < 1.9.
  Sampling pen;
  pen.repetitionPenalty = 4.0;
  pen.topK = 1;
  EXPECT_EQ(pickToken(logits, {1, 1}, pen, rng), 3);
}

TEST(PickToken, SeededSamplesRepeatAndFollowTheDistribution) {
  std::vector<float> logits{0.0f, std::log(3.0f)};  // p = 1/4, 3/4
  Sampling s;
  std::mt19937_64 a(5), b(5);
  int ones = 0;
  for (int i = 0; i < 4000; ++i) {
    int64_t x = pickToken(logits, {}, s, a);
    EXPECT_EQ(x, pickToken(logits, {}, s, b));
    ones += x == 1;
  }
  EXPECT_NEAR(ones / 4000.0, 0.75, 0.03);
  // temperature 0.5 squares the odds: 9:1
  s.temperature = 0.5;
  ones = 0;
  for (int i = 0; i < 4000; ++i)
    ones += pickToken(logits, {}, s, a) == 1;
  EXPECT_NEAR(ones / 4000.0, 0.9, 0.03);
}

} // namespace
