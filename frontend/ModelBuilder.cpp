//===- ModelBuilder.cpp - the model's forward pass as `trl` ops -----------===//

#include "frontend/ModelBuilder.h"

#include <cmath>

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

ModelBuilder::ModelBuilder(MLIRContext &ctx, const Recipe &recipe, const StepShape &stepShape)
    : ctx(ctx), b(&ctx), recipe(recipe), stepShape(stepShape), loc(b.getUnknownLoc()),
      f32(b.getF32Type()), i64(b.getI64Type()), cfg(recipe.model.config),
      seqLen(stepShape.sequenceBound) {}

Value ModelBuilder::param(const std::string &name, ArrayRef<int64_t> shape,
                          bool transposed) {
  auto op = b.create<ParamOp>(loc, act(shape), b.getStringAttr(paramPrefix + name),
                              b.getBoolAttr(paramSet == "policy"),
                              b.getStringAttr(paramSet),
                              transposed ? b.getUnitAttr() : UnitAttr());
  return op.getResult();
}

Value ModelBuilder::input(func::FuncOp fn, const std::string &name,
                          RankedTensorType type) {
  unsigned index = fn.getNumArguments();
  fn.insertArgument(index, type, b.getDictionaryAttr({}), loc);
  fn.setArgAttr(index, "trl.input", b.getStringAttr(name));
  if (type.getRank() >= 2 && type.getDimSize(1) == seqLen)
    fn.setArgAttr(index, "trl.seq_bound",
                  SeqBoundAttr::get(&ctx, seqLen, stepShape.boundSource));
  return fn.getArgument(index);
}

Value ModelBuilder::linear(Value x, Value w, Value bias) {
  auto xt = cast<RankedTensorType>(x.getType());
  auto wt = cast<RankedTensorType>(w.getType());
  SmallVector<int64_t> shape(xt.getShape().drop_back());
  shape.push_back(wt.getDimSize(0));
  return b.create<LinearOp>(loc, act(shape), x, w, bias);
}

Value ModelBuilder::reshape(Value x, ArrayRef<int64_t> shape) {
  return b.create<ReshapeOp>(loc, act(shape), x);
}

Value ModelBuilder::add(Value a, Value c) { return b.create<AddOp>(loc, a, c); }

Value ModelBuilder::rmsNorm(Value x, Value w) {
  return b.create<RmsNormOp>(loc, x.getType(), x, w,
                             b.getF64FloatAttr(cfg.normEps));
}

Value ModelBuilder::layerNorm(Value x, const std::string &prefix) {
  Value w = param(prefix + ".weight", {cfg.hiddenSize});
  Value bias = param(prefix + ".bias", {cfg.hiddenSize});
  return b.create<LayerNormOp>(loc, x.getType(), x, w, bias,
                               b.getF64FloatAttr(cfg.normEps));
}

Value ModelBuilder::attention(Value q, Value k, Value v, Value mask, int64_t batch) {
  auto lse = act({batch, cfg.numHeads, cast<RankedTensorType>(q.getType()).getDimSize(1)});
  auto op = b.create<AttentionOp>(
      loc, q.getType(), lse, q, k, v, mask, /*cu_seqlens=*/Value(),
      AttentionLayoutAttr::get(&ctx, AttentionLayout::padded),
      b.getBoolAttr(true),
      b.getF64FloatAttr(1.0 / std::sqrt(static_cast<double>(cfg.headDim))),
      IntegerAttr());
  return op.getOut();
}

Value ModelBuilder::attend(Value q, Value k, Value v, Value mask, Value positions,
                           int64_t batch, int64_t layer) {
  if (!kvCache)
    return attention(q, k, v, mask, batch);
  auto cacheType = act({batch, kvCache->slots, cfg.numKvHeads, cfg.headDim});
  auto write = [&](const char *which, Value x) {
    std::string key = "kv:" + std::to_string(layer) + "." + which;
    func::FuncOp fn = kvCache->fn;
    unsigned index = fn.getNumArguments();
    fn.insertArgument(index, cacheType, b.getDictionaryAttr({}), loc);
    fn.setArgAttr(index, "trl.state", b.getStringAttr(key));
    Value updated = b.create<CacheWriteOp>(loc, cacheType, fn.getArgument(index), x, positions);
    kvCache->written.push_back({key, updated});
    return updated;
  };
  Value kc = write("k", k), vc = write("v", v);
  if (kvCache->prefill)
    return attention(q, k, v, mask, batch);
  return b.create<CachedAttentionOp>(
      loc, q.getType(), q, kc, vc, kvCache->slotMask, positions,
      b.getF64FloatAttr(1.0 / std::sqrt(static_cast<double>(cfg.headDim))));
}

