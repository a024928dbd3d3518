//===- CudaEmuTest.cpp - the CUDA kernels, emulated on the host -*- C++ -*-===//
//
// The CUDA kernels' own source (runtime/cuda/*.cu through translate.py and
// emu.h) run on the host against the CPU backend, as CudaOpsTest does on a
// GPU: random inputs, outputs poisoned with NaN bytes, relative error in
// norm under 1e-5 for fp32 kernels and 1e-2 for bf16 ones. Runs on every
// machine, so CI checks the kernels' indexing, masking, tiling and
// synchronization even where no GPU is: attention (fp32, and bf16 on
// tensor cores), the norms, rope, the MLP activations, dropout, AdamW, the
// gradient norm, the DPO/KTO losses and generation's KV cache. Not emulated: the products and the
// fused head (cuBLASLt), embedding (CUB's sort), cross entropy and GRPO. CudaOpsTest still has the last word
// on a GPU (timing, real fragment layouts, the CUDA backend itself).
//
//===----------------------------------------------------------------------===//

#include "OpTest.h"
#include "kernels.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>

using namespace trlc;
using namespace trlc::test;
namespace cu = trlc::cuda; // trlc::cudaemu in this build (-Dcuda=cudaemu)

namespace {

class Emu : public ::testing::Test {
public:
  /// Tensor t of `op` in emulated device memory: its input bytes, or NaN
  /// bytes for an output.
  void *dev(const Op &op, int t) {
    if (t < 0)
      return nullptr;
    if (op.bytes(t).empty())
      memory.emplace_back(std::max<int64_t>(op.plan.tensors[t].bytes(), 4),
                          0xff);
    else
      memory.push_back(op.bytes(t));
    return memory.back().data();
  }
  cu::Floats floats(const Op &op, int t) {
    return {dev(op, t), op.plan.tensors[t].dtype == DType::BF16};
  }
  cu::Index index(const Op &op, int t) {
    cu::Index i;
    i.data = dev(op, t);
    if (t >= 0)
      i.type = op.plan.tensors[t].dtype == DType::I32 ? cu::Index::I32
                                                      : cu::Index::I64;
    return i;
  }
  static std::vector<float> read(const Op &op, int t, const void *p) {
    const artifact::TensorDesc &d = op.plan.tensors[t];
    std::vector<float> v(d.numel());
    for (int64_t i = 0; i < d.numel(); ++i) {
      if (d.dtype == DType::BF16) {
        uint16_t h;
        std::memcpy(&h, static_cast<const char *>(p) + 2 * i, 2);
        v[i] = bf16ToFloat(h);
      } else {
        std::memcpy(&v[i], static_cast<const char *>(p) + 4 * i, 4);
      }
    }
    return v;
  }
  /// Runs `op` on the CPU backend and compares every output with `got`
  /// (the emulated kernel's outputs, in op.call.out's order).
  std::vector<std::vector<float>>
  compare(const Op &op, const std::vector<void *> &got, double tol) {
    EXPECT_EQ(code, 0) << "the kernel reported status " << code << " (" << value
                       << ")";
    std::vector<std::vector<float>> want = op.runOn(*cpu), outs;
    for (size_t k = 0; k < got.size(); ++k)
      outs.push_back(read(op, op.call.out[k], got[k]));
    expectClose(op, want, outs, tol);
    return want;
  }

