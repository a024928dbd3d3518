//===- GraphBuilder.h - recipe to `trl` module ------------------*- C++ -*-===//
//
// Builds the forward pass of the recipe's model and the method's loss for
// one micro-batch as a `trl` module: one `func.func @train_step` whose
// arguments are the batch tensors and whose result is the loss (plus the
// method's other programs, SFT's @predict). The model is ModelBuilder's,
// the loss is the method's (frontend/methods/).
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_FRONTEND_GRAPHBUILDER_H
#define TRLC_FRONTEND_GRAPHBUILDER_H

#include "frontend/Recipe.h"
#include "frontend/StepShape.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace trlc {

/// Builds the training-step module for batches of `shape`, in the padded
/// layout [batch, sequence bound]; the packing pass rewrites it later.
mlir::OwningOpRef<mlir::ModuleOp> buildTrainStep(mlir::MLIRContext &context,
                                                 const Recipe &recipe,
                                                 const StepShape &shape);

} // namespace trlc

#endif // TRLC_FRONTEND_GRAPHBUILDER_H
