//===- Pipeline.cpp - the trl compilation pipeline ------------------------===//

#include "passes/Pipeline.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void trl::buildTrlPipeline(OpPassManager &pm, const PipelineOptions &) {
  // Deduplicate parameter reads and drop values nothing uses before the
  // memory passes see the graph.
  pm.addPass(createCSEPass());
  pm.addPass(createCanonicalizerPass());
}

void trl::registerTrlPasses() {
  registerCSEPass();
  registerCanonicalizerPass();
  PassPipelineRegistration<>(
      "trl-pipeline", "the full trlc compilation pipeline",
      [](OpPassManager &pm) { buildTrlPipeline(pm, PipelineOptions{}); });
}