  std::unique_ptr<Backend> cpu = makeCpuBackend(2);
  std::deque<std::vector<uint8_t>> memory;
  int code = 0;
  long long value = 0;
  cu::Status status{&code, &value};
};

/// Forward and backward of one attention layout, as CudaOpsTest's
/// checkAttention: the fp32 kernels (attention.cu) or, with `bf16`, the
/// tensor-core ones (attention_bf16.cu) on bf16 q, k, v and output.
void checkAttention(
    Emu &t, const json &attrs, std::vector<int64_t> q, std::vector<int64_t> kv,
    std::vector<int64_t> lse, const std::function<int(Op &)> &mask,
    const std::function<int(Op &)> &cuSeqlens, bool bf16,
    const std::function<std::vector<void *>(Op &, cu::AttentionShape &)> &fwd,
    const std::function<std::vector<void *>(Op &, cu::AttentionShape &)> &bwd) {
  AttentionOps ops{attrs, q, kv, lse, mask, cuSeqlens, bf16};
  auto shape = [&](const Op &op, int m, int c) {
    cu::AttentionShape s;
    s.varlen = attrs.at("layout") == "varlen";
    s.causal = attrs.at("causal");
    s.scale = attrs.at("scale").get<float>();
    s.d = q.back();
    s.hq = q[q.size() - 2];
    s.hkv = kv[kv.size() - 2];
    if (s.varlen) {
      s.cuSeqlens = {op.bytes(c).data(), cu::Index::I32};
      s.count = op.plan.tensors[c].numel() - 1;
      s.totalTokens = q[0];
      s.maxLen = attrs.at("max_seqlen");
    } else {
      s.count = q[0];
      s.rowLength = s.maxLen = q[1];
      s.totalTokens = s.count * s.rowLength;
      if (m >= 0)
        s.mask = {op.bytes(m).data(), cu::Index::I64};
    }
    return s;
  };
  // The mask and cu_seqlens are operands 3 and 4 of the forward, 6 and 7
  // of the backward.
  Op f = ops.forward();
  cu::AttentionShape fs = shape(f, f.call.in[3], f.call.in[4]);
  std::vector<std::vector<float>> ref =
      t.compare(f, fwd(f, fs), ops.tolerance());
  Op b = ops.backward(ref);
  cu::AttentionShape bs = shape(b, b.call.in[6], b.call.in[7]);
  t.compare(b, bwd(b, bs), ops.tolerance());
}

class EmuAttention : public Emu {
protected:
  void run(bool bf16, const json &attrs, std::vector<int64_t> q,
           std::vector<int64_t> kv, std::vector<int64_t> lse,
           const std::function<int(Op &)> &mask,
           const std::function<int(Op &)> &cuSeqlens) {
    auto fwd = [&](Op &op, cu::AttentionShape &s) -> std::vector<void *> {
      const auto &in = op.call.in;
      void *out = dev(op, op.call.out[0]), *lse = dev(op, op.call.out[1]);
      if (bf16)
        cu::attentionBf16(nullptr, status, s, floats(op, in[0]),
                          floats(op, in[1]), floats(op, in[2]), {out, true},
                          static_cast<float *>(lse));
      else
        cu::attention(nullptr, status, s,
                      static_cast<const float *>(dev(op, in[0])),
                      static_cast<const float *>(dev(op, in[1])),
                      static_cast<const float *>(dev(op, in[2])),
                      static_cast<float *>(out), static_cast<float *>(lse));
      return {out, lse};
    };
    auto bwd = [&](Op &op, cu::AttentionShape &s) -> std::vector<void *> {
      const auto &in = op.call.in;
      std::vector<void *> out;
      for (int t : op.call.out)
        out.push_back(dev(op, t));
      memory.emplace_back(
          cu::attentionGradScratch(
              s.varlen ? s.totalTokens : s.count * s.rowLength, s.hq),
          0xff);
      void *scratch = memory.back().data();
      auto *dq = static_cast<float *>(out[0]),
           *dk = static_cast<float *>(out[1]),
           *dv = static_cast<float *>(out[2]);
      if (bf16)
        cu::attentionBf16Grad(
            nullptr, status, s, floats(op, in[0]), floats(op, in[1]),
            floats(op, in[2]), floats(op, in[3]), floats(op, in[4]),
            static_cast<const float *>(dev(op, in[5])), dq, dk, dv, scratch);
      else
        cu::attentionGrad(
            nullptr, status, s, static_cast<const float *>(dev(op, in[0])),
            static_cast<const float *>(dev(op, in[1])),
            static_cast<const float *>(dev(op, in[2])),
            static_cast<const float *>(dev(op, in[3])),
            static_cast<const float *>(dev(op, in[4])),
            static_cast<const float *>(dev(op, in[5])), dq, dk, dv, scratch);
      return out;
    };
    checkAttention(*this, attrs, q, kv, lse, mask, cuSeqlens, bf16, fwd, bwd);
  }

