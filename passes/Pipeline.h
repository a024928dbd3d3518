//===- Pipeline.h - the one place trl passes are chained --------*- C++ -*-===//

#ifndef TRLC_PASSES_PIPELINE_H
#define TRLC_PASSES_PIPELINE_H

#include "mlir/Pass/PassManager.h"

namespace mlir::trl {

/// Options of the compilation pipeline that come from the recipe.
struct PipelineOptions {};

/// Appends the trl compilation pipeline to `pm`, in DESIGN.md order. Passes
/// added by later stages of the compiler plug in here and nowhere else.
void buildTrlPipeline(OpPassManager &pm, const PipelineOptions &options);

/// Registers every trl pass and the `trl-pipeline` pipeline with the global
/// registry (for trl-opt and --print-ir-after=NAME).
void registerTrlPasses();

} // namespace mlir::trl

#endif // TRLC_PASSES_PIPELINE_H
