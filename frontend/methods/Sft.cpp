//===- Sft.cpp - supervised fine-tuning's step ----------------------------===//

#include "frontend/methods/Methods.h"

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

StepResults buildSftLoss(ModelBuilder &m, func::FuncOp fn) {
  int64_t batch = m.stepShape.batch;
  ModelBuilder::TokenInputs in = m.tokenInputs(fn, batch);
  // Trainable tokens of the whole accumulated batch (TRL's normalisation).
  Value numItems = m.input(fn, "num_items_in_batch", m.tensor({}, m.f32));
  auto [hidden, head] = m.forward(in.ids, in.positions, in.mask, batch);
  Value logits = m.linear(hidden, head);
  Value sum = m.b.create<CrossEntropyOp>(m.loc, m.tensor({}, m.f32), logits, in.labels,
                                         m.b.getI64IntegerAttr(-100));
  return {m.b.create<DivOp>(m.loc, sum.getType(), sum, numItems), {}};
}

void buildSftPredict(ModelBuilder &m, ModuleOp module) {
  OpBuilder &b = m.b;
  b.setInsertionPointToEnd(module.getBody());
  auto fn = b.create<func::FuncOp>(m.loc, "predict", b.getFunctionType({}, {}));
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  int64_t batch = m.stepShape.batch;
  auto type = m.tensor({batch, m.stepShape.sequenceBound}, m.i64);
  Value ids = m.input(fn, "input_ids", type);
  Value positions = m.input(fn, "position_ids", type);
  Value mask = m.input(fn, "attention_mask", type);
  auto [hidden, head] = m.forward(ids, positions, mask, batch);
  Value logits = m.linear(hidden, head);
  b.create<func::ReturnOp>(m.loc, logits);
  fn.setType(b.getFunctionType(entry->getArgumentTypes(), {logits.getType()}));
  fn.setResultAttr(0, "trl.output", b.getStringAttr("logits"));
}

} // namespace trlc