  /// Padded rows with a key mask (the second row ends in padding) and
  /// grouped heads (4 query heads on 2 kv heads).
  void padded(bool bf16, bool causal, int64_t s, int64_t d) {
    json attrs = {{"layout", "padded"},
                  {"causal", causal},
                  {"scale", 1 / std::sqrt(double(d))}};
    std::vector<int64_t> mask(2 * s, 1);
    for (int64_t j = std::max<int64_t>(s - 2, 0); j < s; ++j)
      mask[s + j] = 0;
    run(
        bf16, attrs, {2, s, 4, d}, {2, s, 2, d}, {2, 4, s},
        [&](Op &op) {
          return op.i64({2, s}, mask);
        },
        [](Op &) { return -1; });
  }
  /// Documents at `cuSeqlens` (the kernels tile 32 or 64 rows).
  void varlen(bool bf16, int64_t d, std::vector<int32_t> cuSeqlens) {
    int32_t tokens = cuSeqlens.back(), longest = 0;
    for (size_t i = 1; i < cuSeqlens.size(); ++i)
      longest = std::max(longest, cuSeqlens[i] - cuSeqlens[i - 1]);
    json attrs = {{"layout", "varlen"},
                  {"causal", true},
                  {"scale", 0.125},
                  {"max_seqlen", longest}};
    run(
        bf16, attrs, {tokens, 6, d}, {tokens, 2, d}, {6, tokens},
        [](Op &) { return -1; },
        [&](Op &op) {
          return op.ints({static_cast<int64_t>(cuSeqlens.size())}, cuSeqlens,
                         DType::I32);
        });
  }
};

TEST_F(EmuAttention, Fp32PaddedGqaWithMask) {
  for (bool causal : {true, false})
    for (auto [s, d] : {std::pair<int64_t, int64_t>{5, 16}, {37, 24}})
      padded(false, causal, s, d);
}

TEST_F(EmuAttention, Fp32Varlen) {
  varlen(false, 32, {0, 3, 40, 41, 90});
  varlen(false, 16, manyShortDocuments());
}

TEST_F(EmuAttention, Bf16TensorCoresPaddedGqaWithMask) {
  for (bool causal : {true, false})
    for (auto [s, d] :
         {std::pair<int64_t, int64_t>{5, 16}, {70, 64}, {33, 32}, {20, 128}})
      padded(true, causal, s, d);
}

TEST_F(EmuAttention, Bf16TensorCoresVarlen) {
  varlen(true, 64, {0, 3, 70, 71, 150});
  varlen(true, 32, manyShortDocuments());
}

TEST_F(Emu, NormsWriteFp32OrBf16) {
  for (DType type : {DType::F32, DType::BF16})
    for (auto [rows, h] : {std::pair<int64_t, int64_t>{5, 7}, {3, 300}}) {
      double tol = type == DType::BF16 ? kBf16 : kF32;
      Op rms("rms_norm", {{"eps", 1e-6}});
      int x = rms.floats({rows, h}), w = rms.floats({h}, 0.5, 1.0);
      rms.in({x, w}).out({rms.output({rows, h}, false, type)});
      void *y = dev(rms, rms.call.out[0]);
      cu::rmsNorm(nullptr, static_cast<const float *>(dev(rms, x)),
                  static_cast<const float *>(dev(rms, w)),
                  {y, type == DType::BF16}, rows, h, 1e-6f);
      compare(rms, {y}, tol);
      Op ln("layer_norm", {{"eps", 1e-5}});
      x = ln.floats({rows, h});
      w = ln.floats({h}, 0.5, 1.0);
      int bias = ln.floats({h});
      ln.in({x, w, bias}).out({ln.output({rows, h}, false, type)});
      y = dev(ln, ln.call.out[0]);
      cu::layerNorm(nullptr, static_cast<const float *>(dev(ln, x)),
                    static_cast<const float *>(dev(ln, w)),
                    static_cast<const float *>(dev(ln, bias)),
                    {y, type == DType::BF16}, rows, h, 1e-5f);
      compare(ln, {y}, tol);
    }
}

TEST_F(Emu, NormGradients) {
  // 200 rows: the 128 blocks take one or two rows each.
  for (auto [rows, h] : {std::pair<int64_t, int64_t>{5, 7}, {200, 16}}) {
    Op rms("rms_norm_grad", {{"eps", 1e-6}});
    int dy = rms.floats({rows, h}), x = rms.floats({rows, h}),
        w = rms.floats({h}, 0.5, 1.0);
    rms.in({dy, x, w}).out({rms.output({rows, h}), rms.output({h})});
    std::vector<void *> out = {dev(rms, rms.call.out[0]),
                               dev(rms, rms.call.out[1])};
    memory.emplace_back(cu::normGradScratch(rows, h, false), 0xff);
    cu::rmsNormGrad(nullptr, static_cast<const float *>(dev(rms, dy)),
                    static_cast<const float *>(dev(rms, x)),
                    static_cast<const float *>(dev(rms, w)),
                    static_cast<float *>(out[0]), static_cast<float *>(out[1]),
                    rows, h, 1e-6f, memory.back().data());
    compare(rms, out, kF32);
    Op ln("layer_norm_grad", {{"eps", 1e-5}});
    dy = ln.floats({rows, h});
    x = ln.floats({rows, h});
    w = ln.floats({h}, 0.5, 1.0);
    ln.in({dy, x, w})
        .out({ln.output({rows, h}), ln.output({h}), ln.output({h})});
    out = {dev(ln, ln.call.out[0]), dev(ln, ln.call.out[1]),
           dev(ln, ln.call.out[2])};
    memory.emplace_back(cu::normGradScratch(rows, h, true), 0xff);
    cu::layerNormGrad(
        nullptr, static_cast<const float *>(dev(ln, dy)),
        static_cast<const float *>(dev(ln, x)),
        static_cast<const float *>(dev(ln, w)), static_cast<float *>(out[0]),
        static_cast<float *>(out[1]), static_cast<float *>(out[2]), rows, h,
        1e-5f, memory.back().data());
    compare(ln, out, kF32);
  }
}

TEST_F(Emu, RopeFp32AndBf16) {
  for (DType type : {DType::F32, DType::BF16})
    for (bool inverse : {false, true}) {
      std::vector<int64_t> pos(37);
      for (size_t i = 0; i < pos.size(); ++i)
        pos[i] = (i * 7) % 50;
      Op op("rope", {{"theta", 10000.0}, {"inverse", inverse}});
      int x = type == DType::BF16 ? op.bf16({1, 37, 3, 64})
                                  : op.floats({1, 37, 3, 64});
      int p = op.i64({1, 37}, pos);
      op.in({x, p}).out({op.output({1, 37, 3, 64}, false, type)});
      void *y = dev(op, op.call.out[0]);
      cu::rope(nullptr, floats(op, x), index(op, p), {y, type == DType::BF16},
               37, 3, 64, 10000.0, cu::RopeScaling{}, inverse);
      compare(op, {y}, type == DType::BF16 ? kBf16 : kF32);
    }
}

/// Generation's KV cache: a write of two tokens per row at scattered
/// positions, then two queries per row over a masked cache (GQA).
TEST_F(Emu, KvCacheWriteAndCachedAttention) {
  const int64_t b = 3, slots = 40, hq = 4, hkv = 2, d = 64, n = 2;
  std::vector<int64_t> pos{0, 39, 7, 8, 20, 3};
  Op w("cache_write");
  int c = w.floats({b, slots, hkv, d}), x = w.floats({b, n, hkv, d}),
      p = w.i64({b, n}, pos);
  w.in({c, x, p}).out({w.output({b, slots, hkv, d})});
  void *cache = dev(w, c);
  cu::cacheWrite(nullptr, status, static_cast<float *>(cache),
                 static_cast<float *>(dev(w, x)), index(w, p), static_cast<float *>(cache), b, n,
                 slots, hkv * d);
  compare(w, {cache}, 0);

  std::vector<int64_t> mask(b * slots, 1);
  for (int64_t j = 30; j < slots; ++j)
    mask[slots + j] = 0;  // row 1: padding from slot 30
  mask[2 * slots + 1] = 0;
  Op a("cached_attention", {{"scale", 0.125}});
  int q = a.floats({b, n, hq, d}), kc = a.floats({b, slots, hkv, d}),
      vc = a.floats({b, slots, hkv, d}), m = a.i64({b, slots}, mask),
      qp = a.i64({b, n}, {0, 39, 12, 35, 20, 2});
  a.in({q, kc, vc, m, qp}).out({a.output({b, n, hq, d})});
  void *out = dev(a, a.call.out[0]);
  std::vector<uint8_t> scratch(cu::cachedAttentionScratch(b, n, hq, slots));
  cu::CachedAttentionShape sh;
  sh.batch = b, sh.tokens = n, sh.hq = hq, sh.hkv = hkv, sh.d = d, sh.slots = slots;
  sh.scale = 0.125f;
  sh.mask = index(a, m);
  sh.positions = index(a, qp);
  cu::cachedAttention(nullptr, status, sh, static_cast<float *>(dev(a, q)),
                      static_cast<float *>(dev(a, kc)), static_cast<float *>(dev(a, vc)),
                      static_cast<float *>(out), scratch.data());
  compare(a, {out}, kF32);
}

} // namespace

