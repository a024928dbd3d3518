//===- GraphBuilder.h - recipe to `trl` module ------------------*- C++ -*-===//
//
// Builds the forward pass of the recipe's model (llama family or gpt2) and
// the method's loss for one micro-batch as a `trl` module: one
// `func.func @train_step` whose arguments are the batch tensors and whose
// result is the loss. Parameters are read with `trl.param` under their
// Hugging Face checkpoint names.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_FRONTEND_GRAPHBUILDER_H
#define TRLC_FRONTEND_GRAPHBUILDER_H

#include "frontend/Recipe.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace trlc {

/// Builds the training-step module. The batch is in the padded layout
/// [batch, sequence bound]; the packing pass rewrites it later.
mlir::OwningOpRef<mlir::ModuleOp> buildTrainStep(mlir::MLIRContext &context,
                                                 const Recipe &recipe);

/// Static sequence bound of the step's batch tensors, from the recipe.
int64_t sequenceBound(const Recipe &recipe);

} // namespace trlc

#endif // TRLC_FRONTEND_GRAPHBUILDER_H
