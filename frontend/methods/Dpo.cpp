//===- Dpo.cpp - direct preference optimization's step --------------------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

namespace {

/// The chosen and rejected halves of the sequence log-probabilities of
/// `in` ([2B, S]: the B chosen rows, then the B rejected ones) under the
/// current parameter set, summed over the completion tokens `mask` marks
/// (IPO: averaged, its mask weighs each token 1 / the completion's tokens).
std::pair<Value, Value> pairLogProbs(ModelBuilder &m, const ModelBuilder::TokenInputs &in,
                                     Value mask) {
  int64_t pairs = m.stepShape.batch, rows = 2 * pairs;
  // Padding-free pairs: one token row, whose log-probabilities every
  // sequence's mask row reads.
  Value lp = m.tokenLogProbs(in, m.stepShape.packedPairs ? 1 : rows);
  Value seq = m.b.create<MaskedSumOp>(m.loc, m.act({rows}), lp, mask);
  auto halves = m.b.create<SplitOp>(m.loc, TypeRange{m.act({pairs}), m.act({pairs})}, seq,
                                    m.b.getI64IntegerAttr(0));
  return {halves.getResult(0), halves.getResult(1)};
}

/// Token rows of a batch: 2 x pairs, or one with padding-free pairs.
int64_t tokenRows(const ModelBuilder &m) {
  return m.stepShape.packedPairs ? 1 : 2 * m.stepShape.batch;
}

/// IPO compares mean log-probabilities (TRL divides by the completion's
/// tokens).
const char *maskName(const Recipe &r) {
  return r.dpo.lossType == "ipo" ? "completion_mean_mask" : "completion_mask";
}

} // namespace

/// Preference batches hold the B chosen rows, then the B rejected rows,
/// with the completion tokens marked in completion_mask (completion_mean_mask
/// for IPO); `pair_weights` weighs each pair's loss (the runtime: 1 / (real
/// pairs x accumulation x ranks), 0 for padding) and, with rpo_alpha,
/// `nll_weight` the chosen completions' NLL (1 / (their tokens x
/// accumulation x ranks)). The reference's log-probabilities come from the
/// frozen reference parameters, or with precompute_ref_log_probs from the
/// inputs ref_chosen_logps / ref_rejected_logps (@ref_logps computed them
/// before training). With padding-free pairs the tokens are one row (the
/// sequences back to back, trl-packing-layout's cu_seqlens between them)
/// and the mask keeps a row per sequence.
StepResults buildDpoLoss(ModelBuilder &m, func::FuncOp fn) {
  const Recipe &recipe = m.recipe;
  int64_t pairs = m.stepShape.batch, rows = 2 * pairs, seqLen = m.stepShape.sequenceBound;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, tokenRows(m));
  Value completionMask = m.input(fn, maskName(recipe), m.act({rows, seqLen}));
  Value weights = m.input(fn, "pair_weights", m.act({pairs}));
  Value nllWeight;
  if (recipe.dpo.rpoAlpha > 0)
    nllWeight = m.input(fn, "nll_weight", m.tensor({}, m.f32));
  Value rc, rr;
  if (recipe.reference.precompute) {
    rc = m.input(fn, "ref_chosen_logps", m.act({pairs}));
    rr = m.input(fn, "ref_rejected_logps", m.act({pairs}));
  }
  m.useParameters("policy");
  auto [pc, pr] = pairLogProbs(m, in, completionMask);
  if (!recipe.reference.precompute) {
    m.useParameters("reference");
    std::tie(rc, rr) = pairLogProbs(m, in, completionMask);
    m.useParameters("policy");
  }
  auto lossType = *symbolizeDpoLossType(recipe.dpo.lossType);
  auto op = m.b.create<DpoLossOp>(
      m.loc, m.tensor({}, m.f32), m.act({pairs}), m.act({pairs}), pc, pr, rc, rr, weights,
      nllWeight, Value(), m.b.getF64FloatAttr(recipe.dpo.beta), DpoLossTypeAttr::get(&m.ctx, lossType),
      m.b.getF64FloatAttr(recipe.dpo.labelSmoothing),
      m.b.getF64FloatAttr(recipe.dpo.rpoAlpha));
  return {op.getLoss(),
          {{"rewards_chosen", op.getChosenRewards()},
           {"rewards_rejected", op.getRejectedRewards()},
           {"logps_chosen", pc},
           {"logps_rejected", pr}}};
}

/// Online DPO (TRL's OnlineDPOTrainer): the pairs are the two completions
/// the policy sampled for each prompt, ranked by the runtime (chosen
/// first). Its loss compares sequence sums for both loss types (TRL's
/// online IPO does not average), and reads beta as an input: the runtime
/// sets the epoch's value of a scheduled beta. The reference's
/// log-probabilities are outputs too, for TRL's objective/* metrics.
StepResults buildOnlineDpoLoss(ModelBuilder &m, func::FuncOp fn) {
  const Recipe &recipe = m.recipe;
  int64_t pairs = m.stepShape.batch, rows = 2 * pairs, seqLen = m.stepShape.sequenceBound;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, rows);
  Value completionMask = m.input(fn, "completion_mask", m.act({rows, seqLen}));
  Value weights = m.input(fn, "pair_weights", m.act({pairs}));
  Value beta = m.input(fn, "beta", m.tensor({}, m.f32));
  m.useParameters("policy");
  auto [pc, pr] = pairLogProbs(m, in, completionMask);
  m.useParameters("reference");
  auto [rc, rr] = pairLogProbs(m, in, completionMask);
  m.useParameters("policy");
  auto lossType = *symbolizeDpoLossType(recipe.onlineDpo.lossType);
  auto op = m.b.create<DpoLossOp>(
      m.loc, m.tensor({}, m.f32), m.act({pairs}), m.act({pairs}), pc, pr, rc, rr, weights,
      Value(), beta, m.b.getF64FloatAttr(recipe.onlineDpo.betas.front()),
      DpoLossTypeAttr::get(&m.ctx, lossType), m.b.getF64FloatAttr(0.0),
      m.b.getF64FloatAttr(0.0));
  return {op.getLoss(),
          {{"rewards_chosen", op.getChosenRewards()},
           {"rewards_rejected", op.getRejectedRewards()},
           {"logps_chosen", pc},
           {"logps_rejected", pr},
           {"ref_logps_chosen", rc},
           {"ref_logps_rejected", rr}}};
}

void buildDpoRefLogps(ModelBuilder &m, ModuleOp module) {
  OpBuilder &b = m.b;
  b.setInsertionPointToEnd(module.getBody());
  auto fn = b.create<func::FuncOp>(m.loc, "ref_logps", b.getFunctionType({}, {}));
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  int64_t rows = 2 * m.stepShape.batch;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, tokenRows(m));
  Value mask = m.input(fn, maskName(m.recipe), m.act({rows, m.stepShape.sequenceBound}));
  // The policy's parameters: before training they are the reference (the
  // runtime loads [dpo] ref_model into them for this program when given).
  m.useParameters("policy");
  auto [rc, rr] = pairLogProbs(m, in, mask);
  b.create<func::ReturnOp>(m.loc, ValueRange{rc, rr});
  fn.setType(b.getFunctionType(entry->getArgumentTypes(), {rc.getType(), rr.getType()}));
  fn.setResultAttr(0, "trl.output", b.getStringAttr("ref_chosen_logps"));
  fn.setResultAttr(1, "trl.output", b.getStringAttr("ref_rejected_logps"));
}

} // namespace trlc
