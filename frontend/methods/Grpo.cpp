//===- Grpo.cpp - group relative policy optimization's step ---------------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

/// GRPO trains on generated completions: the batch carries prompt +
/// completion tokens, the sampling policy's log-probabilities and the
/// group-normalised advantages. Log-probabilities are of the logits divided
/// by the sampling temperature, as TRL's.
StepResults buildGrpoLoss(ModelBuilder &m, func::FuncOp fn) {
  const Recipe &recipe = m.recipe;
  int64_t batch = m.stepShape.batch, seqLen = m.stepShape.sequenceBound;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, batch);
  Value completionMask = m.input(fn, "completion_mask", m.act({batch, seqLen}));
  // With one iteration per batch TRL's old log-probabilities are the
  // step's own, detached (the ratio is exactly 1): the loss reads the same
  // value, and grpo_loss differentiates its first operand only. Later
  // iterations read the ones @old_token_logps computed before the first.
  bool iterate = recipe.grpo.numIterations > 1;
  Value oldLogp = iterate ? m.input(fn, "old_per_token_logps", m.act({batch, seqLen})) : Value();
  Value advantages = m.input(fn, "advantages", m.act({batch}));
  Value normalizer = m.input(fn, "num_items_in_batch", m.tensor({}, m.f32));
  double temperature = recipe.grpo.temperature;
  Value lp = m.tokenLogProbs(in, batch, temperature);
  if (!oldLogp)
    oldLogp = lp;
  Value refLp;
  if (recipe.grpo.beta != 0) {
    m.useParameters("reference");
    refLp = m.tokenLogProbs(in, batch, temperature);
    m.useParameters("policy");
  }
  auto lossType = *symbolizeGrpoLossType(recipe.grpo.lossType);
  Value loss = m.b.create<GrpoLossOp>(
      m.loc, m.tensor({}, m.f32), lp, oldLogp, advantages, completionMask, normalizer, refLp,
      m.b.getF64FloatAttr(recipe.grpo.epsilon), m.b.getF64FloatAttr(recipe.grpo.epsilonHigh),
      m.b.getF64FloatAttr(recipe.grpo.beta), GrpoLossTypeAttr::get(&m.ctx, lossType),
      recipe.grpo.sequenceLevel ? m.b.getUnitAttr() : UnitAttr());
  // The log-probabilities, for the KL and clipping metrics the runtime
  // computes (TRL's kl, clip_ratio/*).
  StepResults out{loss, {{"per_token_logps", lp}}};
  if (refLp)
    out.metrics.push_back({"ref_per_token_logps", refLp});
  return out;
}

} // namespace trlc
