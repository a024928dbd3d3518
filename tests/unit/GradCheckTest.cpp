//===- GradCheckTest.cpp - every backward kernel against finite differences ===//
//
// In float64: for each op, L = sum_k <w_k, out_k> with random weights w
// over its differentiable outputs; the backward kernel's operand gradients
// (fed dy = w) must match central differences of L in every element.
//
//===----------------------------------------------------------------------===//

#include "trlc/Backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

using namespace trlc;
using artifact::DType;
using nlohmann::json;

namespace {

struct Buf {
  artifact::TensorDesc desc;
  std::vector<double> f;     // float data
  std::vector<int64_t> i;    // index data
  std::vector<uint8_t> b;    // bool data
  TensorRef ref() {
    void *p = desc.dtype == DType::F64 ? static_cast<void *>(f.data())
              : desc.dtype == DType::I64 ? static_cast<void *>(i.data())
                                         : static_cast<void *>(b.data());
    return {p, &desc};
  }
};

std::mt19937_64 rng(1234);

Buf floats(std::vector<int64_t> shape, double scale = 1.0, double offset = 0.0) {
  Buf t;
  t.desc.shape = shape;
  t.desc.dtype = DType::F64;
  std::normal_distribution<double> n(0, 1);
  t.f.resize(t.desc.numel());
  for (double &v : t.f)
    v = offset + scale * n(rng);
  return t;
}

Buf zeros(std::vector<int64_t> shape) { return floats(shape, 0.0); }

Buf ints(std::vector<int64_t> shape, std::vector<int64_t> values) {
  Buf t;
  t.desc.shape = shape;
  t.desc.dtype = DType::I64;
  t.i = values;
  return t;
}

Buf bools(std::vector<uint8_t> values) {
  Buf t;
  t.desc.shape = {static_cast<int64_t>(values.size())};
  t.desc.dtype = DType::Bool;
  t.b = values;
  return t;
}

class GradCheck : public ::testing::Test {
protected:
  std::unique_ptr<Backend> cpu = makeCpuBackend(2);
  std::vector<double> scratch = std::vector<double>(1 << 20);

  void run(const std::string &kernel, std::vector<Buf *> in, std::vector<Buf *> out,
           const json &attrs) {
    KernelArgs a;
    for (Buf *b : in)
      a.in.push_back(b ? b->ref() : TensorRef{});
    for (Buf *b : out)
      a.out.push_back(b->ref());
    a.attrs = &attrs;
    a.scratch = scratch.data();
    cpu->run(*kernelByName(kernel), a);
  }

  /// `forward` fills `outs` from `ins`; `backward` gets dy (one per output,
  /// weights of L) and returns the gradient of every input listed in `wrt`.
  void check(std::vector<Buf> &ins, std::vector<Buf> &outs,
             const std::function<void()> &forward,
             const std::function<std::vector<Buf>(std::vector<Buf> &)> &backward,
             std::vector<int> wrt, std::vector<int> lossOutputs = {0},
             double tol = 1e-6) {
    forward();
    std::vector<Buf> dys;
    for (Buf &o : outs)
      dys.push_back(floats(o.desc.shape));
    for (size_t k = 0; k < outs.size(); ++k)
      if (std::find(lossOutputs.begin(), lossOutputs.end(), k) == lossOutputs.end())
        std::fill(dys[k].f.begin(), dys[k].f.end(), 0.0);
    std::vector<Buf> grads = backward(dys);
    ASSERT_EQ(grads.size(), wrt.size());
    auto loss = [&]() {
      forward();
      double l = 0;
      for (int k : lossOutputs)
        for (size_t e = 0; e < outs[k].f.size(); ++e)
          l += dys[k].f[e] * outs[k].f[e];
      return l;
    };
    for (size_t n = 0; n < wrt.size(); ++n) {
      Buf &x = ins[wrt[n]];
      double err = 0, norm = 0;
      for (size_t e = 0; e < x.f.size(); ++e) {
        double keep = x.f[e], h = 1e-6 * std::max(1.0, std::fabs(keep));
        x.f[e] = keep + h;
        double lp = loss();
        x.f[e] = keep - h;
        double lm = loss();
        x.f[e] = keep;
        double fd = (lp - lm) / (2 * h);
        err += (fd - grads[n].f[e]) * (fd - grads[n].f[e]);
        norm += fd * fd;
      }
      EXPECT_LE(std::sqrt(err), tol * std::max(1.0, std::sqrt(norm)))
          << "gradient of input " << wrt[n] << ": error norm " << std::sqrt(err)
          << ", gradient norm " << std::sqrt(norm);
    }
  }
};

TEST_F(GradCheck, Embedding) {
  std::vector<Buf> in = {floats({5, 3}), ints({2, 3}, {0, 4, 4, 1, 0, 2})};
  std::vector<Buf> out = {zeros({2, 3, 3})};
  check(in, out, [&] { run("embedding", {&in[0], &in[1]}, {&out[0]}, {}); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({5, 3})};
          run("embedding_grad", {&dy[0], &in[1]}, {&g[0]}, {});
          return g;
        }, {0});
}

