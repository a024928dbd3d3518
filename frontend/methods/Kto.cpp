//===- Kto.cpp - Kahneman-Tversky optimization's step ---------------------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

/// KTO batches carry the completions and, for the KL estimate, the same
/// completions paired with other prompts of the batch.
Value buildKtoLoss(ModelBuilder &m, func::FuncOp fn) {
  const Recipe &recipe = m.recipe;
  int64_t batch = m.stepShape.batch, seqLen = m.stepShape.sequenceBound;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, batch);
  Value completionMask = m.input(fn, "completion_mask", m.act({batch, seqLen}));
  ModelBuilder::TokenInputs kl = m.tokenInputs(fn, batch, "kl_");
  Value klCompletionMask = m.input(fn, "kl_completion_mask", m.act({batch, seqLen}));
  Value label = m.input(fn, "label", m.tensor({batch}, m.b.getI1Type()));
  auto seqLogProbs = [&](const ModelBuilder::TokenInputs &t, Value cm) {
    Value lp = m.tokenLogProbs(t, batch);
    return m.b.create<MaskedSumOp>(m.loc, m.act({batch}), lp, cm).getResult();
  };
  m.useParameters("policy");
  Value pi = seqLogProbs(in, completionMask);
  Value klPi = seqLogProbs(kl, klCompletionMask);
  m.useParameters("reference");
  Value ref = seqLogProbs(in, completionMask);
  Value klRef = seqLogProbs(kl, klCompletionMask);
  m.useParameters("policy");
  auto op = m.b.create<KtoLossOp>(
      m.loc, m.tensor({}, m.f32), m.act({batch}), m.tensor({}, m.f32), pi, ref, klPi, klRef,
      label, m.b.getF64FloatAttr(recipe.kto.beta),
      m.b.getF64FloatAttr(recipe.kto.desirableWeight),
      m.b.getF64FloatAttr(recipe.kto.undesirableWeight));
  return op.getLoss();
}

} // namespace trlc
