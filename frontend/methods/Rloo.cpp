//===- Rloo.cpp - REINFORCE leave-one-out's step ---------------------------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

/// RLOO trains on generated completions like GRPO, with one importance
/// ratio per completion: the batch carries prompt + completion tokens, each
/// completion's log-probability under the sampling policy (old_logps, a
/// sum over its tokens) and its leave-one-out advantage, the KL penalty
/// already in it. Log-probabilities are of the logits over the temperature.
StepResults buildRlooLoss(ModelBuilder &m, func::FuncOp fn) {
  const Recipe &recipe = m.recipe;
  int64_t batch = m.stepShape.batch, seqLen = m.stepShape.sequenceBound;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, batch);
  Value completionMask = m.input(fn, "completion_mask", m.act({batch, seqLen}));
  Value oldLogps = m.input(fn, "old_logps", m.act({batch}));
  Value advantages = m.input(fn, "advantages", m.act({batch}));
  Value normalizer = m.input(fn, "num_items_in_batch", m.tensor({}, m.f32));
  Value lp = m.tokenLogProbs(in, batch, recipe.grpo.temperature);
  Value loss = m.b.create<RlooLossOp>(m.loc, m.tensor({}, m.f32), lp, oldLogps, advantages,
                                      completionMask, normalizer,
                                      m.b.getF64FloatAttr(recipe.grpo.epsilon),
                                      m.b.getF64FloatAttr(recipe.grpo.epsilonHigh));
  // The runtime's clip_ratio metrics read the sequence ratios from these.
  return {loss, {{"per_token_logps", lp}}};
}

namespace {

/// A program of the step's token inputs returning the per-token
/// log-probabilities of parameter set `set` as output `name`.
void tokenLogpsProgram(ModelBuilder &m, ModuleOp module, const char *program, const char *set,
                       const char *name) {
  // PPO divides by temperature + 1e-7, as TRL's PPOTrainer.
  double temperature = m.recipe.grpo.temperature + (m.recipe.method == Method::PPO ? 1e-7 : 0.0);
  OpBuilder &b = m.b;
  b.setInsertionPointToEnd(module.getBody());
  auto fn = b.create<func::FuncOp>(m.loc, program, b.getFunctionType({}, {}));
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  int64_t batch = m.stepShape.batch;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, batch);
  m.useParameters(set);
  Value lp = m.tokenLogProbs(in, batch, temperature);
  m.useParameters("policy");
  b.create<func::ReturnOp>(m.loc, lp);
  fn.setType(b.getFunctionType(entry->getArgumentTypes(), lp.getType()));
  fn.setResultAttr(0, "trl.output", b.getStringAttr(name));
  // trl-mixed-precision stores its activations as the step's.
  fn->setAttr("trl.step_forward", b.getUnitAttr());
}

} // namespace

void buildRlooLogps(ModelBuilder &m, ModuleOp module) {
  tokenLogpsProgram(m, module, "old_token_logps", "policy", "per_token_logps");
  if (m.recipe.grpo.beta != 0 || m.recipe.method == Method::PPO)  // PPO: the KL penalty
    tokenLogpsProgram(m, module, "ref_token_logps", "reference", "ref_per_token_logps");
}

void buildOldLogps(ModelBuilder &m, ModuleOp module) {
  tokenLogpsProgram(m, module, "old_token_logps", "policy", "per_token_logps");
}

} // namespace trlc