TEST_F(GradCheck, RmsNorm) {
  std::vector<Buf> in = {floats({3, 4, 6}), floats({6}, 0.5, 1.0)};
  std::vector<Buf> out = {zeros({3, 4, 6})};
  json attrs = {{"eps", 1e-6}};
  check(in, out, [&] { run("rms_norm", {&in[0], &in[1]}, {&out[0]}, attrs); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({3, 4, 6}), zeros({6})};
          run("rms_norm_grad", {&dy[0], &in[0], &in[1]}, {&g[0], &g[1]}, attrs);
          return g;
        }, {0, 1});
}

TEST_F(GradCheck, LayerNorm) {
  std::vector<Buf> in = {floats({5, 6}), floats({6}, 0.5, 1.0), floats({6})};
  std::vector<Buf> out = {zeros({5, 6})};
  json attrs = {{"eps", 1e-5}};
  check(in, out, [&] { run("layer_norm", {&in[0], &in[1], &in[2]}, {&out[0]}, attrs); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({5, 6}), zeros({6}), zeros({6})};
          run("layer_norm_grad", {&dy[0], &in[0], &in[1]}, {&g[0], &g[1], &g[2]}, attrs);
          return g;
        }, {0, 1, 2});
}

TEST_F(GradCheck, LinearWithAndWithoutBias) {
  for (bool bias : {false, true}) {
    std::vector<Buf> in = {floats({2, 3, 4}), floats({5, 4}), floats({5})};
    std::vector<Buf> out = {zeros({2, 3, 5})};
    Buf *b = bias ? &in[2] : nullptr;
    check(in, out,
          [&] {
            std::vector<Buf *> args = {&in[0], &in[1]};
            if (b) args.push_back(b);
            run("linear", args, {&out[0]}, {});
          },
          [&](std::vector<Buf> &dy) {
            std::vector<Buf> g = {zeros({2, 3, 4}), zeros({5, 4}), zeros({5})};
            std::vector<Buf *> outs = {&g[0], &g[1]};
            if (b) outs.push_back(&g[2]);
            run("linear_grad", {&dy[0], &in[0], &in[1]}, outs, {});
            if (!b) g.pop_back();
            return g;
          },
          bias ? std::vector<int>{0, 1, 2} : std::vector<int>{0, 1});
  }
}

TEST_F(GradCheck, LinearGradAccumulatesInPlace) {
  Buf dy = floats({3, 5}), x = floats({3, 4}), w = floats({5, 4}), acc = floats({5, 4});
  Buf dx = zeros({3, 4}), dw = zeros({5, 4});
  run("linear_grad", {&dy, &x, &w}, {&dx, &dw}, {});
  Buf expect = acc;
  for (size_t i = 0; i < expect.f.size(); ++i)
    expect.f[i] += dw.f[i];
  run("linear_grad", {&dy, &x, &w, &acc}, {&dx, &acc}, {});  // in place
  for (size_t i = 0; i < expect.f.size(); ++i)
    EXPECT_NEAR(acc.f[i], expect.f[i], 1e-12);
}

TEST_F(GradCheck, RopeWithLlama3Scaling) {
  for (bool scaled : {false, true}) {
    std::vector<Buf> in = {floats({2, 3, 2, 8}), ints({2, 3}, {0, 1, 2, 5, 9, 30})};
    std::vector<Buf> out = {zeros({2, 3, 2, 8})};
    json attrs = {{"theta", 500000.0}};
    if (scaled)
      attrs["scaling"] = {{"factor", 8.0}, {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 16}};
    json inverse = attrs;
    inverse["inverse"] = true;
    check(in, out, [&] { run("rope", {&in[0], &in[1]}, {&out[0]}, attrs); },
          [&](std::vector<Buf> &dy) {
            std::vector<Buf> g = {zeros({2, 3, 2, 8})};
            run("rope", {&dy[0], &in[1]}, {&g[0]}, inverse);
            return g;
          }, {0});
  }
}

