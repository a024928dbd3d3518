//===- Reward.cpp - reward modelling's step --------------------------------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

/// Reward modelling (TRL's RewardTrainer): the batch holds the B chosen
/// sequences, then the B rejected ones (prompt + completion + EOS each),
/// with `last_token_mask` marking each sequence's last token, where the
/// model's one-score head reads its score (as transformers'
/// *ForSequenceClassification does at the last non-padding token). The
/// loss is the Bradley-Terry one, -log sigmoid(score_chosen -
/// score_rejected), weighted per pair by `pair_weights` (1 / (real pairs x
/// accumulation x ranks), 0 for padding): trl.dpo_loss with beta 1 and
/// zero reference log-probabilities is exactly that, and its rewards are
/// the two scores.
StepResults buildRewardLoss(ModelBuilder &m, func::FuncOp fn) {
  int64_t pairs = m.stepShape.batch, rows = 2 * pairs;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, rows);
  Value last = m.input(fn, "last_token_mask", m.act({rows, m.stepShape.sequenceBound}));
  Value weights = m.input(fn, "pair_weights", m.act({pairs}));
  m.useParameters("policy");
  Value scores = m.sequenceScores(in, last, rows);
  auto halves = m.b.create<SplitOp>(m.loc, TypeRange{m.act({pairs}), m.act({pairs})}, scores,
                                    m.b.getI64IntegerAttr(0));
  Value zero = m.b.create<FillOp>(m.loc, m.act({pairs}), m.b.getF64FloatAttr(0.0));
  auto op = m.b.create<DpoLossOp>(
      m.loc, m.tensor({}, m.f32), m.act({pairs}), m.act({pairs}), halves.getResult(0),
      halves.getResult(1), zero, zero, weights, Value(), Value(), m.b.getF64FloatAttr(1.0),
      DpoLossTypeAttr::get(&m.ctx, DpoLossType::sigmoid), m.b.getF64FloatAttr(0.0),
      m.b.getF64FloatAttr(0.0));
  return {op.getLoss(),
          {{"rewards_chosen", op.getChosenRewards()},
           {"rewards_rejected", op.getRejectedRewards()}}};
}

} // namespace trlc