namespace {

/// Bias gradients: column sums over 5 to 1000 rows, the longer ones in
/// partial sums of 256 rows.
TEST_F(Emu, ColumnSumInPartsMatchesDoubleSums) {
  for (auto [rows, n] :
       {std::pair<int64_t, int64_t>{5, 3}, {300, 37}, {1000, 70}}) {
    std::vector<float> x(rows * n), out(n, std::nanf(""));
    std::uniform_real_distribution<float> u(-1, 1);
    for (float &v : x)
      v = u(rng);
    std::vector<char> scratch(cu::columnSumScratch(rows, n) + 1);
    EXPECT_EQ(scratch.size() > 1, rows > 256);
    cu::columnSum(nullptr, x.data(), out.data(), rows, n, scratch.data());
    for (int64_t j = 0; j < n; ++j) {
      double want = 0;
      for (int64_t r = 0; r < rows; ++r)
        want += x[r * n + j];
      EXPECT_NEAR(out[j], want, 1e-5 * rows) << "column " << j << " of " << n;
    }
  }
}

TEST_F(Emu, ActivationsFp32AndBf16) {
  for (DType type : {DType::F32, DType::BF16})
    for (int64_t n : {3, 4099}) {
      bool bf16 = type == DType::BF16;
      double tol = bf16 ? kBf16 : kF32;
      auto input = [&](Op &op, double scale) {
        return bf16 ? op.bf16({n}, scale) : op.floats({n}, scale);
      };
      Op sw("swiglu");
      int g = input(sw, 2.0), u = input(sw, 1.0);
      sw.in({g, u}).out({sw.output({n}, false, type)});
      void *y = dev(sw, sw.call.out[0]);
      cu::swiglu(nullptr, floats(sw, g), floats(sw, u), {y, bf16}, n);
      compare(sw, {y}, tol);
      Op swg("swiglu_grad");
      int dy = swg.floats({n});
      g = input(swg, 2.0);
      u = input(swg, 1.0);
      swg.in({dy, g, u}).out({swg.output({n}), swg.output({n})});
      std::vector<void *> d = {dev(swg, swg.call.out[0]),
                               dev(swg, swg.call.out[1])};
      cu::swigluGrad(nullptr, static_cast<const float *>(dev(swg, dy)),
                     floats(swg, g), floats(swg, u), static_cast<float *>(d[0]),
                     static_cast<float *>(d[1]), n);
      compare(swg, d, tol);
      for (bool tanhApprox : {false, true}) {
        json attrs = {{"approximate", tanhApprox ? "tanh" : "none"}};
        Op ge("gelu", attrs);
        int x = input(ge, 2.0);
        ge.in({x}).out({ge.output({n}, false, type)});
        y = dev(ge, ge.call.out[0]);
        cu::gelu(nullptr, tanhApprox, floats(ge, x), {y, bf16}, n);
        compare(ge, {y}, tol);
        Op gg("gelu_grad", attrs);
        dy = gg.floats({n});
        x = input(gg, 2.0);
        gg.in({dy, x}).out({gg.output({n})});
        y = dev(gg, gg.call.out[0]);
        cu::geluGrad(nullptr, tanhApprox,
                     static_cast<const float *>(dev(gg, dy)), floats(gg, x),
                     static_cast<float *>(y), n);
        compare(gg, {y}, tol);
      }
      // dropout: the same mask as the CPU backend's (one hash, both sides).
      json attrs = {{"p", 0.3}, {"stream", 7}};
      Op dr("dropout", attrs);
      int x = input(dr, 1.0), seed = dr.i64({}, {int64_t(42) << 32 | 5});
      dr.in({x, seed}).out({dr.output({n}, false, type)});
      y = dev(dr, dr.call.out[0]);
      cu::dropout(nullptr, floats(dr, x), static_cast<const int64_t *>(dev(dr, seed)), 7,
                  dropoutThreshold(0.3), static_cast<float>(1 / 0.7), {y, bf16}, n);
      compare(dr, {y}, tol);
    }
}

TEST_F(Emu, AdamWInPlaceAndGradNorm) {
  // Unclipped, then clipped by a global norm of 3 to 1.
  for (bool clip : {false, true}) {
    json attrs = {{"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}, {"weight_decay", 0.1}};
    if (clip)
      attrs["max_grad_norm"] = 1.0;
    Op adam("adamw", attrs);
    int p = adam.floats({4099}), g = adam.floats({4099}),
        m = adam.floats({4099}, 0.1), v = adam.floats({4099}, 0.01, 0.05),
        lr = adam.floats({}, 0.0, 1e-3), step = adam.i64({}, {4});
    std::vector<int> in = {p, g, m, v, lr, step};
    if (clip)
      in.push_back(adam.floats({}, 0.0, 3.0));
    adam.in(in).out({p, m, v});
    auto *pd = static_cast<float *>(dev(adam, p)),
         *md = static_cast<float *>(dev(adam, m)),
         *vd = static_cast<float *>(dev(adam, v));
    trlc::AdamWHyper h;
    h.weightDecay = 0.1;
    cu::adamw(nullptr, h, pd, static_cast<const float *>(dev(adam, g)), md, vd,
              static_cast<const float *>(dev(adam, lr)), index(adam, step),
              clip ? static_cast<const float *>(dev(adam, in.back())) : nullptr,
              clip ? 1.0f : 0.0f, pd, md, vd, 4099);
    compare(adam, {pd, md, vd}, kF32);
  }
  for (bool squared : {false, true}) {
    Op norm("grad_norm", {{"squared", squared}});
    int a = norm.floats({1000}), b = norm.floats({7}),
        c = norm.floats({64, 33});
    norm.in({a, b, c}).out({norm.output({})});
    std::vector<const float *> tensors = {
        static_cast<const float *>(dev(norm, a)),
        static_cast<const float *>(dev(norm, b)),
        static_cast<const float *>(dev(norm, c))};
    std::vector<int64_t> sizes = {1000, 7, 64 * 33};
    void *out = dev(norm, norm.call.out[0]);
    memory.emplace_back(cu::gradNormScratch(3), 0xff);
    cu::gradNorm(nullptr, tensors.data(), sizes.data(), 3, squared,
                 static_cast<float *>(out), memory.back().data());
    compare(norm, {out}, kF32);
  }
}

TEST_F(Emu, MaskedSumPerRowAndShared) {
  for (bool shared : {false, true})
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {3, 37}, {16, 300}}) {
      SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) + (shared ? " shared" : ""));
      std::vector<int64_t> xs = {shared ? 1 : rows, cols};
      Op fwd("masked_sum");
      int x = fwd.floats(xs), m = fwd.floats({rows, cols});
      fwd.in({x, m}).out({fwd.output({rows})});
      void *y = dev(fwd, fwd.call.out[0]);
      cu::maskedSum(nullptr, floats(fwd, x), floats(fwd, m), static_cast<float *>(y), rows,
                    cols, shared && rows > 1);
      compare(fwd, {y}, kF32);
      Op bwd("masked_sum_grad");
      int g = bwd.floats({rows}), bm = bwd.floats({rows, cols});
      bwd.in({g, bm}).out({bwd.output(xs)});
      void *dx = dev(bwd, bwd.call.out[0]);
      cu::maskedSumGrad(nullptr, static_cast<const float *>(dev(bwd, g)),
                        static_cast<const float *>(dev(bwd, bm)), static_cast<float *>(dx), rows,
                        cols, shared && rows > 1);
      compare(bwd, {dx}, kF32);
    }
}