TEST_F(GradCheck, AttentionPaddedGqaWithMask) {
  std::vector<Buf> in = {floats({2, 4, 4, 3}), floats({2, 4, 2, 3}), floats({2, 4, 2, 3}),
                         ints({2, 4}, {1, 1, 1, 1, 1, 1, 0, 0})};
  std::vector<Buf> out = {zeros({2, 4, 4, 3}), zeros({2, 4, 4})};
  json attrs = {{"layout", "padded"}, {"causal", true}, {"scale", 0.57}};
  check(in, out,
        [&] { run("attention", {&in[0], &in[1], &in[2], &in[3], nullptr}, {&out[0], &out[1]}, attrs); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({2, 4, 4, 3}), zeros({2, 4, 2, 3}), zeros({2, 4, 2, 3})};
          run("attention_grad", {&dy[0], &in[0], &in[1], &in[2], &out[0], &out[1], &in[3], nullptr},
              {&g[0], &g[1], &g[2]}, attrs);
          return g;
        }, {0, 1, 2});
}

TEST_F(GradCheck, AttentionVarlenDocumentsDoNotMix) {
  Buf cu;
  cu.desc.shape = {3};
  cu.desc.dtype = DType::I32;
  std::vector<int32_t> offsets = {0, 2, 5};
  std::vector<Buf> in = {floats({5, 2, 3}), floats({5, 1, 3}), floats({5, 1, 3})};
  std::vector<Buf> out = {zeros({5, 2, 3}), zeros({2, 5})};
  json attrs = {{"layout", "varlen"}, {"causal", true}, {"scale", 0.5}};
  auto args = [&](std::vector<TensorRef> refs) {
    refs.push_back(TensorRef{});
    refs.push_back(TensorRef{offsets.data(), &cu.desc});
    return refs;
  };
  auto fwd = [&] {
    KernelArgs a;
    a.in = args({in[0].ref(), in[1].ref(), in[2].ref()});
    a.out = {out[0].ref(), out[1].ref()};
    a.attrs = &attrs;
    a.scratch = scratch.data();
    cpu->run(Kernel::Attention, a);
  };
  check(in, out, fwd,
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({5, 2, 3}), zeros({5, 1, 3}), zeros({5, 1, 3})};
          KernelArgs a;
          a.in = args({dy[0].ref(), in[0].ref(), in[1].ref(), in[2].ref(), out[0].ref(), out[1].ref()});
          a.out = {g[0].ref(), g[1].ref(), g[2].ref()};
          a.attrs = &attrs;
          a.scratch = scratch.data();
          cpu->run(Kernel::AttentionGrad, a);
          return g;
        }, {0, 1, 2});
  // The first document's outputs ignore the second document's keys.
  fwd();
  std::vector<double> before(out[0].f.begin(), out[0].f.begin() + 12);
  in[1].f[4 * 3] += 1.0;
  fwd();
  EXPECT_EQ(before, std::vector<double>(out[0].f.begin(), out[0].f.begin() + 12));
}

TEST_F(GradCheck, SwigluAndGelu) {
  std::vector<Buf> in = {floats({4, 5}), floats({4, 5})};
  std::vector<Buf> out = {zeros({4, 5})};
  check(in, out, [&] { run("swiglu", {&in[0], &in[1]}, {&out[0]}, {}); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({4, 5}), zeros({4, 5})};
          run("swiglu_grad", {&dy[0], &in[0], &in[1]}, {&g[0], &g[1]}, {});
          return g;
        }, {0, 1});
  for (const char *approx : {"none", "tanh"}) {
    json attrs = {{"approximate", approx}};
    check(in, out, [&] { run("gelu", {&in[0]}, {&out[0]}, attrs); },
          [&](std::vector<Buf> &dy) {
            std::vector<Buf> g = {zeros({4, 5})};
            run("gelu_grad", {&dy[0], &in[0]}, {&g[0]}, attrs);
            return g;
          }, {0});
  }
}

