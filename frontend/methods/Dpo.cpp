//===- Dpo.cpp - direct preference optimization's step --------------------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

/// Preference batches hold the B chosen rows, then the B rejected rows,
/// with the completion tokens marked in completion_mask (completion_mean_mask
/// for IPO: 1 / the completion's tokens); `pair_weights`
/// weighs each pair's loss (the runtime: 1 / (real pairs x accumulation x
/// ranks), 0 for padding) and, with rpo_alpha, `nll_weight` the chosen
/// completions' NLL (1 / (their tokens x accumulation x ranks)).
StepResults buildDpoLoss(ModelBuilder &m, func::FuncOp fn) {
  const Recipe &recipe = m.recipe;
  int64_t pairs = m.stepShape.batch, rows = 2 * pairs, seqLen = m.stepShape.sequenceBound;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, rows);
  // IPO compares mean log-probabilities (TRL divides by the completion's
  // tokens): its mask weighs each completion token 1 / its tokens.
  bool ipo = recipe.dpo.lossType == "ipo";
  Value completionMask = m.input(fn, ipo ? "completion_mean_mask" : "completion_mask",
                                 m.act({rows, seqLen}));
  Value weights = m.input(fn, "pair_weights", m.act({pairs}));
  Value nllWeight;
  if (recipe.dpo.rpoAlpha > 0)
    nllWeight = m.input(fn, "nll_weight", m.tensor({}, m.f32));
  auto seqLogProbs = [&](const std::string &set) {
    m.useParameters(set);
    Value lp = m.tokenLogProbs(in, rows);
    Value seq = m.b.create<MaskedSumOp>(m.loc, m.act({rows}), lp, completionMask);
    auto halves = m.b.create<SplitOp>(m.loc, TypeRange{m.act({pairs}), m.act({pairs})}, seq,
                                      m.b.getI64IntegerAttr(0));
    return std::make_pair(halves.getResult(0), halves.getResult(1));
  };
  auto [pc, pr] = seqLogProbs("policy");
  auto [rc, rr] = seqLogProbs("reference");
  m.useParameters("policy");
  auto lossType = *symbolizeDpoLossType(recipe.dpo.lossType);
  auto op = m.b.create<DpoLossOp>(
      m.loc, m.tensor({}, m.f32), m.act({pairs}), m.act({pairs}), pc, pr, rc, rr, weights,
      nllWeight, m.b.getF64FloatAttr(recipe.dpo.beta), DpoLossTypeAttr::get(&m.ctx, lossType),
      m.b.getF64FloatAttr(recipe.dpo.labelSmoothing),
      m.b.getF64FloatAttr(recipe.dpo.rpoAlpha));
  return {op.getLoss(),
          {{"rewards_chosen", op.getChosenRewards()},
           {"rewards_rejected", op.getRejectedRewards()},
           {"logps_chosen", pc},
           {"logps_rejected", pr}}};
}

} // namespace trlc
