//===- Kto.cpp - Kahneman-Tversky optimization's step ---------------------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

namespace {

Value seqLogProbs(ModelBuilder &m, const ModelBuilder::TokenInputs &t, Value mask) {
  int64_t batch = m.stepShape.batch;
  Value lp = m.tokenLogProbs(t, batch);
  return m.b.create<MaskedSumOp>(m.loc, m.act({batch}), lp, mask).getResult();
}

} // namespace

/// KTO batches carry the completions, their labels and `weights` (the
/// runtime: 1 / (real rows x accumulation x ranks), 0 for padding); for
/// loss_type kto also, for the KL estimate, each prompt with another row's
/// completion (the data plan's mismatched pairs) and `kl_weights`
/// (1 / (real rows x ranks)). The KL is summed over the ranks. With
/// precompute_ref_log_probs the reference's log-probabilities are the
/// inputs reference_logps and reference_kl_logps (@ref_logps).
StepResults buildKtoLoss(ModelBuilder &m, func::FuncOp fn) {
  const Recipe &recipe = m.recipe;
  int64_t batch = m.stepShape.batch, seqLen = m.stepShape.sequenceBound;
  bool withKl = recipe.kto.lossType == "kto", pre = recipe.reference.precompute;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, batch);
  Value completionMask = m.input(fn, "completion_mask", m.act({batch, seqLen}));
  Value label = m.input(fn, "label", m.tensor({batch}, m.b.getI1Type()));
  Value weights = m.input(fn, "weights", m.act({batch}));
  ModelBuilder::TokenInputs kl;
  Value klCompletionMask, klWeights, ref, klRef;
  if (withKl) {
    kl = m.tokenInputs(fn, batch, "kl_");
    klCompletionMask = m.input(fn, "kl_completion_mask", m.act({batch, seqLen}));
    klWeights = m.input(fn, "kl_weights", m.act({batch}));
  }
  if (pre) {
    ref = m.input(fn, "reference_logps", m.act({batch}));
    if (withKl)
      klRef = m.input(fn, "reference_kl_logps", m.act({batch}));
  }
  m.useParameters("policy");
  Value pi = seqLogProbs(m, in, completionMask);
  Value klPi = withKl ? seqLogProbs(m, kl, klCompletionMask) : Value();
  if (!pre) {
    m.useParameters("reference");
    ref = seqLogProbs(m, in, completionMask);
    if (withKl)
      klRef = seqLogProbs(m, kl, klCompletionMask);
    m.useParameters("policy");
  }
  Value klEstimate;
  if (withKl) {
    klEstimate = m.b.create<KtoKlOp>(m.loc, m.tensor({}, m.f32), klPi, klRef, klWeights);
    if (m.stepShape.worldSize > 1)
      klEstimate = m.b.create<AllReduceOp>(
          m.loc, klEstimate.getType(), klEstimate, m.b.getI64IntegerAttr(m.stepShape.worldSize),
          ReduceKindAttr::get(&m.ctx, ReduceKind::sum));
  }
  auto op = m.b.create<KtoLossOp>(
      m.loc, m.tensor({}, m.f32), m.act({batch}), m.tensor({}, m.f32), pi, ref, label, weights,
      klEstimate, m.b.getF64FloatAttr(recipe.kto.beta),
      m.b.getF64FloatAttr(recipe.kto.desirableWeight),
      m.b.getF64FloatAttr(recipe.kto.undesirableWeight),
      KtoLossTypeAttr::get(&m.ctx, *symbolizeKtoLossType(recipe.kto.lossType)));
  return {op.getLoss(),
          {{"rewards", op.getRewards()}, {"logps", pi}, {"kl", op.getKlOut()}}};
}

void buildKtoRefLogps(ModelBuilder &m, ModuleOp module) {
  OpBuilder &b = m.b;
  b.setInsertionPointToEnd(module.getBody());
  auto fn = b.create<func::FuncOp>(m.loc, "ref_logps", b.getFunctionType({}, {}));
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  int64_t batch = m.stepShape.batch, seqLen = m.stepShape.sequenceBound;
  bool withKl = m.recipe.kto.lossType == "kto";
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, batch);
  Value mask = m.input(fn, "completion_mask", m.act({batch, seqLen}));
  ModelBuilder::TokenInputs kl;
  Value klMask;
  if (withKl) {
    kl = m.tokenInputs(fn, batch, "kl_");
    klMask = m.input(fn, "kl_completion_mask", m.act({batch, seqLen}));
  }
  // The policy before training is the reference (see buildDpoRefLogps).
  m.useParameters("policy");
  SmallVector<Value> results{seqLogProbs(m, in, mask)};
  if (withKl)
    results.push_back(seqLogProbs(m, kl, klMask));
  b.create<func::ReturnOp>(m.loc, results);
  fn.setType(b.getFunctionType(entry->getArgumentTypes(), ValueRange(results).getTypes()));
  fn.setResultAttr(0, "trl.output", b.getStringAttr("reference_logps"));
  if (withKl)
    fn.setResultAttr(1, "trl.output", b.getStringAttr("reference_kl_logps"));
}

} // namespace trlc