// dropout's backward is the same op over the gradient: the same mask, from
// the seed, the stream and the position alone.
TEST_F(GradCheck, Dropout) {
  std::vector<Buf> in = {floats({6, 40}), ints({}, {int64_t(42) << 32 | 3})};
  std::vector<Buf> out = {zeros({6, 40})};
  json attrs = {{"p", 0.25}, {"stream", 5}};
  check(in, out, [&] { run("dropout", {&in[0], &in[1]}, {&out[0]}, attrs); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({6, 40})};
          run("dropout", {&dy[0], &in[1]}, {&g[0]}, attrs);
          return g;
        }, {0});
  // About p of the elements are dropped, the rest scaled by 1 / (1 - p);
  // another stream or seed drops others.
  run("dropout", {&in[0], &in[1]}, {&out[0]}, attrs);
  int dropped = 0;
  for (size_t i = 0; i < out[0].f.size(); ++i) {
    if (out[0].f[i] == 0)
      ++dropped;
    else
      EXPECT_NEAR(out[0].f[i], in[0].f[i] / 0.75, 1e-12);
  }
  EXPECT_GT(dropped, 40);
  EXPECT_LT(dropped, 80);
  std::vector<double> first = out[0].f;
  run("dropout", {&in[0], &in[1]}, {&out[0]}, {{"p", 0.25}, {"stream", 6}});
  EXPECT_NE(first, out[0].f);
  Buf seed = ints({}, {int64_t(42) << 32 | 4});
  run("dropout", {&in[0], &seed}, {&out[0]}, attrs);
  EXPECT_NE(first, out[0].f);
  run("dropout", {&in[0], &in[1]}, {&out[0]}, {{"p", 0.0}, {"stream", 5}});
  EXPECT_EQ(in[0].f, out[0].f);
}

TEST_F(GradCheck, AddDivSplitConcat) {
  std::vector<Buf> in = {floats({3, 6}), floats({3, 6}), floats({}, 0.0, 3.0)};
  std::vector<Buf> out = {zeros({3, 6})};
  // add: the cotangent flows to both operands unchanged.
  check(in, out, [&] { run("add", {&in[0], &in[1]}, {&out[0]}, {}); },
        [&](std::vector<Buf> &dy) { return std::vector<Buf>{dy[0], dy[0]}; }, {0, 1});
  check(in, out, [&] { run("div", {&in[0], &in[2]}, {&out[0]}, {}); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({3, 6})};
          run("div", {&dy[0], &in[2]}, {&g[0]}, {});
          return g;
        }, {0});
  // split's VJP is concat, concat's is split.
  std::vector<Buf> parts = {zeros({3, 2}), zeros({3, 2}), zeros({3, 2})};
  json axis = {{"axis", 1}};
  check(in, parts, [&] { run("split", {&in[0]}, {&parts[0], &parts[1], &parts[2]}, axis); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({3, 6})};
          run("concat", {&dy[0], &dy[1], &dy[2]}, {&g[0]}, axis);
          return g;
        }, {0}, {0, 1, 2});
  std::vector<Buf> pieces = {floats({3, 2}), floats({3, 2})};
  std::vector<Buf> joined = {zeros({3, 4})};
  check(pieces, joined, [&] { run("concat", {&pieces[0], &pieces[1]}, {&joined[0]}, axis); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({3, 2}), zeros({3, 2})};
          run("split", {&dy[0]}, {&g[0], &g[1]}, axis);
          return g;
        }, {0, 1});
}

TEST_F(GradCheck, CrossEntropyAndLogProbsIgnoreLabels) {
  std::vector<Buf> in = {floats({2, 3, 7}), ints({2, 3}, {1, -100, 6, 0, 3, -100})};
  std::vector<Buf> loss = {zeros({})};
  json attrs = {{"ignore_index", -100}};
  check(in, loss, [&] { run("cross_entropy", {&in[0], &in[1]}, {&loss[0]}, attrs); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({2, 3, 7})};
          run("cross_entropy_grad", {&dy[0], &in[0], &in[1]}, {&g[0]}, attrs);
          return g;
        }, {0});
  std::vector<Buf> lp = {zeros({2, 3})};
  check(in, lp, [&] { run("log_probs", {&in[0], &in[1]}, {&lp[0]}, attrs); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({2, 3, 7})};
          run("log_probs_grad", {&dy[0], &in[0], &in[1]}, {&g[0]}, attrs);
          return g;
        }, {0});
  EXPECT_EQ(lp[0].f[1], 0.0);  // ignored position
}

