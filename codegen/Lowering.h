//===- Lowering.h - trl module to the runtime's executable plan -*- C++ -*-===//
//
// Every func.func of the module becomes a program: a linear list of kernel
// calls over tensors at fixed offsets in one arena. Parameters, gradient
// accumulators and optimizer moments are persistent state at the start of
// the arena; each program's activations share the rest at the offsets
// trl-plan-memory chose (and the host pool for offloaded ones), and the
// state updates it marked `trl.in_place` write their state directly.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_CODEGEN_LOWERING_H
#define TRLC_CODEGEN_LOWERING_H

#include "trlc/Artifact.h"
#include "trlc/Expected.h"

#include "mlir/IR/BuiltinOps.h"

namespace trlc {

/// Lowers `module` (after the pass pipeline) to a plan. Fails with an
/// internal-error message when an op has no kernel.
Expected<artifact::Plan> lowerToPlan(mlir::ModuleOp module);

} // namespace trlc

#endif // TRLC_CODEGEN_LOWERING_H
