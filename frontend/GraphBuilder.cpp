//===- GraphBuilder.cpp - recipe to `trl` module --------------------------===//
//
// Batch tensors (function arguments, named by `trl.input`):
//   input_ids      [B, S] i64   token ids, padded with the pad id
//   position_ids   [B, S] i64   0.. per example (per document once packed)
//   attention_mask [B, S] i64   1 on real tokens
//   labels         [B, S] i64   next-token targets already shifted; -100 is
//                               ignored (prompt, padding, last position)
// plus the method's extra inputs (see each build*Loss).
//
//===----------------------------------------------------------------------===//

#include "frontend/GraphBuilder.h"
#include "dialect/TrlDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

#include <cmath>

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

int64_t sequenceBound(const Recipe &recipe) {
  if (recipe.method == Method::GRPO)
    return *recipe.data.maxPromptLength + *recipe.data.maxCompletionLength;
  return *recipe.data.maxLength;
}

namespace {

class Builder {
public:
  Builder(MLIRContext &ctx, const Recipe &recipe)
      : ctx(ctx), b(&ctx), recipe(recipe), cfg(recipe.model.config),
        loc(b.getUnknownLoc()), f32(b.getF32Type()), i64(b.getI64Type()) {}

  OwningOpRef<ModuleOp> build();

private:
  RankedTensorType tensor(ArrayRef<int64_t> shape, Type elt) {
    return RankedTensorType::get(shape, elt);
  }
  RankedTensorType act(ArrayRef<int64_t> shape) { return tensor(shape, f32); }

  Value param(const std::string &name, ArrayRef<int64_t> shape,
              bool transposed = false) {
    auto op = b.create<ParamOp>(loc, act(shape), b.getStringAttr(name),
                                b.getBoolAttr(paramSet == "policy"),
                                b.getStringAttr(paramSet),
                                transposed ? b.getUnitAttr() : UnitAttr());
    return op.getResult();
  }

  Value input(func::FuncOp fn, const std::string &name,
              RankedTensorType type) {
    unsigned index = fn.getNumArguments();
    fn.insertArgument(index, type, b.getDictionaryAttr({}), loc);
    fn.setArgAttr(index, "trl.input", b.getStringAttr(name));
    if (type.getRank() >= 2 && type.getDimSize(1) == seqLen)
      fn.setArgAttr(index, "trl.seq_bound",
                    SeqBoundAttr::get(&ctx, seqLen, boundSource()));
    return fn.getArgument(index);
  }

  StringRef boundSource() const {
    if (!recipe.data.seqBoundSource.empty())
      return recipe.data.seqBoundSource;
    return recipe.method == Method::GRPO
               ? "max_prompt_length + max_completion_length"
               : "max_length";
  }

  Value linear(Value x, Value w, Value bias = {}) {
    auto xt = cast<RankedTensorType>(x.getType());
    auto wt = cast<RankedTensorType>(w.getType());
    SmallVector<int64_t> shape(xt.getShape().drop_back());
    shape.push_back(wt.getDimSize(0));
    return b.create<LinearOp>(loc, act(shape), x, w, bias);
  }

  Value reshape(Value x, ArrayRef<int64_t> shape) {
    return b.create<ReshapeOp>(loc, act(shape), x);
  }

  Value add(Value a, Value c) { return b.create<AddOp>(loc, a, c); }

  Value rmsNorm(Value x, Value w) {
    return b.create<RmsNormOp>(loc, x.getType(), x, w,
                               b.getF64FloatAttr(cfg.normEps));
  }

  Value layerNorm(Value x, const std::string &prefix) {
    Value w = param(prefix + ".weight", {cfg.hiddenSize});
    Value bias = param(prefix + ".bias", {cfg.hiddenSize});
    return b.create<LayerNormOp>(loc, x.getType(), x, w, bias,
                                 b.getF64FloatAttr(cfg.normEps));
  }

  Value attention(Value q, Value k, Value v, Value mask, int64_t batch) {
    auto lse = act({batch, cfg.numHeads, seqLen});
    auto op = b.create<AttentionOp>(
        loc, q.getType(), lse, q, k, v, mask, /*cu_seqlens=*/Value(),
        AttentionLayoutAttr::get(&ctx, AttentionLayout::padded),
        b.getBoolAttr(true),
        b.getF64FloatAttr(1.0 / std::sqrt(static_cast<double>(cfg.headDim))),
        IntegerAttr());
    return op.getOut();
  }

