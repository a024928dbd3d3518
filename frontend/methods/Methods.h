//===- Methods.h - each method's part of the training step ------*- C++ -*-===//
//
// One file per method (TRL's trainer of the same name): the extra batch
// inputs the method needs, its loss over the model's outputs
// (ModelBuilder), and any program besides train_step. A method's twin in
// the runtime (runtime/methods/) fills those inputs.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_FRONTEND_METHODS_METHODS_H
#define TRLC_FRONTEND_METHODS_METHODS_H

#include "frontend/ModelBuilder.h"

#include "mlir/IR/BuiltinOps.h"

namespace trlc {

/// SFT: cross entropy of the completion tokens, summed and divided by the
/// trainable tokens of the whole accumulated batch (num_items_in_batch).
mlir::Value buildSftLoss(ModelBuilder &m, mlir::func::FuncOp fn);
/// SFT with [data] eval: `@predict`, the next-token logits of a batch, for
/// greedy evaluation.
void buildSftPredict(ModelBuilder &m, mlir::ModuleOp module);

/// DPO: policy and reference sequence log-probabilities of the chosen and
/// rejected completions, and TRL's loss types.
mlir::Value buildDpoLoss(ModelBuilder &m, mlir::func::FuncOp fn);

/// KTO: completions with their desirable/undesirable labels and the KL
/// estimate's mismatched pairs.
mlir::Value buildKtoLoss(ModelBuilder &m, mlir::func::FuncOp fn);

/// GRPO: the clipped policy objective over generated completions.
mlir::Value buildGrpoLoss(ModelBuilder &m, mlir::func::FuncOp fn);

} // namespace trlc

#endif // TRLC_FRONTEND_METHODS_METHODS_H