TEST_F(GradCheck, FusedLinearLossesInChunks) {
  std::vector<Buf> in = {floats({2, 3, 4}), floats({7, 4}), ints({2, 3}, {1, -100, 6, 0, 3, 2})};
  json attrs = {{"ignore_index", -100}, {"chunk_size", 4}};  // 6 rows: 4 + 2
  std::vector<Buf> loss = {zeros({})};
  check(in, loss,
        [&] { run("fused_linear_cross_entropy", {&in[0], &in[1], &in[2]}, {&loss[0]}, attrs); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({2, 3, 4}), zeros({7, 4})};
          run("fused_linear_cross_entropy_grad", {&dy[0], &in[0], &in[1], &in[2]}, {&g[0], &g[1]}, attrs);
          return g;
        }, {0, 1});
  // Same value as linear + cross_entropy.
  Buf logits = zeros({2, 3, 7}), unfused = zeros({});
  run("linear", {&in[0], &in[1]}, {&logits}, {});
  run("cross_entropy", {&logits, &in[2]}, {&unfused}, attrs);
  run("fused_linear_cross_entropy", {&in[0], &in[1], &in[2]}, {&loss[0]}, attrs);
  EXPECT_NEAR(loss[0].f[0], unfused.f[0], 1e-12);
  std::vector<Buf> lp = {zeros({2, 3})};
  check(in, lp,
        [&] { run("fused_linear_log_probs", {&in[0], &in[1], &in[2]}, {&lp[0]}, attrs); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({2, 3, 4}), zeros({7, 4})};
          run("fused_linear_log_probs_grad", {&dy[0], &in[0], &in[1], &in[2]}, {&g[0], &g[1]}, attrs);
          return g;
        }, {0, 1});
}

TEST_F(GradCheck, MaskedSum) {
  Buf mask = floats({3, 4});
  for (double &m : mask.f)
    m = m > 0;
  std::vector<Buf> in = {floats({3, 4}), mask};
  std::vector<Buf> out = {zeros({3})};
  check(in, out, [&] { run("masked_sum", {&in[0], &in[1]}, {&out[0]}, {}); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({3, 4})};
          run("masked_sum_grad", {&dy[0], &in[1]}, {&g[0]}, {});
          return g;
        }, {0});
}

TEST_F(GradCheck, MaskedSumOfASharedRow) {
  // Padding-free pairs: one token row [1, 7], a mask row per sequence.
  Buf mask = floats({3, 7});
  for (double &m : mask.f)
    m = m > 0;
  std::vector<Buf> in = {floats({1, 7}), mask};
  std::vector<Buf> out = {zeros({3})};
  check(in, out, [&] { run("masked_sum", {&in[0], &in[1]}, {&out[0]}, {}); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({1, 7})};
          run("masked_sum_grad", {&dy[0], &in[1]}, {&g[0]}, {});
          return g;
        }, {0});
}

TEST_F(GradCheck, DpoLossEveryType) {
  // Every loss type, with label smoothing where it applies, and RPO's NLL.
  struct Case {
    const char *type;
    double smoothing, rpo;
  };
  for (Case c : {Case{"sigmoid", 0.1, 0.0}, Case{"sigmoid", 0.0, 0.7}, Case{"hinge", 0.0, 0.0},
                 Case{"ipo", 0.0, 0.0}, Case{"robust", 0.2, 0.0}, Case{"apo_zero", 0.0, 0.0},
                 Case{"apo_down", 0.0, 0.5}}) {
    SCOPED_TRACE(c.type);
    std::vector<Buf> in = {floats({4}, 2.0), floats({4}, 2.0), floats({4}, 2.0), floats({4}, 2.0),
                           floats({4}, 0.2, 0.3), floats({}, 0.1, 0.5)};
    std::vector<Buf> out = {zeros({}), zeros({4}), zeros({4})};
    json attrs = {{"beta", 0.3}, {"loss_type", c.type}, {"label_smoothing", c.smoothing},
                  {"rpo_alpha", c.rpo}};
    std::vector<Buf *> ins = {&in[0], &in[1], &in[2], &in[3], &in[4]};
    if (c.rpo > 0)
      ins.push_back(&in[5]);
    check(in, out, [&] { run("dpo_loss", ins, {&out[0], &out[1], &out[2]}, attrs); },
          [&](std::vector<Buf> &dy) {
            std::vector<Buf> g = {zeros({4}), zeros({4})};
            std::vector<Buf *> args = {&dy[0]};
            args.insert(args.end(), ins.begin(), ins.end());
            run("dpo_loss_grad", args, {&g[0], &g[1]}, attrs);
            return g;
          }, {0, 1});
    // The rewards are beta (policy - reference) of each side.
    EXPECT_NEAR(out[1].f[2], 0.3 * (in[0].f[2] - in[2].f[2]), 1e-12);
    EXPECT_NEAR(out[2].f[2], 0.3 * (in[1].f[2] - in[3].f[2]), 1e-12);
  }
}