TEST_F(Emu, DpoLossesEveryType) {
  struct Case {
    const char *type;
    DpoKind kind;
    double smoothing, rpo;
  };
  for (Case c : {Case{"sigmoid", DpoKind::Sigmoid, 0.1, 0.0},
                 Case{"sigmoid", DpoKind::Sigmoid, 0.0, 0.7}, Case{"hinge", DpoKind::Hinge, 0, 0},
                 Case{"ipo", DpoKind::Ipo, 0, 0}, Case{"robust", DpoKind::Robust, 0.2, 0},
                 Case{"apo_zero", DpoKind::ApoZero, 0, 0},
                 Case{"apo_down", DpoKind::ApoDown, 0, 0.5}})
    for (int64_t n : {1, 300}) {
      SCOPED_TRACE(std::string(c.type) + " n=" + std::to_string(n));
      json attrs = {{"beta", 0.3}, {"loss_type", c.type}, {"label_smoothing", c.smoothing},
                    {"rpo_alpha", c.rpo}};
      for (bool grad : {false, true}) {
        Op op(grad ? "dpo_loss_grad" : "dpo_loss", attrs);
        int g = grad ? op.floats({}, 0.0, 0.7) : -1;
        int pc = op.floats({n}, 2.0), pr = op.floats({n}, 2.0), rc = op.floats({n}, 2.0),
            rr = op.floats({n}, 2.0), w = op.floats({n}, 0.1, 0.2),
            nll = c.rpo > 0 ? op.floats({}, 0.0, 0.05) : -1;
        // IPO reads beta from a device scalar (online DPO's scheduled beta)
        // while its attribute says otherwise; the CPU reference has 0.3.
        int betaValue = c.kind == DpoKind::Ipo ? op.given({}, {0.3f}) : -1;
        std::vector<int> in = {pc, pr, rc, rr, w};
        if (grad)
          in.insert(in.begin(), g);
        if (nll >= 0)
          in.push_back(nll);
        if (grad)
          op.in(in).out({op.output({n}), op.output({n})});
        else
          op.in(in).out({op.output({}), op.output({n}), op.output({n})});
        cu::Dpo d;
        d.kind = c.kind;
        d.beta = 0.3f;
        d.labelSmoothing = static_cast<float>(c.smoothing);
        d.rpoAlpha = static_cast<float>(c.rpo);
        auto f = [&](int t) { return static_cast<const float *>(dev(op, t)); };
        d.pc = f(pc), d.pr = f(pr), d.rc = f(rc), d.rr = f(rr), d.weights = f(w);
        d.nllWeight = nll >= 0 ? f(nll) : nullptr;
        if (betaValue >= 0) {
          d.beta = 0.1f;
          d.betaValue = f(betaValue);
        }
        d.n = n;
        std::vector<void *> outs;
        for (int t : op.call.out)
          outs.push_back(dev(op, t));
        auto o = [&](int k) { return static_cast<float *>(outs[k]); };
        if (grad)
          cu::dpoLossGrad(nullptr, d, f(g), o(0), o(1));
        else
          cu::dpoLoss(nullptr, d, o(0), o(1), o(2));
        compare(op, outs, kF32);
      }
    }
}

