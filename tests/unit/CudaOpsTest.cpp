//===- CudaOpsTest.cpp - every CUDA kernel against the CPU backend
//---------===//
//
// ggml's test-backend-ops for trlc: each kernel of the plan runs on the CPU
// backend (the reference) and on the CUDA backend with the same random
// inputs (never zeros), at several shapes including odd sizes. Outputs and
// scratch are poisoned (NaN bytes) before every run, so a kernel that skips
// an element fails. Relative error in norm: under 1e-2 for the bf16 matrix
// product paths, under 1e-5 for fp32. Skips with a message when no GPU is
// visible.
//
//===----------------------------------------------------------------------===//

#include "OpTest.h"

#include <gtest/gtest.h>

#include <functional>

using namespace trlc;
using namespace trlc::test;

namespace {

class CudaOps : public ::testing::Test {
public:
  void SetUp() override {
    try {
      gpu = makeCudaBackend(0);
    } catch (const KernelError &e) {
      GTEST_SKIP() << "the CUDA op tests need a GPU: " << e.what();
    }
  }

  /// Runs `op` on both backends and compares every output.
  std::vector<std::vector<float>> check(const Op &op, double tol = kF32) {
    std::vector<std::vector<float>> want = op.runOn(*cpu);
    expectClose(op, want, op.runOn(*gpu), tol);
    return want;
  }

  std::unique_ptr<Backend> cpu = makeCpuBackend(2);
  std::unique_ptr<Backend> gpu;
};

TEST_F(CudaOps, Elementwise) {
  for (int64_t n : {1, 1000, 4099}) {
    {
      Op op("fill", {{"value", 0.37}});
      check(op.out({op.output({n})}));
    }
    {
      Op op("add");
      check(op.in({op.floats({n}), op.floats({n})}).out({op.output({n})}));
    }
    {
      Op op("div");
      check(op.in({op.floats({n}), op.floats({}, 0.0, 3.5)})
                .out({op.output({n})}));
    }
    {
      Op op("sqrt");
      check(op.in({op.floats({n}, 1.0, 4.0)}).out({op.output({n})}));
    }
    {
      Op op("swiglu");
      check(op.in({op.floats({n}, 2.0), op.floats({n})}).out({op.output({n})}));
    }
    {
      Op op("swiglu_grad");
      check(op.in({op.floats({n}), op.floats({n}, 2.0), op.floats({n})})
                .out({op.output({n}), op.output({n})}));
    }
    for (const char *approx : {"none", "tanh"}) {
      Op fwd("gelu", {{"approximate", approx}});
      check(fwd.in({fwd.floats({n}, 2.0)}).out({fwd.output({n})}));
      Op bwd("gelu_grad", {{"approximate", approx}});
      check(bwd.in({bwd.floats({n}), bwd.floats({n}, 2.0)})
                .out({bwd.output({n})}));
    }
    {
      Op op("dropout", {{"p", 0.1}, {"stream", 2}});
      check(op.in({op.floats({n}), op.i64({}, {int64_t(42) << 32 | 9})}).out({op.output({n})}));
    }
  }
}

TEST_F(CudaOps, MaskedSum) {
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{1, 1}, {3, 37}, {8, 1000}}) {
    Op fwd("masked_sum");
    check(fwd.in({fwd.floats({rows, cols}), fwd.floats({rows, cols})})
              .out({fwd.output({rows})}));
    Op bwd("masked_sum_grad");
    check(bwd.in({bwd.floats({rows}), bwd.floats({rows, cols})})
              .out({bwd.output({rows, cols})}));
    // One shared row of x (padding-free pairs).
    Op sharedFwd("masked_sum");
    check(sharedFwd.in({sharedFwd.floats({1, cols}), sharedFwd.floats({rows, cols})})
              .out({sharedFwd.output({rows})}));
    Op sharedBwd("masked_sum_grad");
    check(sharedBwd.in({sharedBwd.floats({rows}), sharedBwd.floats({rows, cols})})
              .out({sharedBwd.output({1, cols})}));
  }
}

