//===- GraphBuilder.cpp - recipe to `trl` module --------------------------===//

#include "frontend/GraphBuilder.h"
#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

OwningOpRef<ModuleOp> buildTrainStep(MLIRContext &context, const Recipe &recipe,
                                     const StepShape &shape) {
  context.loadDialect<TrlDialect, func::FuncDialect>();
  ModelBuilder m(context, recipe, shape);
  OpBuilder &b = m.b;
  OwningOpRef<ModuleOp> module = ModuleOp::create(m.loc);
  module->getOperation()->setAttr("trl.recipe", b.getStringAttr(recipe.file));
  b.setInsertionPointToEnd(module->getBody());
  auto fn = b.create<func::FuncOp>(m.loc, "train_step", b.getFunctionType({}, {}));
  fn->setAttr("trl.method", b.getStringAttr(methodName(recipe.method)));
  fn->setAttr("trl.model_type", b.getStringAttr(familyName(recipe.model.config.family)));
  if (recipe.method == Method::SFT) {
    auto strategy = recipe.data.packing
                        ? *symbolizePackingStrategy(recipe.data.packingStrategy)
                        : PackingStrategy::none;
    int64_t longest = shape.sequenceLimit > 0 ? shape.sequenceLimit : shape.sequenceBound;
    fn->setAttr("trl.packing", PackingAttr::get(&context, strategy, longest,
                                                recipe.data.paddingFree));
  }
  if (shape.packedPairs)
    fn->setAttr("trl.packing", PackingAttr::get(&context, PackingStrategy::none,
                                                shape.sequenceLimit, true));
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  StepResults step;
  switch (recipe.method) {
  case Method::SFT: step = buildSftLoss(m, fn); break;
  case Method::DPO: step = buildDpoLoss(m, fn); break;
  case Method::KTO: step = buildKtoLoss(m, fn); break;
  case Method::GRPO: step = buildGrpoLoss(m, fn); break;
  case Method::RLOO: step = buildRlooLoss(m, fn); break;
  case Method::OnlineDPO: step = buildOnlineDpoLoss(m, fn); break;
  case Method::PPO: step = buildPpoLoss(m, fn); break;
  case Method::Reward: step = buildRewardLoss(m, fn); break;
  }
  // The loss first, then the method's metrics, each a named output.
  SmallVector<Value> results{step.loss};
  for (auto &[name, v] : step.metrics)
    results.push_back(v);
  b.create<func::ReturnOp>(m.loc, results);
  fn.setType(b.getFunctionType(entry->getArgumentTypes(), ValueRange(results).getTypes()));
  for (auto [i, metric] : llvm::enumerate(step.metrics))
    fn.setResultAttr(i + 1, "trl.output", b.getStringAttr(metric.first));
  if (isOnline(recipe.method) || !recipe.data.eval.empty()) {
    // Generation reads one prompt per row, also after padding-free
    // preference training.
    StepShape evalShape = shape;
    if (shape.packedPairs)
      evalShape.sequenceBound = shape.sequenceLimit;
    // Online DPO samples both completions of its prompts at once.
    if (recipe.method == Method::OnlineDPO)
      evalShape.batch = 2 * shape.batch;
    ModelBuilder pm(context, recipe, evalShape);
    // GRPO's prompts are at most max_prompt_length tokens; evaluation and
    // `trlc generate` prompts may fill the sequence bound.
    int64_t longestPrompt = isOnline(recipe.method)
                                ? std::min(recipe.grpo.maxPromptLength, evalShape.sequenceBound)
                                : evalShape.sequenceBound;
    buildGeneration(pm, *module, longestPrompt);
  }
  if (recipe.reference.precompute && recipe.method == Method::DPO) {
    buildDpoRefLogps(m, *module);
    // Its rows are the training rows: the same layout.
    if (Attribute packing = fn->getAttr("trl.packing"))
      module->lookupSymbol<func::FuncOp>("ref_logps")->setAttr("trl.packing", packing);
  }
  if (recipe.reference.precompute && recipe.method == Method::KTO)
    buildKtoRefLogps(m, *module);
  if (recipe.method == Method::RLOO)
    buildRlooLogps(m, *module);
  if (recipe.method == Method::PPO)
    buildPpoPrograms(m, *module);
  if (isOnline(recipe.method))  // a generation's rows: online DPO samples 2 per prompt
    buildRewardModels(context, recipe, shape,
                      (recipe.method == Method::OnlineDPO ? 2 : 1) * shape.batch, *module);
  if (recipe.method == Method::GRPO && recipe.grpo.numIterations > 1)
    buildOldLogps(m, *module);
  return module;
}

} // namespace trlc