TEST_F(Emu, GrpoLossEveryTypeAndLevel) {
  const char *types[] = {"grpo", "bnpo", "dr_grpo", "dapo"};
  const cu::GrpoType kinds[] = {cu::GrpoType::Grpo, cu::GrpoType::Bnpo, cu::GrpoType::DrGrpo,
                                cu::GrpoType::Dapo};
  for (int k = 0; k < 4; ++k)
    for (bool sequence : {false, true}) {
      SCOPED_TRACE(std::string(types[k]) + (sequence ? " sequence" : " token"));
      json attrs = {{"epsilon_low", 0.2}, {"epsilon_high", 0.28}, {"beta", 0.04},
                    {"loss_type", types[k]}};
      if (sequence)
        attrs["sequence_level"] = true;
      for (bool grad : {false, true}) {
        Op op(grad ? "grpo_loss_grad" : "grpo_loss", attrs);
        int g = grad ? op.floats({}, 0.0, 0.8) : -1;
        // Rows 0 and 1 partly in the loss, row 2 not at all (a masked
        // truncated completion).
        std::vector<float> maskValues(3 * 37, 0.0f);
        for (size_t i = 0; i < 2 * 37; ++i)
          maskValues[i] = static_cast<float>((i * 5) % 3 != 0);
        int lp = op.floats({3, 37}, 0.3, -1.0), old = op.floats({3, 37}, 0.3, -1.0),
            adv = op.floats({3}), mask = op.floats({3, 37}), n = op.floats({}, 0.0, 9.0),
            ref = op.floats({3, 37}, 0.3, -1.0);
        op.set(mask, maskValues);
        std::vector<int> in = {lp, old, adv, mask, n, ref};
        if (grad)
          in.insert(in.begin(), g);
        op.in(in).out({grad ? op.output({3, 37}) : op.output({})});
        cu::Grpo q;
        q.type = kinds[k];
        q.epsilonLow = 0.2f;
        q.epsilonHigh = 0.28f;
        q.beta = 0.04f;
        q.sequenceLevel = sequence;
        auto f = [&](int t) { return static_cast<const float *>(dev(op, t)); };
        q.logp = f(lp), q.old = f(old), q.advantages = f(adv), q.mask = f(mask);
        q.normalizer = f(n), q.ref = f(ref);
        q.rows = 3;
        q.cols = 37;
        void *out = dev(op, op.call.out[0]);
        if (grad)
          cu::grpoLossGrad(nullptr, q, f(g), static_cast<float *>(out));
        else
          cu::grpoLoss(nullptr, q, static_cast<float *>(out));
        compare(op, {out}, kF32);
      }
    }
}