TEST_F(CudaOps, SplitConcatPackFlat) {
  for (auto [axis, a, b] :
       {std::tuple<int64_t, int64_t, int64_t>{1, 2, 3}, {2, 1, 6}, {0, 1, 2}}) {
    std::vector<int64_t> whole = {3, 5, 7}, pa = whole, pb = whole;
    whole[axis] = a + b;
    pa[axis] = a;
    pb[axis] = b;
    Op split("split", {{"axis", axis}});
    check(split.in({split.floats(whole)})
              .out({split.output(pa), split.output(pb)}));
    Op concat("concat", {{"axis", axis}});
    check(concat.in({concat.floats(pa), concat.floats(pb)})
              .out({concat.output(whole)}));
  }
  Op pack("pack_flat", {{"offsets", {0, 16, 21}}});
  check(pack.in({pack.floats({5}), pack.floats({5}), pack.floats({2, 3})})
            .out({pack.output({32})}));
}

TEST_F(CudaOps, Embedding) {
  for (auto [vocab, h, tokens] :
       {std::tuple<int64_t, int64_t, int64_t>{11, 7, 13}, {1000, 64, 333}}) {
    std::vector<int64_t> ids(tokens);
    for (int64_t &id : ids)
      id = static_cast<int64_t>(rng() % (vocab / 2 + 1)); // repeats
    Op fwd("embedding");
    check(fwd.in({fwd.floats({vocab, h}), fwd.i64({tokens}, ids)})
              .out({fwd.output({tokens, h})}));
    std::vector<int32_t> ids32(ids.begin(), ids.end());
    Op bwd("embedding_grad");
    check(
        bwd.in({bwd.floats({tokens, h}), bwd.ints({tokens}, ids32, DType::I32)})
            .out({bwd.output({vocab, h})}));
  }
}

TEST_F(CudaOps, EmbeddingReportsATokenOutsideTheVocabulary) {
  Op op("embedding");
  op.in({op.floats({11, 4}), op.i64({3}, {1, 50, 2})}).out({op.output({3, 4})});
  try {
    op.runOn(*gpu);
    FAIL() << "expected a KernelError";
  } catch (const KernelError &e) {
    EXPECT_NE(
        std::string(e.what()).find("token id 50 is outside the vocabulary"),
        std::string::npos)
        << e.what();
  }
  // The error is reported once: the next step runs.
  Op ok("embedding");
  check(ok.in({ok.floats({11, 4}), ok.i64({2}, {1, 2})})
            .out({ok.output({2, 4})}));
}

TEST_F(CudaOps, Norms) {
  for (int64_t rows : {1, 5, 300})
    for (int64_t h : {7, 64, 1000}) {
      json attrs = {{"eps", 1e-6}};
      Op rms("rms_norm", attrs);
      check(rms.in({rms.floats({rows, h}), rms.floats({h}, 0.5, 1.0)})
                .out({rms.output({rows, h})}));
      Op rmsGrad("rms_norm_grad", attrs);
      check(rmsGrad
                .in({rmsGrad.floats({rows, h}), rmsGrad.floats({rows, h}),
                     rmsGrad.floats({h}, 0.5, 1.0)})
                .out({rmsGrad.output({rows, h}), rmsGrad.output({h})}));
      Op ln("layer_norm", attrs);
      check(ln.in({ln.floats({rows, h}), ln.floats({h}, 0.5, 1.0),
                   ln.floats({h})})
                .out({ln.output({rows, h})}));
      Op lnGrad("layer_norm_grad", attrs);
      check(lnGrad
                .in({lnGrad.floats({rows, h}), lnGrad.floats({rows, h}),
                     lnGrad.floats({h}, 0.5, 1.0)})
                .out({lnGrad.output({rows, h}), lnGrad.output({h}),
                      lnGrad.output({h})}));
    }
}

TEST_F(CudaOps, LinearInBf16) {
  for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{5, 7, 3},
                         {64, 96, 80},
                         {300, 256, 129}}) {
    for (bool bias : {false, true}) {
      Op fwd("linear");
      std::vector<int> in = {fwd.floats({m, k}), fwd.floats({n, k})};
      if (bias)
        in.push_back(fwd.floats({n}));
      check(fwd.in(in).out({fwd.output({m, n})}), kBf16);
      // The backward: dx, dW into an accumulator, and db.
      Op bwd("linear_grad");
      int acc = bwd.floats({n, k});
      std::vector<int> out = {bwd.output({m, k}), bwd.output({n, k})};
      if (bias)
        out.push_back(bwd.output({n}));
      check(bwd.in({bwd.floats({m, n}), bwd.floats({m, k}), bwd.floats({n, k}),
                    acc})
                .out(out),
            kBf16);
    }
  }
}

