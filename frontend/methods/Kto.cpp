//===- Kto.cpp - Kahneman-Tversky optimization's step ---------------------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

/// KTO batches carry the completions, their labels and `weights` (the
/// runtime: 1 / (real rows x accumulation x ranks), 0 for padding); for
/// loss_type kto also, for the KL estimate, each prompt with another row's
/// completion (the data plan's mismatched pairs) and `kl_weights`
/// (1 / (real rows x ranks)). The KL is summed over the ranks.
StepResults buildKtoLoss(ModelBuilder &m, func::FuncOp fn) {
  const Recipe &recipe = m.recipe;
  int64_t batch = m.stepShape.batch, seqLen = m.stepShape.sequenceBound;
  bool withKl = recipe.kto.lossType == "kto";
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, batch);
  Value completionMask = m.input(fn, "completion_mask", m.act({batch, seqLen}));
  Value label = m.input(fn, "label", m.tensor({batch}, m.b.getI1Type()));
  Value weights = m.input(fn, "weights", m.act({batch}));
  ModelBuilder::TokenInputs kl;
  Value klCompletionMask, klWeights;
  if (withKl) {
    kl = m.tokenInputs(fn, batch, "kl_");
    klCompletionMask = m.input(fn, "kl_completion_mask", m.act({batch, seqLen}));
    klWeights = m.input(fn, "kl_weights", m.act({batch}));
  }
  auto seqLogProbs = [&](const ModelBuilder::TokenInputs &t, Value cm) {
    Value lp = m.tokenLogProbs(t, batch);
    return m.b.create<MaskedSumOp>(m.loc, m.act({batch}), lp, cm).getResult();
  };
  m.useParameters("policy");
  Value pi = seqLogProbs(in, completionMask);
  Value klPi = withKl ? seqLogProbs(kl, klCompletionMask) : Value();
  m.useParameters("reference");
  Value ref = seqLogProbs(in, completionMask);
  Value klEstimate;
  if (withKl) {
    Value klRef = seqLogProbs(kl, klCompletionMask);
    klEstimate = m.b.create<KtoKlOp>(m.loc, m.tensor({}, m.f32), klPi, klRef, klWeights);
    if (m.stepShape.worldSize > 1)
      klEstimate = m.b.create<AllReduceOp>(
          m.loc, klEstimate.getType(), klEstimate, m.b.getI64IntegerAttr(m.stepShape.worldSize),
          ReduceKindAttr::get(&m.ctx, ReduceKind::sum));
  }
  m.useParameters("policy");
  auto op = m.b.create<KtoLossOp>(
      m.loc, m.tensor({}, m.f32), m.act({batch}), m.tensor({}, m.f32), pi, ref, label, weights,
      klEstimate, m.b.getF64FloatAttr(recipe.kto.beta),
      m.b.getF64FloatAttr(recipe.kto.desirableWeight),
      m.b.getF64FloatAttr(recipe.kto.undesirableWeight),
      KtoLossTypeAttr::get(&m.ctx, *symbolizeKtoLossType(recipe.kto.lossType)));
  return {op.getLoss(),
          {{"rewards", op.getRewards()}, {"logps", pi}, {"kl", op.getKlOut()}}};
}

} // namespace trlc
