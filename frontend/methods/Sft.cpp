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

} // namespace trlc