// Online DPO's beta scheduled over epochs: a beta operand (slot 6, the nll
// weight's slot 5 empty) replaces the attribute in the loss, the rewards
// and the gradient.
TEST_F(GradCheck, DpoLossBetaOperand) {
  for (const char *type : {"sigmoid", "ipo"}) {
    SCOPED_TRACE(type);
    std::vector<Buf> in = {floats({4}, 2.0), floats({4}, 2.0), floats({4}, 2.0), floats({4}, 2.0),
                           floats({4}, 0.2, 0.3), floats({}, 0.0, 0.45)};
    std::vector<Buf> out = {zeros({}), zeros({4}), zeros({4})};
    json attrs = {{"beta", 0.1}, {"loss_type", type}, {"label_smoothing", 0.0},
                  {"rpo_alpha", 0.0}};
    std::vector<Buf *> ins = {&in[0], &in[1], &in[2], &in[3], &in[4], nullptr, &in[5]};
    check(in, out, [&] { run("dpo_loss", ins, {&out[0], &out[1], &out[2]}, attrs); },
          [&](std::vector<Buf> &dy) {
            std::vector<Buf> g = {zeros({4}), zeros({4})};
            std::vector<Buf *> args = {&dy[0]};
            args.insert(args.end(), ins.begin(), ins.end());
            run("dpo_loss_grad", args, {&g[0], &g[1]}, attrs);
            return g;
          }, {0, 1});
    EXPECT_NEAR(out[1].f[2], 0.45 * (in[0].f[2] - in[2].f[2]), 1e-12);
    // The same loss as the attribute 0.45 gives.
    std::vector<Buf> plain = {zeros({}), zeros({4}), zeros({4})};
    json fixed = attrs;
    fixed["beta"] = 0.45;
    run("dpo_loss", {&in[0], &in[1], &in[2], &in[3], &in[4]}, {&plain[0], &plain[1], &plain[2]},
        fixed);
    run("dpo_loss", ins, {&out[0], &out[1], &out[2]}, attrs);  // unperturbed
    EXPECT_DOUBLE_EQ(plain[0].f[0], out[0].f[0]);
  }
}

TEST_F(GradCheck, KtoLossWithDetachedKl) {
  for (const char *type : {"kto", "apo_zero_unpaired"}) {
    SCOPED_TRACE(type);
    bool kto = std::string(type) == "kto";
    std::vector<Buf> in = {floats({4}), floats({4}), floats({4}, 0.2, 0.3), floats({}, 0.2, 0.3)};
    Buf label = bools({1, 0, 1, 0});
    std::vector<Buf> out = {zeros({}), zeros({4}), zeros({})};
    json attrs = {{"beta", 0.5}, {"desirable_weight", 1.0}, {"undesirable_weight", 1.5},
                  {"loss_type", type}};
    std::vector<Buf *> ins = {&in[0], &in[1], &label, &in[2]};
    if (kto)
      ins.push_back(&in[3]);
    check(in, out, [&] { run("kto_loss", ins, {&out[0], &out[1], &out[2]}, attrs); },
          [&](std::vector<Buf> &dy) {
            std::vector<Buf> g = {zeros({4})};
            std::vector<Buf *> args = {&dy[0]};
            args.insert(args.end(), ins.begin(), ins.end());
            run("kto_loss_grad", args, {&g[0]}, attrs);
            return g;
          }, {0});
    EXPECT_EQ(out[2].f[0], kto ? std::max(0.0, in[3].f[0]) : 0.0);  // the clamped KL
  }
}

TEST_F(GradCheck, KtoKlIsTheWeightedMean) {
  std::vector<Buf> in = {floats({3}), floats({3}), floats({3}, 0.0, 0.25)};
  Buf kl = zeros({});
  run("kto_kl", {&in[0], &in[1], &in[2]}, {&kl}, {});
  double want = 0;
  for (int i = 0; i < 3; ++i)
    want += 0.25 * (in[0].f[i] - in[1].f[i]);
  EXPECT_NEAR(kl.f[0], want, 1e-12);
}