/// bf16 storage (trl-mixed-precision): the products, the fused head, the
/// norms, rope and the MLP activations read and write bf16 themselves
/// (attention: AttentionBf16TensorCores); on the CPU every kernel runs on
/// fp32 copies. Both backends round the same way, so the products' bf16
/// tolerance bounds everything.
TEST_F(CudaOps, Bf16Storage) {
  for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{5, 7, 3},
                         {64, 96, 80},
                         {300, 256, 129}}) {
    for (bool bias : {false, true}) {
      Op fwd("linear");
      std::vector<int> in = {fwd.bf16({m, k}), fwd.floats({n, k})};
      if (bias)
        in.push_back(fwd.floats({n}));
      check(fwd.in(in).out({fwd.output({m, n}, false, DType::BF16)}), kBf16);
    }
    Op bwd("linear_grad");
    check(bwd.in({bwd.floats({m, n}), bwd.bf16({m, k}), bwd.floats({n, k})})
              .out({bwd.output({m, k}), bwd.output({n, k})}),
          kBf16);
  }
  for (int64_t n : {3, 1000, 4099}) {
    Op sw("swiglu");
    check(sw.in({sw.bf16({n}), sw.bf16({n})})
              .out({sw.output({n}, false, DType::BF16)}),
          kBf16);
    Op swg("swiglu_grad");
    check(swg.in({swg.floats({n}), swg.bf16({n}), swg.bf16({n})})
              .out({swg.output({n}), swg.output({n})}),
          kBf16);
    Op g("gelu", {{"approximate", "none"}});
    check(g.in({g.bf16({n})}).out({g.output({n}, false, DType::BF16)}), kBf16);
    Op gg("gelu_grad", {{"approximate", "tanh"}});
    check(gg.in({gg.floats({n}), gg.bf16({n})}).out({gg.output({n})}), kBf16);
  }
  // The norms write bf16 outputs; rope reads and writes bf16.
  Op norm("rms_norm", {{"eps", 1e-6}});
  check(norm.in({norm.floats({7, 33}), norm.floats({33})})
            .out({norm.output({7, 33}, false, DType::BF16)}),
        kBf16);
  Op ln("layer_norm", {{"eps", 1e-5}});
  check(
      ln.in({ln.floats({300, 64}), ln.floats({64}, 0.5, 1.0), ln.floats({64})})
          .out({ln.output({300, 64}, false, DType::BF16)}),
      kBf16);
  std::vector<int64_t> pos(37);
  for (size_t t = 0; t < pos.size(); ++t)
    pos[t] = (t * 5) % 23;
  Op rope("rope", {{"theta", 10000.0}, {"inverse", false}});
  check(rope.in({rope.bf16({1, 37, 3, 64}), rope.i64({1, 37}, pos)})
            .out({rope.output({1, 37, 3, 64}, false, DType::BF16)}),
        kBf16);
  // An in-place pair: one bf16 buffer read twice is widened once.
  Op same("swiglu");
  int x = same.bf16({257});
  check(same.in({x, x}).out({same.output({257}, false, DType::BF16)}), kBf16);
  // The fused head over bf16 hidden states.
  Op head("fused_linear_cross_entropy",
          {{"chunk_size", 7}, {"ignore_index", -100}});
  std::vector<int64_t> labels(2 * 9);
  for (size_t i = 0; i < labels.size(); ++i)
    labels[i] = i % 5 == 0 ? -100 : static_cast<int64_t>((i * 13) % 50);
  check(head.in({head.bf16({2, 9, 16}), head.floats({50, 16}, 0.2),
                 head.i64({2, 9}, labels)})
            .out({head.output({})}),
        kBf16);
  Op headGrad("fused_linear_cross_entropy_grad",
              {{"chunk_size", 7}, {"ignore_index", -100}});
  check(headGrad
            .in({headGrad.floats({}, 0.0, 0.5), headGrad.bf16({2, 9, 16}),
                 headGrad.floats({50, 16}, 0.2), headGrad.i64({2, 9}, labels)})
            .out({headGrad.output({2, 9, 16}), headGrad.output({50, 16})}),
        kBf16);
}