Value ModelBuilder::rope(Value x, Value positions) {
  RopeScalingAttr scaling;
  if (cfg.ropeScaling)
    scaling = RopeScalingAttr::get(
        &ctx, b.getF64FloatAttr(cfg.ropeScaling->factor),
        b.getF64FloatAttr(cfg.ropeScaling->lowFreqFactor),
        b.getF64FloatAttr(cfg.ropeScaling->highFreqFactor),
        cfg.ropeScaling->originalMaxPositionEmbeddings);
  return b.create<RopeOp>(loc, x.getType(), x, positions,
                          b.getF64FloatAttr(cfg.ropeTheta), scaling,
                          UnitAttr());
}

Operation *ModelBuilder::lastBuilt() {
  Block *block = b.getInsertionBlock();
  auto ip = b.getInsertionPoint();
  return ip == block->begin() ? nullptr : &*std::prev(ip);
}

void ModelBuilder::tagLayer(Operation *before, int64_t layer) {
  Block *block = b.getInsertionBlock();
  auto tag = b.getStringAttr(layer < 0 ? std::string() : paramPrefix + std::to_string(layer));
  auto it = before ? std::next(Block::iterator(before)) : block->begin();
  for (; it != b.getInsertionPoint(); ++it)
    if (!isa<ParamOp>(*it))
      it->setAttr("trl.layer", tag);
}

ModelBuilder::TokenInputs ModelBuilder::tokenInputs(func::FuncOp fn, int64_t rows,
                                                     const std::string &prefix) {
  auto type = tensor({rows, seqLen}, i64);
  return {input(fn, prefix + "input_ids", type),
          input(fn, prefix + "position_ids", type),
          input(fn, prefix + "attention_mask", type),
          input(fn, prefix + "labels", type)};
}

Value ModelBuilder::llamaForward(Value ids, Value positions, Value mask,
                            int64_t batch) {
  const int64_t h = cfg.hiddenSize, d = cfg.headDim, hq = cfg.numHeads,
                hkv = cfg.numKvHeads, s = cast<RankedTensorType>(ids.getType()).getDimSize(1);
  Value embed = param("model.embed_tokens.weight", {cfg.vocabSize, h});
  Value x = b.create<EmbeddingOp>(loc, act({batch, s, h}), embed, ids);
  bool oBias = cfg.attentionBias && cfg.family != ModelFamily::Qwen2;
  for (int64_t l = 0; l < cfg.numLayers; ++l) {
    Operation *before = lastBuilt();
    std::string p = "model.layers." + std::to_string(l) + ".";
    Value n1 = rmsNorm(x, param(p + "input_layernorm.weight", {h}));
    auto proj = [&](const char *name, int64_t heads, bool bias) {
      std::string base = p + "self_attn." + name;
      Value w = param(base + ".weight", {heads * d, h});
      Value bv = bias ? param(base + ".bias", {heads * d}) : Value();
      return reshape(linear(n1, w, bv), {batch, s, heads, d});
    };
    Value q = proj("q_proj", hq, cfg.attentionBias);
    Value k = proj("k_proj", hkv, cfg.attentionBias);
    Value v = proj("v_proj", hkv, cfg.attentionBias);
    if (cfg.qkNorm) {
      q = rmsNorm(q, param(p + "self_attn.q_norm.weight", {d}));
      k = rmsNorm(k, param(p + "self_attn.k_norm.weight", {d}));
    }
    q = rope(q, positions);
    k = rope(k, positions);
    Value o = reshape(attend(q, k, v, mask, positions, batch, l), {batch, s, hq * d});
    Value ow = param(p + "self_attn.o_proj.weight", {h, hq * d});
    Value ob = oBias ? param(p + "self_attn.o_proj.bias", {h}) : Value();
    x = add(x, linear(o, ow, ob));
    Value n2 = rmsNorm(x, param(p + "post_attention_layernorm.weight", {h}));
    int64_t f = cfg.intermediateSize;
    Value gate = linear(n2, param(p + "mlp.gate_proj.weight", {f, h}));
    Value up = linear(n2, param(p + "mlp.up_proj.weight", {f, h}));
    Value a = b.create<SwigluOp>(loc, gate.getType(), gate, up);
    x = add(x, linear(a, param(p + "mlp.down_proj.weight", {h, f})));
    tagLayer(before, l);
  }
  Operation *before = lastBuilt();
  Value out = rmsNorm(x, param("model.norm.weight", {h}));
  tagLayer(before, -1);
  return out;
}