TEST_F(GradCheck, GrpoLossEveryType) {
  for (const char *type : {"grpo", "bnpo", "dr_grpo", "dapo"})
  for (bool sequence : {false, true}) {
    SCOPED_TRACE(std::string(type) + (sequence ? " sequence" : " token"));
    Buf mask = floats({3, 5});
    for (double &m : mask.f)
      m = m > -0.5;
    std::vector<Buf> in = {floats({3, 5}, 0.3, -1.0), floats({3, 5}, 0.3, -1.0), floats({3}),
                           mask, floats({}, 0.0, 9.0), floats({3, 5}, 0.3, -1.0)};
    std::vector<Buf> out = {zeros({})};
    json attrs = {{"epsilon_low", 0.2}, {"epsilon_high", 0.28}, {"beta", 0.04}, {"loss_type", type}};
    if (sequence)
      attrs["sequence_level"] = true;
    check(in, out,
          [&] { run("grpo_loss", {&in[0], &in[1], &in[2], &in[3], &in[4], &in[5]}, {&out[0]}, attrs); },
          [&](std::vector<Buf> &dy) {
            std::vector<Buf> g = {zeros({3, 5})};
            run("grpo_loss_grad", {&dy[0], &in[0], &in[1], &in[2], &in[3], &in[4], &in[5]}, {&g[0]}, attrs);
            return g;
          }, {0});
  }
}

// PPO: log-probabilities near the old ones (some ratios clipped, some
// not) and values near the old ones (some outside cliprange_value), both
// differentiated; the masks differ (the value mask counts one more token).
TEST_F(GradCheck, PpoLoss) {
  Buf mask = floats({3, 6}), vmask = floats({3, 6});
  for (size_t i = 0; i < mask.f.size(); ++i) {
    mask.f[i] = i % 6 >= 1 && i % 6 <= 3;
    vmask.f[i] = i % 6 >= 1 && i % 6 <= 4;
  }
  std::vector<Buf> in = {floats({3, 6}, 0.25, -1.0), floats({3, 6}, 0.05, -1.0),
                         floats({3, 6}), mask, floats({3, 6}, 0.3, 0.5), floats({3, 6}, 0.1, 0.5),
                         floats({3, 6}), vmask, floats({}, 0.0, 0.125), floats({}, 0.0, 0.1)};
  // Counted tokens each clip takes away, whatever the random draw: ratio
  // 1.65 with A > 0 and 0.61 with A < 0; a value 0.5 above its old one
  // with the return beyond it.
  in[0].f[1] = in[1].f[1] + 0.5, in[2].f[1] = 1.0;
  in[0].f[2] = in[1].f[2] - 0.5, in[2].f[2] = -1.0;
  in[4].f[7] = in[5].f[7] + 0.5, in[6].f[7] = in[4].f[7] + 1.0;
  std::vector<Buf> out = {zeros({})};
  json attrs = {{"cliprange", 0.2}, {"cliprange_value", 0.15}, {"vf_coef", 0.3}};
  std::vector<Buf *> ins;
  for (Buf &b : in)
    ins.push_back(&b);
  check(in, out, [&] { run("ppo_loss", ins, {&out[0]}, attrs); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({3, 6}), zeros({3, 6})};
          std::vector<Buf *> args = {&dy[0]};
          args.insert(args.end(), ins.begin(), ins.end());
          run("ppo_loss_grad", args, {&g[0], &g[1]}, attrs);
          return g;
        }, {0, 4});
  // Both clips are reached: a gradient of 0 where a counted token is
  // clipped away.
  int zeroPolicy = 0, zeroValue = 0;
  std::vector<Buf> dy = {floats({}, 0.0, 1.0)}, g = {zeros({3, 6}), zeros({3, 6})};
  std::vector<Buf *> args = {&dy[0]};
  args.insert(args.end(), ins.begin(), ins.end());
  run("ppo_loss_grad", args, {&g[0], &g[1]}, attrs);
  for (size_t i = 0; i < mask.f.size(); ++i) {
    zeroPolicy += in[3].f[i] != 0 && g[0].f[i] == 0;
    zeroValue += in[7].f[i] != 0 && g[1].f[i] == 0;
  }
  EXPECT_GT(zeroPolicy, 0);
  EXPECT_GT(zeroValue, 0);
}

TEST_F(GradCheck, RlooLoss) {
  Buf mask = floats({3, 5});
  for (double &m : mask.f)
    m = m > -0.5;
  // Sequence log-probabilities near the old ones: some ratios clipped,
  // some not.
  std::vector<Buf> in = {floats({3, 5}, 0.1, -0.3), floats({3}, 0.4, -1.5), floats({3}), mask,
                         floats({}, 0.0, 6.0)};
  std::vector<Buf> out = {zeros({})};
  json attrs = {{"epsilon_low", 0.2}, {"epsilon_high", 0.28}};
  check(in, out, [&] { run("rloo_loss", {&in[0], &in[1], &in[2], &in[3], &in[4]}, {&out[0]}, attrs); },
        [&](std::vector<Buf> &dy) {
          std::vector<Buf> g = {zeros({3, 5})};
          run("rloo_loss_grad", {&dy[0], &in[0], &in[1], &in[2], &in[3], &in[4]}, {&g[0]}, attrs);
          return g;
        }, {0});
}

