//===- Dpo.cpp - direct preference optimization's step --------------------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

/// Preference batches hold the B chosen rows, then the B rejected rows,
/// with the completion tokens marked in completion_mask.
Value buildDpoLoss(ModelBuilder &m, func::FuncOp fn) {
  const Recipe &recipe = m.recipe;
  int64_t pairs = m.stepShape.batch, rows = 2 * pairs, seqLen = m.stepShape.sequenceBound;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, rows);
  Value completionMask = m.input(fn, "completion_mask", m.act({rows, seqLen}));
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
      m.loc, m.tensor({}, m.f32), m.act({pairs}), m.act({pairs}), pc, pr, rc, rr,
      m.b.getF64FloatAttr(recipe.dpo.beta), DpoLossTypeAttr::get(&m.ctx, lossType),
      m.b.getF64FloatAttr(recipe.dpo.labelSmoothing));
  return op.getLoss();
}

} // namespace trlc