Value ModelBuilder::gpt2Forward(Value ids, Value positions, Value mask,
                           int64_t batch) {
  const int64_t h = cfg.hiddenSize, d = cfg.headDim, hq = cfg.numHeads,
                s = cast<RankedTensorType>(ids.getType()).getDimSize(1), f = cfg.intermediateSize;
  Value wte = param("transformer.wte.weight", {cfg.vocabSize, h});
  Value wpe = param("transformer.wpe.weight", {cfg.maxPositionEmbeddings, h});
  Value x = add(b.create<EmbeddingOp>(loc, act({batch, s, h}), wte, ids),
                b.create<EmbeddingOp>(loc, act({batch, s, h}), wpe, positions));
  auto approx = GeluApproximationAttr::get(
      &ctx, cfg.hiddenAct == "gelu" ? GeluApproximation::none
                                    : GeluApproximation::tanh);
  for (int64_t l = 0; l < cfg.numLayers; ++l) {
    Operation *before = lastBuilt();
    std::string p = "transformer.h." + std::to_string(l) + ".";
    Value n1 = layerNorm(x, p + "ln_1");
    // Conv1D weights are stored [in, out]; loading transposes them.
    Value qkv = linear(n1, param(p + "attn.c_attn.weight", {3 * h, h}, true),
                       param(p + "attn.c_attn.bias", {3 * h}));
    auto parts = b.create<SplitOp>(
        loc, TypeRange{act({batch, s, h}), act({batch, s, h}), act({batch, s, h})},
        qkv, b.getI64IntegerAttr(2));
    Value q = reshape(parts.getResult(0), {batch, s, hq, d});
    Value k = reshape(parts.getResult(1), {batch, s, hq, d});
    Value v = reshape(parts.getResult(2), {batch, s, hq, d});
    Value o = reshape(attend(q, k, v, mask, positions, batch, l), {batch, s, h});
    x = add(x, linear(o, param(p + "attn.c_proj.weight", {h, h}, true),
                      param(p + "attn.c_proj.bias", {h})));
    Value n2 = layerNorm(x, p + "ln_2");
    Value fc = linear(n2, param(p + "mlp.c_fc.weight", {f, h}, true),
                      param(p + "mlp.c_fc.bias", {f}));
    Value a = b.create<GeluOp>(loc, fc, approx);
    x = add(x, linear(a, param(p + "mlp.c_proj.weight", {h, f}, true),
                      param(p + "mlp.c_proj.bias", {h})));
    tagLayer(before, l);
  }
  Operation *before = lastBuilt();
  Value out = layerNorm(x, "transformer.ln_f");
  tagLayer(before, -1);
  return out;
}

std::pair<Value, Value> ModelBuilder::forward(Value ids, Value positions,
                                         Value mask, int64_t batch) {
  if (cfg.family == ModelFamily::GPT2) {
    Value hidden = gpt2Forward(ids, positions, mask, batch);
    return {hidden, param("transformer.wte.weight",
                          {cfg.vocabSize, cfg.hiddenSize})};
  }
  Value hidden = llamaForward(ids, positions, mask, batch);
  Value head = cfg.tieWordEmbeddings
                   ? param("model.embed_tokens.weight",
                           {cfg.vocabSize, cfg.hiddenSize})
                   : param("lm_head.weight", {cfg.vocabSize, cfg.hiddenSize});
  return {hidden, head};
}

Value ModelBuilder::sequenceScores(const TokenInputs &in, Value last, int64_t batch) {
  Value hidden = cfg.family == ModelFamily::GPT2
                     ? gpt2Forward(in.ids, in.positions, in.mask, batch)
                     : llamaForward(in.ids, in.positions, in.mask, batch);
  Value score = linear(hidden, param("score.weight", {1, cfg.hiddenSize}));
  return b.create<MaskedSumOp>(loc, act({batch}), reshape(score, {batch, seqLen}), last);
}

Value ModelBuilder::tokenValues(const TokenInputs &in, int64_t batch) {
  Value hidden = cfg.family == ModelFamily::GPT2
                     ? gpt2Forward(in.ids, in.positions, in.mask, batch)
                     : llamaForward(in.ids, in.positions, in.mask, batch);
  return reshape(linear(hidden, param("score.weight", {1, cfg.hiddenSize})), {batch, seqLen});
}

Value ModelBuilder::tokenLogProbs(const TokenInputs &in, int64_t batch, double temperature) {
  auto [hidden, head] = forward(in.ids, in.positions, in.mask, batch);
  if (temperature != 1.0) {
    Value t = b.create<FillOp>(loc, tensor({}, f32), b.getF64FloatAttr(temperature));
    hidden = b.create<DivOp>(loc, hidden.getType(), hidden, t);
  }
  Value logits = linear(hidden, head);
  return b.create<LogProbsOp>(loc, act({batch, seqLen}), logits, in.labels,
                              b.getI64IntegerAttr(-100));
}

} // namespace trlc