TEST_F(CudaOps, Rope) {
  for (bool scaled : {false, true})
    for (bool inverse : {false, true})
      for (auto [tokens, heads, d] :
           {std::tuple<int64_t, int64_t, int64_t>{6, 3, 8}, {37, 2, 64}}) {
        json attrs = {{"theta", 500000.0}, {"inverse", inverse}};
        if (scaled)
          attrs["scaling"] = {{"factor", 8.0},
                              {"low_freq_factor", 1.0},
                              {"high_freq_factor", 4.0},
                              {"original_max_position_embeddings", 16}};
        std::vector<int64_t> pos(tokens);
        for (int64_t t = 0; t < tokens; ++t)
          pos[t] = (t * 7) % 50;
        Op op("rope", attrs);
        check(
            op.in({op.floats({1, tokens, heads, d}), op.i64({1, tokens}, pos)})
                .out({op.output({1, tokens, heads, d})}));
      }
}

/// Forward and backward of one attention layout; the backward takes the
/// CPU forward's output and lse. With `bf16`, q, k, v and the output are
/// stored in bf16 (the tensor-core kernels, for the head dimensions they
/// take) and compared at the bf16 tolerance.
void checkAttention(CudaOps &t, const json &attrs, std::vector<int64_t> q,
                    std::vector<int64_t> kv, std::vector<int64_t> lse,
                    const std::function<int(Op &)> &mask,
                    const std::function<int(Op &)> &cu, bool bf16 = false) {
  AttentionOps ops{attrs, q, kv, lse, mask, cu, bf16};
  Op fwd = ops.forward();
  t.check(ops.backward(t.check(fwd, ops.tolerance())), ops.tolerance());
}

/// Causal varlen attention over the documents at `cu` (6 query heads, 2
/// kv heads of dimension d).
void checkVarlen(CudaOps &t, const std::vector<int32_t> &cu, int64_t d,
                 bool bf16) {
  int64_t tokens = cu.back(), n = cu.size();
  json attrs = {{"layout", "varlen"},
                {"causal", true},
                {"scale", 0.17},
                {"max_seqlen", 79}};
  checkAttention(
      t, attrs, {tokens, 6, d}, {tokens, 2, d}, {6, tokens},
      [](Op &) { return -1; },
      [&](Op &op) { return op.ints({n}, cu, DType::I32); }, bf16);
}

TEST_F(CudaOps, AttentionPaddedGqaWithMask) {
  for (bool causal : {true, false})
    for (auto [s, d] :
         {std::pair<int64_t, int64_t>{5, 16}, {70, 64}, {40, 128}}) {
      json attrs = {{"layout", "padded"},
                    {"causal", causal},
                    {"scale", 1 / std::sqrt(double(d))}};
      std::vector<int64_t> mask(2 * s, 1);
      for (int64_t j = s - 2; j < s; ++j)
        mask[s + j] = 0; // the second row ends in padding
      checkAttention(
          *this, attrs, {2, s, 4, d}, {2, s, 2, d}, {2, 4, s},
          [&](Op &op) {
            return op.i64({2, s}, mask);
          },
          [](Op &) { return -1; });
    }
}

/// The bf16 tensor-core kernels (head dimensions 16, 32, 64, 128) against
/// the CPU on the same bf16 inputs: padded with a key mask and grouped
/// heads, causal or not, rows longer than one 64-row tile and shorter;
/// varlen documents. Head dimension 24 has no tensor-core kernel and runs
/// the fp32 one on widened copies.
TEST_F(CudaOps, AttentionBf16TensorCores) {
  for (bool causal : {true, false})
    for (auto [s, d] : {std::pair<int64_t, int64_t>{5, 16},
                        {70, 64},
                        {130, 128},
                        {33, 32},
                        {9, 24}}) {
      json attrs = {{"layout", "padded"},
                    {"causal", causal},
                    {"scale", 1 / std::sqrt(double(d))}};
      std::vector<int64_t> mask(2 * s, 1);
      for (int64_t j = s - 2; j < s; ++j)
        mask[s + j] = 0;
      checkAttention(
          *this, attrs, {2, s, 4, d}, {2, s, 2, d}, {2, 4, s},
          [&](Op &op) {
            return op.i64({2, s}, mask);
          },
          [](Op &) { return -1; }, true);
    }
  checkVarlen(*this, {0, 3, 70, 71, 150}, 64, true);
  checkVarlen(*this, manyShortDocuments(), 32, true);
}

TEST_F(CudaOps, AttentionVarlenDocuments) {
  checkVarlen(*this, {0, 3, 40, 41, 100}, 32, false);
  checkVarlen(*this, manyShortDocuments(), 32, false);
}