  Value rope(Value x, Value positions) {
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

  /// The token tensors every method's batch has, named `prefix` + name.
  struct TokenInputs {
    Value ids, positions, mask, labels;
  };
  TokenInputs tokenInputs(func::FuncOp fn, int64_t rows,
                          const std::string &prefix = "") {
    auto type = tensor({rows, seqLen}, i64);
    return {input(fn, prefix + "input_ids", type),
            input(fn, prefix + "position_ids", type),
            input(fn, prefix + "attention_mask", type),
            input(fn, prefix + "labels", type)};
  }

  /// Final hidden states [B, S, H] of the llama family.
  Value llamaForward(Value ids, Value positions, Value mask, int64_t batch);
  /// Final hidden states [B, S, H] of gpt2.
  Value gpt2Forward(Value ids, Value positions, Value mask, int64_t batch);
  /// Hidden states and the output-head weight of the current parameter set.
  std::pair<Value, Value> forward(Value ids, Value positions, Value mask,
                                  int64_t batch);
  /// Per-token log-probabilities [B, S] of the batch's labels.
  Value tokenLogProbs(const TokenInputs &in, int64_t batch);

  Value buildSft(func::FuncOp fn);
  Value buildDpo(func::FuncOp fn);
  Value buildKto(func::FuncOp fn);
  Value buildGrpo(func::FuncOp fn);
  /// `@predict`: next-token logits of a batch, for greedy evaluation.
  void buildPredict(ModuleOp module);

  MLIRContext &ctx;
  OpBuilder b;
  const Recipe &recipe;
  const ModelConfig &cfg;
  Location loc;
  Type f32, i64;
  int64_t seqLen = 0;
  std::string paramSet = "policy";
};

Value Builder::llamaForward(Value ids, Value positions, Value mask,
                            int64_t batch) {
  const int64_t h = cfg.hiddenSize, d = cfg.headDim, hq = cfg.numHeads,
                hkv = cfg.numKvHeads, s = seqLen;
  Value embed = param("model.embed_tokens.weight", {cfg.vocabSize, h});
  Value x = b.create<EmbeddingOp>(loc, act({batch, s, h}), embed, ids);
  bool oBias = cfg.attentionBias && cfg.family != ModelFamily::Qwen2;
  for (int64_t l = 0; l < cfg.numLayers; ++l) {
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
    Value o = reshape(attention(q, k, v, mask, batch), {batch, s, hq * d});
    Value ow = param(p + "self_attn.o_proj.weight", {h, hq * d});
    Value ob = oBias ? param(p + "self_attn.o_proj.bias", {h}) : Value();
    x = add(x, linear(o, ow, ob));
    Value n2 = rmsNorm(x, param(p + "post_attention_layernorm.weight", {h}));
    int64_t f = cfg.intermediateSize;
    Value gate = linear(n2, param(p + "mlp.gate_proj.weight", {f, h}));
    Value up = linear(n2, param(p + "mlp.up_proj.weight", {f, h}));
    Value a = b.create<SwigluOp>(loc, gate.getType(), gate, up);
    x = add(x, linear(a, param(p + "mlp.down_proj.weight", {h, f})));
  }
  return rmsNorm(x, param("model.norm.weight", {h}));
}

Value Builder::gpt2Forward(Value ids, Value positions, Value mask,
                           int64_t batch) {
  const int64_t h = cfg.hiddenSize, d = cfg.headDim, hq = cfg.numHeads,
                s = seqLen, f = cfg.intermediateSize;
  Value wte = param("transformer.wte.weight", {cfg.vocabSize, h});
  Value wpe = param("transformer.wpe.weight", {cfg.maxPositionEmbeddings, h});
  Value x = add(b.create<EmbeddingOp>(loc, act({batch, s, h}), wte, ids),
                b.create<EmbeddingOp>(loc, act({batch, s, h}), wpe, positions));
  auto approx = GeluApproximationAttr::get(
      &ctx, cfg.hiddenAct == "gelu" ? GeluApproximation::none
                                    : GeluApproximation::tanh);
  for (int64_t l = 0; l < cfg.numLayers; ++l) {
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
    Value o = reshape(attention(q, k, v, mask, batch), {batch, s, h});
    x = add(x, linear(o, param(p + "attn.c_proj.weight", {h, h}, true),
                      param(p + "attn.c_proj.bias", {h})));
    Value n2 = layerNorm(x, p + "ln_2");
    Value fc = linear(n2, param(p + "mlp.c_fc.weight", {f, h}, true),
                      param(p + "mlp.c_fc.bias", {f}));
    Value a = b.create<GeluOp>(loc, fc, approx);
    x = add(x, linear(a, param(p + "mlp.c_proj.weight", {h, f}, true),
                      param(p + "mlp.c_proj.bias", {h})));
  }
  return layerNorm(x, "transformer.ln_f");
}

std::pair<Value, Value> Builder::forward(Value ids, Value positions,
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

Value Builder::tokenLogProbs(const TokenInputs &in, int64_t batch) {
  auto [hidden, head] = forward(in.ids, in.positions, in.mask, batch);
  Value logits = linear(hidden, head);
  return b.create<LogProbsOp>(loc, act({batch, seqLen}), logits, in.labels,
                              b.getI64IntegerAttr(-100));
}

Value Builder::buildSft(func::FuncOp fn) {
  int64_t batch = recipe.train.perDeviceTrainBatchSize;
  TokenInputs in = tokenInputs(fn, batch);
  // Trainable tokens of the whole accumulated batch (TRL's normalisation).
  Value numItems = input(fn, "num_items_in_batch", tensor({}, f32));
  auto [hidden, head] = forward(in.ids, in.positions, in.mask, batch);
  Value logits = linear(hidden, head);
  Value sum = b.create<CrossEntropyOp>(loc, tensor({}, f32), logits, in.labels,
                                       b.getI64IntegerAttr(-100));
  return b.create<DivOp>(loc, sum.getType(), sum, numItems);
}

/// Preference batches hold the B chosen rows, then the B rejected rows.
Value Builder::buildDpo(func::FuncOp fn) {
  int64_t pairs = recipe.train.perDeviceTrainBatchSize, rows = 2 * pairs;
  TokenInputs in = tokenInputs(fn, rows);
  Value completionMask = input(fn, "completion_mask", act({rows, seqLen}));
  auto seqLogProbs = [&](const std::string &set) {
    paramSet = set;
    Value lp = tokenLogProbs(in, rows);
    Value seq = b.create<MaskedSumOp>(loc, act({rows}), lp, completionMask);
    auto halves = b.create<SplitOp>(loc, TypeRange{act({pairs}), act({pairs})},
                                    seq, b.getI64IntegerAttr(0));
    return std::make_pair(halves.getResult(0), halves.getResult(1));
  };
  auto [pc, pr] = seqLogProbs("policy");
  auto [rc, rr] = seqLogProbs("reference");
  paramSet = "policy";
  auto lossType = *symbolizeDpoLossType(recipe.dpo.lossType);
  auto op = b.create<DpoLossOp>(
      loc, tensor({}, f32), act({pairs}), act({pairs}), pc, pr, rc, rr,
      b.getF64FloatAttr(recipe.dpo.beta),
      DpoLossTypeAttr::get(&ctx, lossType),
      b.getF64FloatAttr(recipe.dpo.labelSmoothing));
  return op.getLoss();
}

/// KTO batches carry the completions and, for the KL estimate, the same
/// completions paired with other prompts of the batch.
Value Builder::buildKto(func::FuncOp fn) {
  int64_t batch = recipe.train.perDeviceTrainBatchSize;
  TokenInputs in = tokenInputs(fn, batch);
  Value completionMask = input(fn, "completion_mask", act({batch, seqLen}));
  TokenInputs kl = tokenInputs(fn, batch, "kl_");
  Value klCompletionMask =
      input(fn, "kl_completion_mask", act({batch, seqLen}));
  Value label = input(fn, "label", tensor({batch}, b.getI1Type()));
  auto seqLogProbs = [&](const TokenInputs &t, Value cm) {
    Value lp = tokenLogProbs(t, batch);
    return b.create<MaskedSumOp>(loc, act({batch}), lp, cm).getResult();
  };
  paramSet = "policy";
  Value pi = seqLogProbs(in, completionMask);
  Value klPi = seqLogProbs(kl, klCompletionMask);
  paramSet = "reference";
  Value ref = seqLogProbs(in, completionMask);
  Value klRef = seqLogProbs(kl, klCompletionMask);
  paramSet = "policy";
  auto op = b.create<KtoLossOp>(
      loc, tensor({}, f32), act({batch}), tensor({}, f32), pi, ref, klPi,
      klRef, label, b.getF64FloatAttr(recipe.kto.beta),
      b.getF64FloatAttr(recipe.kto.desirableWeight),
      b.getF64FloatAttr(recipe.kto.undesirableWeight));
  return op.getLoss();
}

/// GRPO trains on generated completions: the batch carries prompt +
/// completion tokens, the sampling policy's log-probabilities and the
/// group-normalised advantages.
Value Builder::buildGrpo(func::FuncOp fn) {
  int64_t batch = recipe.train.perDeviceTrainBatchSize;
  TokenInputs in = tokenInputs(fn, batch);
  Value completionMask = input(fn, "completion_mask", act({batch, seqLen}));
  Value oldLogp = input(fn, "old_per_token_logps", act({batch, seqLen}));
  Value advantages = input(fn, "advantages", act({batch}));
  Value normalizer = input(fn, "num_items_in_batch", tensor({}, f32));
  Value lp = tokenLogProbs(in, batch);
  Value refLp;
  if (recipe.grpo.beta != 0) {
    paramSet = "reference";
    refLp = tokenLogProbs(in, batch);
    paramSet = "policy";
  }
  auto lossType = *symbolizeGrpoLossType(recipe.grpo.lossType);
  return b.create<GrpoLossOp>(
      loc, tensor({}, f32), lp, oldLogp, advantages, completionMask,
      normalizer, refLp, b.getF64FloatAttr(recipe.grpo.epsilon),
      b.getF64FloatAttr(recipe.grpo.epsilonHigh),
      b.getF64FloatAttr(recipe.grpo.beta),
      GrpoLossTypeAttr::get(&ctx, lossType));
}

void Builder::buildPredict(ModuleOp module) {
  b.setInsertionPointToEnd(module.getBody());
  auto fn = b.create<func::FuncOp>(loc, "predict", b.getFunctionType({}, {}));
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  int64_t batch = recipe.train.perDeviceTrainBatchSize;
  auto type = tensor({batch, seqLen}, i64);
  Value ids = input(fn, "input_ids", type);
  Value positions = input(fn, "position_ids", type);
  Value mask = input(fn, "attention_mask", type);
  auto [hidden, head] = forward(ids, positions, mask, batch);
  Value logits = linear(hidden, head);
  b.create<func::ReturnOp>(loc, logits);
  fn.setType(b.getFunctionType(entry->getArgumentTypes(), {logits.getType()}));
  fn.setResultAttr(0, "trl.output", b.getStringAttr("logits"));
}

OwningOpRef<ModuleOp> Builder::build() {
  seqLen = sequenceBound(recipe);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  module->getOperation()->setAttr("trl.recipe", b.getStringAttr(recipe.file));
  b.setInsertionPointToEnd(module->getBody());
  auto fn = b.create<func::FuncOp>(loc, "train_step",
                                   b.getFunctionType({}, {}));
  fn->setAttr("trl.method", b.getStringAttr(methodName(recipe.method)));
  fn->setAttr("trl.model_type", b.getStringAttr(familyName(cfg.family)));
  if (recipe.method == Method::SFT) {
    auto strategy = recipe.data.packing
                        ? *symbolizePackingStrategy(recipe.data.packingStrategy)
                        : PackingStrategy::none;
    fn->setAttr("trl.packing", PackingAttr::get(&ctx, strategy, seqLen,
                                                recipe.data.paddingFree));
  }
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  Value loss;
  switch (recipe.method) {
  case Method::SFT: loss = buildSft(fn); break;
  case Method::DPO: loss = buildDpo(fn); break;
  case Method::KTO: loss = buildKto(fn); break;
  case Method::GRPO: loss = buildGrpo(fn); break;
  }
  b.create<func::ReturnOp>(loc, loss);
  fn.setType(b.getFunctionType(entry->getArgumentTypes(), {loss.getType()}));
  if (recipe.method == Method::SFT && !recipe.data.eval.empty())
    buildPredict(*module);
  return module;
}

} // namespace

OwningOpRef<ModuleOp> buildTrainStep(MLIRContext &context,
                                     const Recipe &recipe) {
  context.loadDialect<TrlDialect, func::FuncDialect>();
  return Builder(context, recipe).build();
}

} // namespace trlc