TEST(CpuKernels, AdamWMatchesTorchArithmetic) {
  auto cpu = makeCpuBackend(1);
  std::vector<float> p = {1.0f, -2.0f}, g = {0.5f, 0.25f}, m = {0.1f, 0.0f}, v = {0.01f, 0.0f};
  float lr = 0.1f;
  int64_t step = 2;  // two updates already applied: bias correction uses t = 3
  artifact::TensorDesc vec{0, {2}, DType::F32}, scalar{0, {}, DType::F32}, i{0, {}, DType::I64};
  json attrs = {{"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}, {"weight_decay", 0.1}};
  KernelArgs a;
  a.in = {{p.data(), &vec}, {g.data(), &vec}, {m.data(), &vec}, {v.data(), &vec},
          {&lr, &scalar}, {&step, &i}};
  a.out = {{p.data(), &vec}, {m.data(), &vec}, {v.data(), &vec}};  // in place
  a.attrs = &attrs;
  cpu->run(Kernel::AdamW, a);
  // torch.optim.AdamW by hand for element 0.
  double w = 1.0 * (1 - 0.1 * 0.1), mi = 0.9 * 0.1 + 0.1 * 0.5,
         vi = 0.999 * 0.01 + 0.001 * 0.25;
  double expect = w - 0.1 / (1 - std::pow(0.9, 3)) * mi /
                          (std::sqrt(vi) / std::sqrt(1 - std::pow(0.999, 3)) + 1e-8);
  EXPECT_NEAR(p[0], expect, 1e-6);
  EXPECT_NEAR(m[0], mi, 1e-7);
  EXPECT_NEAR(v[0], vi, 1e-7);
}

TEST(CpuKernels, LrSchedules) {
  auto cpu = makeCpuBackend(1);
  artifact::TensorDesc scalar{0, {}, DType::F32}, i{0, {}, DType::I64};
  auto lr = [&](const char *kind, int64_t step) {
    json attrs = {{"schedule", kind}, {"base_lr", 1.0}, {"warmup_steps", 2}, {"total_steps", 10}};
    float out = 0;
    KernelArgs a;
    a.in = {{&step, &i}};
    a.out = {{&out, &scalar}};
    a.attrs = &attrs;
    cpu->run(Kernel::LrSchedule, a);
    return out;
  };
  EXPECT_FLOAT_EQ(lr("linear", 0), 0.0f);
  EXPECT_FLOAT_EQ(lr("linear", 1), 0.5f);
  EXPECT_FLOAT_EQ(lr("linear", 6), 0.5f);
  EXPECT_FLOAT_EQ(lr("cosine", 6), 0.5f);
  EXPECT_FLOAT_EQ(lr("cosine", 2), 1.0f);
  EXPECT_FLOAT_EQ(lr("constant", 9), 1.0f);
  EXPECT_FLOAT_EQ(lr("constant", 1), 0.5f);
}

TEST(CpuKernels, DeterministicForAFixedThreadCount) {
  std::vector<float> x(64 * 32), dy(64 * 32), w(32, 1.0f), dx1(x.size()), dx2(x.size()),
      dw1(32), dw2(32);
  std::mt19937 r(3);
  std::normal_distribution<float> n;
  for (float &v : x) v = n(r);
  for (float &v : dy) v = n(r);
  artifact::TensorDesc xd{0, {64, 32}, DType::F32}, wd{0, {32}, DType::F32};
  json attrs = {{"eps", 1e-6}};
  std::vector<double> scratch(4096);
  auto cpu = makeCpuBackend(2);
  for (auto [dx, dw] : {std::pair{&dx1, &dw1}, std::pair{&dx2, &dw2}}) {
    KernelArgs a;
    a.in = {{dy.data(), &xd}, {x.data(), &xd}, {w.data(), &wd}};
    a.out = {{dx->data(), &xd}, {dw->data(), &wd}};
    a.attrs = &attrs;
    a.scratch = scratch.data();
    cpu->run(Kernel::RmsNormGrad, a);
  }
  EXPECT_EQ(dw1, dw2);
  EXPECT_EQ(dx1, dx2);
}

} // namespace