TEST_F(Emu, PpoLoss) {
  json attrs = {{"cliprange", 0.2}, {"cliprange_value", 0.15}, {"vf_coef", 0.3}};
  for (bool grad : {false, true}) {
    Op op(grad ? "ppo_loss_grad" : "ppo_loss", attrs);
    int g = grad ? op.floats({}, 0.0, 0.8) : -1;
    std::vector<float> maskValues(3 * 37), vmaskValues(3 * 37);
    for (size_t i = 0; i < maskValues.size(); ++i) {
      maskValues[i] = static_cast<float>(i % 37 >= 5 && i % 37 < 30);
      vmaskValues[i] = static_cast<float>(i % 37 >= 5 && i % 37 < 31);
    }
    int lp = op.floats({3, 37}, 0.25, -1.0), old = op.floats({3, 37}, 0.05, -1.0),
        adv = op.floats({3, 37}), mask = op.floats({3, 37}), v = op.floats({3, 37}, 0.3, 0.5),
        oldV = op.floats({3, 37}, 0.1, 0.5), ret = op.floats({3, 37}),
        vmask = op.floats({3, 37}), wp = op.floats({}, 0.0, 0.02), wv = op.floats({}, 0.0, 0.03);
    op.set(mask, maskValues);
    op.set(vmask, vmaskValues);
    std::vector<int> in = {lp, old, adv, mask, v, oldV, ret, vmask, wp, wv};
    if (grad)
      in.insert(in.begin(), g);
    if (grad)
      op.in(in).out({op.output({3, 37}), op.output({3, 37})});
    else
      op.in(in).out({op.output({})});
    cu::Ppo p;
    p.cliprange = 0.2f;
    p.cliprangeValue = 0.15f;
    p.vfCoef = 0.3f;
    auto f = [&](int t) { return static_cast<const float *>(dev(op, t)); };
    p.logp = f(lp), p.old = f(old), p.advantages = f(adv), p.mask = f(mask), p.values = f(v);
    p.oldValues = f(oldV), p.returns = f(ret), p.valueMask = f(vmask), p.pgWeight = f(wp);
    p.vfWeight = f(wv);
    p.n = 3 * 37;
    std::vector<void *> outs;
    for (int t : op.call.out)
      outs.push_back(dev(op, t));
    if (grad)
      cu::ppoLossGrad(nullptr, p, f(g), static_cast<float *>(outs[0]),
                      static_cast<float *>(outs[1]));
    else
      cu::ppoLoss(nullptr, p, static_cast<float *>(outs[0]));
    compare(op, outs, kF32);
  }
}