TEST_F(CudaOps, KvCache) {
  Op w("cache_write");
  check(w.in({w.floats({2, 24, 2, 64}), w.floats({2, 3, 2, 64}),
              w.i64({2, 3}, {0, 5, 23, 9, 10, 11})})
            .out({w.output({2, 24, 2, 64})}));
  std::vector<int64_t> mask(2 * 24, 1);
  mask[24 + 20] = mask[24 + 21] = 0;
  Op a("cached_attention", {{"scale", 0.125}});
  check(a.in({a.floats({2, 1, 8, 64}), a.floats({2, 24, 2, 64}), a.floats({2, 24, 2, 64}),
              a.i64({2, 24}, mask), a.i64({2, 1}, {17, 23})})
            .out({a.output({2, 1, 8, 64})}));
}

TEST_F(CudaOps, CrossEntropyAndLogProbs) {
  for (auto [rows, vocab] : {std::pair<int64_t, int64_t>{1, 11}, {37, 5000}}) {
    std::vector<int64_t> labels(rows);
    for (int64_t r = 0; r < rows; ++r)
      labels[r] = r % 5 == 4 ? -100 : static_cast<int64_t>(rng() % vocab);
    json attrs = {{"ignore_index", -100}};
    Op ce("cross_entropy", attrs);
    check(ce.in({ce.floats({rows, vocab}, 3.0), ce.i64({rows}, labels)})
              .out({ce.output({})}));
    Op ceGrad("cross_entropy_grad", attrs);
    check(
        ceGrad
            .in({ceGrad.floats({}, 0.0, 0.25),
                 ceGrad.floats({rows, vocab}, 3.0), ceGrad.i64({rows}, labels)})
            .out({ceGrad.output({rows, vocab})}));
    Op lp("log_probs", attrs);
    check(lp.in({lp.floats({rows, vocab}, 3.0), lp.i64({rows}, labels)})
              .out({lp.output({rows})}));
    Op lpGrad("log_probs_grad", attrs);
    check(lpGrad
              .in({lpGrad.floats({rows}), lpGrad.floats({rows, vocab}, 3.0),
                   lpGrad.i64({rows}, labels)})
              .out({lpGrad.output({rows, vocab})}));
  }
}

TEST_F(CudaOps, FusedLinearLossesInChunks) {
  for (auto [rows, h, vocab, chunk] :
       {std::tuple<int64_t, int64_t, int64_t, int64_t>{5, 7, 11, 2},
        {37, 64, 1000, 16}}) {
    std::vector<int64_t> labels(rows);
    for (int64_t r = 0; r < rows; ++r)
      labels[r] = r % 4 == 3 ? -100 : static_cast<int64_t>(rng() % vocab);
    json attrs = {{"ignore_index", -100}, {"chunk_size", chunk}};
    Op ce("fused_linear_cross_entropy", attrs);
    check(ce.in({ce.floats({rows, h}), ce.floats({vocab, h}, 0.3),
                 ce.i64({rows}, labels)})
              .out({ce.output({})}),
          kBf16);
    Op ceGrad("fused_linear_cross_entropy_grad", attrs);
    check(ceGrad
              .in({ceGrad.floats({}, 0.0, 0.5), ceGrad.floats({rows, h}),
                   ceGrad.floats({vocab, h}, 0.3), ceGrad.i64({rows}, labels)})
              .out({ceGrad.output({rows, h}), ceGrad.output({vocab, h})}),
          kBf16);
    Op lp("fused_linear_log_probs", attrs);
    check(lp.in({lp.floats({rows, h}), lp.floats({vocab, h}, 0.3),
                 lp.i64({rows}, labels)})
              .out({lp.output({rows})}),
          kBf16);
    Op lpGrad("fused_linear_log_probs_grad", attrs);
    check(lpGrad
              .in({lpGrad.floats({rows}), lpGrad.floats({rows, h}),
                   lpGrad.floats({vocab, h}, 0.3), lpGrad.i64({rows}, labels)})
              .out({lpGrad.output({rows, h}), lpGrad.output({vocab, h})}),
          kBf16);
  }
}

