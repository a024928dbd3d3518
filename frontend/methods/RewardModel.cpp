//===- RewardModel.cpp - reward models as frozen scoring programs --------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

/// One program per reward model of reward_funcs, `@reward_model_K`: the
/// model's own forward (its config, parameter set "reward_model_K", read
/// from its directory) over the generated rows (prompt + completion) and
/// its score at the position `last_token_mask` marks. Frozen: no gradient,
/// no optimizer state; its weights stay fp32 (trl-mixed-precision converts
/// the step and the programs that share its numerics only).
void buildRewardModels(MLIRContext &ctx, const Recipe &recipe, const StepShape &shape,
                       int64_t rows, ModuleOp module) {
  for (size_t k = 0; k < recipe.grpo.rewardModels.size(); ++k) {
    Recipe rm = recipe;
    rm.model.config = recipe.grpo.rewardModels[k].second;
    StepShape s = shape;
    s.batch = rows;
    ModelBuilder m(ctx, rm, s);
    std::string name = "reward_model_" + std::to_string(k);
    m.useParameters(name);
    OpBuilder &b = m.b;
    b.setInsertionPointToEnd(module.getBody());
    auto fn = b.create<func::FuncOp>(m.loc, name, b.getFunctionType({}, {}));
    Block *entry = fn.addEntryBlock();
    b.setInsertionPointToStart(entry);
    ModelBuilder::TokenInputs in = m.tokenInputs(fn, rows);
    Value last = m.input(fn, "last_token_mask", m.act({rows, shape.sequenceBound}));
    Value scores = m.sequenceScores(in, last, rows);
    b.create<func::ReturnOp>(m.loc, scores);
    fn.setType(b.getFunctionType(entry->getArgumentTypes(), scores.getType()));
    fn.setResultAttr(0, "trl.output", b.getStringAttr("scores"));
  }
}

} // namespace trlc