TEST_F(Emu, RlooLoss) {
  json attrs = {{"epsilon_low", 0.2}, {"epsilon_high", 0.28}};
  for (bool grad : {false, true}) {
    Op op(grad ? "rloo_loss_grad" : "rloo_loss", attrs);
    int g = grad ? op.floats({}, 0.0, 0.8) : -1;
    std::vector<float> maskValues(3 * 37, 0.0f);
    for (size_t i = 0; i < 2 * 37; ++i)
      maskValues[i] = static_cast<float>((i * 5) % 3 != 0);
    int lp = op.floats({3, 37}, 0.05, -0.1), old = op.floats({3}, 0.5, -2.5),
        adv = op.floats({3}), mask = op.floats({3, 37}), n = op.floats({}, 0.0, 9.0);
    op.set(mask, maskValues);
    std::vector<int> in = {lp, old, adv, mask, n};
    if (grad)
      in.insert(in.begin(), g);
    op.in(in).out({grad ? op.output({3, 37}) : op.output({})});
    cu::Rloo r;
    r.epsilonLow = 0.2f;
    r.epsilonHigh = 0.28f;
    auto f = [&](int t) { return static_cast<const float *>(dev(op, t)); };
    r.logp = f(lp), r.old = f(old), r.advantages = f(adv), r.mask = f(mask), r.normalizer = f(n);
    r.rows = 3;
    r.cols = 37;
    void *out = dev(op, op.call.out[0]);
    if (grad)
      cu::rlooLossGrad(nullptr, r, f(g), static_cast<float *>(out));
    else
      cu::rlooLoss(nullptr, r, static_cast<float *>(out));
    compare(op, {out}, kF32);
  }
}

TEST_F(Emu, KtoLossesAndKl) {
  std::vector<uint8_t> good = {1, 0, 1, 1, 0, 0, 1};
  for (bool withKl : {true, false}) {
    SCOPED_TRACE(withKl ? "kto" : "apo_zero_unpaired");
    json attrs = {{"beta", 0.5}, {"desirable_weight", 1.2}, {"undesirable_weight", 1.5},
                  {"loss_type", withKl ? "kto" : "apo_zero_unpaired"}};
    for (bool grad : {false, true}) {
      Op op(grad ? "kto_loss_grad" : "kto_loss", attrs);
      int g = grad ? op.floats({}, 0.0, 0.5) : -1;
      int pol = op.floats({7}), ref = op.floats({7}), label = op.ints({7}, good, DType::Bool),
          w = op.floats({7}, 0.1, 0.2), kl = withKl ? op.floats({}, 0.0, 0.3) : -1;
      std::vector<int> in = {pol, ref, label, w};
      if (grad)
        in.insert(in.begin(), g);
      if (withKl)
        in.push_back(kl);
      if (grad)
        op.in(in).out({op.output({7})});
      else
        op.in(in).out({op.output({}), op.output({7}), op.output({})});
      cu::Kto k;
      k.kind = withKl ? KtoKind::Kto : KtoKind::ApoZeroUnpaired;
      k.beta = 0.5f, k.desirable = 1.2f, k.undesirable = 1.5f;
      auto f = [&](int t) { return static_cast<const float *>(dev(op, t)); };
      k.pol = f(pol), k.ref = f(ref), k.weights = f(w), k.kl = withKl ? f(kl) : nullptr;
      k.label = index(op, label);
      k.label.type = cu::Index::U8;
      k.n = 7;
      std::vector<void *> outs;
      for (int t : op.call.out)
        outs.push_back(dev(op, t));
      auto o = [&](int j) { return static_cast<float *>(outs[j]); };
      if (grad)
        cu::ktoLossGrad(nullptr, k, f(g), o(0));
      else
        cu::ktoLoss(nullptr, k, o(0), o(1), o(2));
      compare(op, outs, kF32);
    }
  }
  Op op("kto_kl", json::object());
  int a = op.floats({300}), b = op.floats({300}), w = op.floats({300}, 0.01, 0.02);
  op.in({a, b, w}).out({op.output({})});
  void *out = dev(op, op.call.out[0]);
  auto f = [&](int t) { return static_cast<const float *>(dev(op, t)); };
  cu::ktoKl(nullptr, f(a), f(b), f(w), static_cast<float *>(out), 300);
  compare(op, {out}, kF32);
}

} // namespace