TEST_F(CudaOps, PreferenceLosses) {
  struct Case {
    const char *type;
    double smoothing, rpo;
  };
  for (Case c : {Case{"sigmoid", 0.1, 0.0}, Case{"sigmoid", 0.0, 0.7}, Case{"hinge", 0, 0},
                 Case{"ipo", 0, 0}, Case{"robust", 0.2, 0}, Case{"apo_zero", 0, 0},
                 Case{"apo_down", 0, 0.5}})
    for (int64_t n : {1, 9}) {
      json attrs = {{"beta", 0.3}, {"loss_type", c.type}, {"label_smoothing", c.smoothing},
                    {"rpo_alpha", c.rpo}};
      Op dpo("dpo_loss", attrs);
      std::vector<int> in = {dpo.floats({n}, 2.0), dpo.floats({n}, 2.0), dpo.floats({n}, 2.0),
                             dpo.floats({n}, 2.0), dpo.floats({n}, 0.1, 0.2)};
      if (c.rpo > 0)
        in.push_back(dpo.floats({}, 0.0, 0.05));
      check(dpo.in(in).out({dpo.output({}), dpo.output({n}), dpo.output({n})}));
      Op grad("dpo_loss_grad", attrs);
      std::vector<int> gin = {grad.floats({}, 0.0, 0.7), grad.floats({n}, 2.0),
                              grad.floats({n}, 2.0), grad.floats({n}, 2.0),
                              grad.floats({n}, 2.0), grad.floats({n}, 0.1, 0.2)};
      if (c.rpo > 0)
        gin.push_back(grad.floats({}, 0.0, 0.05));
      check(grad.in(gin).out({grad.output({n}), grad.output({n})}));
    }
  std::vector<uint8_t> good = {1, 0, 1, 1, 0};
  for (const char *type : {"kto", "apo_zero_unpaired"}) {
    bool kl = std::string(type) == "kto";
    json attrs = {{"beta", 0.5}, {"desirable_weight", 1.0}, {"undesirable_weight", 1.5},
                  {"loss_type", type}};
    Op kto("kto_loss", attrs);
    std::vector<int> in = {kto.floats({5}), kto.floats({5}), kto.ints({5}, good, DType::Bool),
                           kto.floats({5}, 0.1, 0.2)};
    if (kl)
      in.push_back(kto.floats({}, 0.0, 0.3));
    check(kto.in(in).out({kto.output({}), kto.output({5}), kto.output({})}));
    Op ktoGrad("kto_loss_grad", attrs);
    std::vector<int> gin = {ktoGrad.floats({}, 0.0, 0.5), ktoGrad.floats({5}),
                            ktoGrad.floats({5}), ktoGrad.ints({5}, good, DType::Bool),
                            ktoGrad.floats({5}, 0.1, 0.2)};
    if (kl)
      gin.push_back(ktoGrad.floats({}, 0.0, 0.3));
    check(ktoGrad.in(gin).out({ktoGrad.output({5})}));
  }
  Op klOp("kto_kl", json::object());
  check(klOp.in({klOp.floats({300}), klOp.floats({300}), klOp.floats({300}, 0.01, 0.02)})
            .out({klOp.output({})}));
}

TEST_F(CudaOps, GrpoLossEveryType) {
  for (const char *type : {"grpo", "bnpo", "dr_grpo", "dapo"})
    for (int variant = 0; variant < 3; ++variant) {
      bool ref = variant > 0, sequence = variant == 2;  // GSPO: one ratio per row
      json attrs = {{"epsilon_low", 0.2},
                    {"epsilon_high", 0.28},
                    {"beta", 0.04},
                    {"loss_type", type}};
      if (sequence)
        attrs["sequence_level"] = true;
      auto inputs = [&](Op &op) {
        std::vector<float> mask(3 * 37);
        for (float &m : mask)
          m = rng() % 4 != 0;
        int m = op.floats({3, 37});
        op.set(m, mask);
        std::vector<int> in = {op.floats({3, 37}, 0.3, -1.0),
                               op.floats({3, 37}, 0.3, -1.0), op.floats({3}), m,
                               op.floats({}, 0.0, 90.0)};
        if (ref)
          in.push_back(op.floats({3, 37}, 0.3, -1.0));
        return in;
      };
      Op loss("grpo_loss", attrs);
      check(loss.in(inputs(loss)).out({loss.output({})}));
      Op grad("grpo_loss_grad", attrs);
      std::vector<int> in = inputs(grad);
      in.insert(in.begin(), grad.floats({}, 0.0, 0.8));
      check(grad.in(in).out({grad.output({3, 37})}));
    }
}

