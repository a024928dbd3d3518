//===- Ppo.cpp - proximal policy optimization's step ----------------------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

namespace {

/// The value model's builder: its own config, its parameters trained with
/// the policy's under "value_model." names.
struct ValueModel {
  Recipe recipe;
  ModelBuilder m;
  ValueModel(ModelBuilder &policy, const StepShape &shape)
      : recipe(withConfig(policy.recipe)), m(policy.ctx, recipe, shape) {
    m.paramPrefix = "value_model.";
    m.b.setInsertionPoint(policy.b.getInsertionBlock(), policy.b.getInsertionPoint());
  }
  static Recipe withConfig(const Recipe &r) {
    Recipe out = r;
    out.model.config = r.ppo.valueModelConfig;
    return out;
  }
  /// The values [B, S] of `in`'s rows, built at the policy builder's place.
  Value values(ModelBuilder &policy, const ModelBuilder::TokenInputs &in, int64_t batch) {
    m.b.setInsertionPoint(policy.b.getInsertionBlock(), policy.b.getInsertionPoint());
    Value v = m.tokenValues(in, batch);
    policy.b.setInsertionPoint(m.b.getInsertionBlock(), m.b.getInsertionPoint());
    return v;
  }
};

} // namespace

/// PPO (TRL's PPOTrainer) trains the policy and the value model together
/// on one rollout: the batch carries prompt + response tokens, the
/// response tokens in completion_mask and, one position further (the value
/// after the last token), value_mask; the rollout's log-probabilities,
/// values, GAE advantages and returns per position; and the weights that
/// make each term a masked mean over the micro-batch. Log-probabilities are
/// of the logits over temperature + 1e-7, as TRL's.
StepResults buildPpoLoss(ModelBuilder &m, func::FuncOp fn) {
  const Recipe &recipe = m.recipe;
  int64_t batch = m.stepShape.batch, seqLen = m.stepShape.sequenceBound;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, batch);
  auto perToken = [&](const char *name) { return m.input(fn, name, m.act({batch, seqLen})); };
  Value mask = perToken("completion_mask"), valueMask = perToken("value_mask"),
        oldLogp = perToken("old_per_token_logps"), advantages = perToken("advantages"),
        returns = perToken("returns"), oldValues = perToken("old_values");
  Value pgWeight = m.input(fn, "pg_weight", m.tensor({}, m.f32));
  Value vfWeight = m.input(fn, "vf_weight", m.tensor({}, m.f32));
  Value lp = m.tokenLogProbs(in, batch, recipe.grpo.temperature + 1e-7);
  ValueModel vm(m, m.stepShape);
  Value values = vm.values(m, in, batch);
  Value loss = m.b.create<PpoLossOp>(
      m.loc, m.tensor({}, m.f32), lp, oldLogp, advantages, mask, values, oldValues, returns,
      valueMask, pgWeight, vfWeight, m.b.getF64FloatAttr(recipe.ppo.cliprange),
      m.b.getF64FloatAttr(recipe.ppo.cliprangeValue), m.b.getF64FloatAttr(recipe.ppo.vfCoef));
  // The runtime's approxkl, clip fractions and losses read these.
  return {loss, {{"per_token_logps", lp}, {"values", values}}};
}

void buildPpoPrograms(ModelBuilder &m, ModuleOp module) {
  buildRlooLogps(m, module);  // @old_token_logps, @ref_token_logps (beta: kl_coef)
  // @values: the value model's values of the rollout, with the step's numerics.
  OpBuilder &b = m.b;
  b.setInsertionPointToEnd(module.getBody());
  auto fn = b.create<func::FuncOp>(m.loc, "values", b.getFunctionType({}, {}));
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  int64_t batch = m.stepShape.batch;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, batch);
  ValueModel vm(m, m.stepShape);
  Value v = vm.values(m, in, batch);
  b.create<func::ReturnOp>(m.loc, v);
  fn.setType(b.getFunctionType(entry->getArgumentTypes(), v.getType()));
  fn.setResultAttr(0, "trl.output", b.getStringAttr("values"));
  fn->setAttr("trl.step_forward", b.getUnitAttr());
}

} // namespace trlc