TEST_F(CudaOps, PpoLoss) {
  json attrs = {{"cliprange", 0.2}, {"cliprange_value", 0.15}, {"vf_coef", 0.3}};
  auto inputs = [&](Op &op) {
    std::vector<float> mask(3 * 37), vmask(3 * 37);
    for (size_t i = 0; i < mask.size(); ++i) {
      mask[i] = i % 37 >= 5 && i % 37 < 30;
      vmask[i] = i % 37 >= 5 && i % 37 < 31;
    }
    int m = op.floats({3, 37}), vm;
    op.set(m, mask);
    std::vector<int> in = {op.floats({3, 37}, 0.25, -1.0), op.floats({3, 37}, 0.05, -1.0),
                           op.floats({3, 37}), m, op.floats({3, 37}, 0.3, 0.5),
                           op.floats({3, 37}, 0.1, 0.5), op.floats({3, 37})};
    vm = op.floats({3, 37});
    op.set(vm, vmask);
    in.push_back(vm);
    in.push_back(op.floats({}, 0.0, 0.02));
    in.push_back(op.floats({}, 0.0, 0.03));
    return in;
  };
  Op loss("ppo_loss", attrs);
  check(loss.in(inputs(loss)).out({loss.output({})}));
  Op grad("ppo_loss_grad", attrs);
  std::vector<int> in = inputs(grad);
  in.insert(in.begin(), grad.floats({}, 0.0, 0.8));
  check(grad.in(in).out({grad.output({3, 37}), grad.output({3, 37})}));
}

TEST_F(CudaOps, RlooLoss) {
  json attrs = {{"epsilon_low", 0.2}, {"epsilon_high", 0.28}};
  auto inputs = [&](Op &op) {
    std::vector<float> mask(3 * 37);
    for (float &m : mask)
      m = rng() % 4 != 0;
    int m = op.floats({3, 37});
    op.set(m, mask);
    return std::vector<int>{op.floats({3, 37}, 0.05, -0.1), op.floats({3}, 0.5, -2.7),
                            op.floats({3}), m, op.floats({}, 0.0, 9.0)};
  };
  Op loss("rloo_loss", attrs);
  check(loss.in(inputs(loss)).out({loss.output({})}));
  Op grad("rloo_loss_grad", attrs);
  std::vector<int> in = inputs(grad);
  in.insert(in.begin(), grad.floats({}, 0.0, 0.8));
  check(grad.in(in).out({grad.output({3, 37})}));
}

TEST_F(CudaOps, Optimizer) {
  for (bool squared : {false, true}) {
    Op norm("grad_norm", {{"squared", squared}});
    check(
        norm.in({norm.floats({1000}), norm.floats({7}), norm.floats({64, 33})})
            .out({norm.output({})}));
  }
  for (const char *kind : {"constant", "linear", "cosine"})
    for (int64_t step : {0, 1, 6, 9}) {
      Op lr("lr_schedule", {{"schedule", kind},
                            {"base_lr", 2e-4},
                            {"warmup_steps", 2},
                            {"total_steps", 10}});
      check(lr.in({lr.i64({}, {step})}).out({lr.output({})}));
    }
  Op adam(
      "adamw",
      {{"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}, {"weight_decay", 0.1}});
  int p = adam.floats({4099}), m = adam.floats({4099}, 0.1),
      v = adam.floats({4099}, 0.01, 0.05);
  check(adam.in({p, adam.floats({4099}), m, v, adam.floats({}, 0.0, 1e-3),
                 adam.i64({}, {4})})
            .out({p, m, v}));
  // Clipped by a global norm of 3 to 1: the gradient scaled by 1/3.
  Op clipped("adamw", {{"beta1", 0.9},
                       {"beta2", 0.999},
                       {"eps", 1e-8},
                       {"weight_decay", 0.1},
                       {"max_grad_norm", 1.0}});
  int q = clipped.floats({1001}), mq = clipped.floats({1001}, 0.1),
      vq = clipped.floats({1001}, 0.01, 0.05);
  check(clipped
            .in({q, clipped.floats({1001}), mq, vq, clipped.floats({}, 0.0, 1e-3),
                 clipped.i64({}, {4}), clipped.floats({}, 0.0, 3.0)})
            .out({q, mq, vq}));
}

TEST_F(CudaOps, OffloadAndReloadThroughPinnedHostMemory) {
  // x -> host (offload), x overwritten by a later kernel, host -> y
  // (reload), y + y: the copy stream must finish reading x before the
  // fill writes it, and the add must wait for the reload.
  artifact::Plan plan;
  auto desc = [&](bool host) {
    artifact::TensorDesc d;
    d.shape = {1 << 20};
    d.host = host;
    plan.tensors.push_back(d);
    return &plan.tensors.back();
  };
  plan.tensors.reserve(4);
  const artifact::TensorDesc *dx = desc(false), *dh = desc(true),
                             *dy = desc(false), *dz = desc(false);
  int64_t n = 1 << 20, bytes = n * 4;
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; ++i)
    values[i] = static_cast<float>(i % 977) * 0.5f;
  float *x = static_cast<float *>(gpu->allocate(bytes)),
        *y = static_cast<float *>(gpu->allocate(bytes)),
        *z = static_cast<float *>(gpu->allocate(bytes));
  float *h = static_cast<float *>(gpu->allocateHost(bytes));
  gpu->copy(x, values.data(), bytes);
  json none = json::object(), fill = {{"value", -1.0}};
  auto call = [&](const char *k, std::vector<TensorRef> in,
                  std::vector<TensorRef> out, const json &attrs) {
    KernelArgs a;
    a.in = std::move(in);
    a.out = std::move(out);
    a.attrs = &attrs;
    gpu->run(*kernelByName(k), a);
  };
  call("copy", {{x, dx}}, {{h, dh}}, none);
  call("fill", {}, {{x, dx}}, fill);
  call("copy", {{h, dh}}, {{y, dy}}, none);
  call("add", {{y, dy}, {y, dy}}, {{z, dz}}, none);
  std::vector<float> got(n), filled(n);
  gpu->copy(got.data(), z, bytes);
  gpu->copy(filled.data(), x, bytes);
  gpu->synchronize();
  for (int64_t i = 0; i < n; i += 4099)
    ASSERT_EQ(got[i], 2 * values[i]) << "element " << i;
  EXPECT_EQ(filled[5], -1.0f);
  gpu->release(x);
  gpu->release(y);
  gpu->release(z);
  gpu->releaseHost(h);
}

TEST_F(CudaOps, RecordedProgramReplaysWithNewInputs) {
  ASSERT_TRUE(gpu->canRecord());
  artifact::TensorDesc d;
  d.shape = {4099};
  int64_t bytes = d.bytes();
  float *x = static_cast<float *>(gpu->allocate(bytes)),
        *y = static_cast<float *>(gpu->allocate(bytes));
  json none = json::object();
  KernelArgs a;
  a.in = {{x, &d}, {x, &d}};
  a.out = {{y, &d}};
  a.attrs = &none;
  gpu->beginRecording();
  gpu->run(Kernel::Add, a);
  std::string why;
  int id = gpu->endRecording(why);
  ASSERT_GE(id, 0) << why;
  for (float v : {1.5f, -2.0f}) {
    std::vector<float> in(4099, v), out(4099);
    gpu->copy(x, in.data(), bytes);
    gpu->replay(id);
    gpu->copy(out.data(), y, bytes);
    gpu->synchronize();
    EXPECT_EQ(out[0], 2 * v);
    EXPECT_EQ(out[4098], 2 * v);
  }
  gpu->release(x);
  gpu->release(y);
}

} // namespace

/// The CPU backend runs bf16-stored tensors through its fp32 kernels: the
/// result is exactly the fp32 kernel on the widened inputs, rounded.
TEST(Bf16Storage, CpuKernelsWidenAndRound) {
  auto cpu = makeCpuBackend(2);
  for (const char *kernel : {"swiglu", "gelu_grad"}) {
    Op mixed(kernel, {{"approximate", "none"}});
    int a = mixed.bf16({1001}), b = mixed.bf16({1001});
    mixed.in({a, b}).out({mixed.output({1001}, false, DType::BF16)});
    Op wide(kernel, {{"approximate", "none"}});
    wide.in({wide.given({1001}, mixed.values(a)),
             wide.given({1001}, mixed.values(b))})
        .out({wide.output({1001})});
    std::vector<float> got = mixed.runOn(*cpu)[0], want = wide.runOn(*cpu)[0];
    int rounded = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      float w = bf16ToFloat(floatToBf16(want[i]));
      ASSERT_EQ(got[i], w) << kernel << " element " << i;
      rounded += w != want[i];
    }
    EXPECT_GT(rounded, 0) << kernel << ": the result was not rounded to bf16";
  }
}
