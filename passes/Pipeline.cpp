//===- Pipeline.cpp - the trl compilation pipeline ------------------------===//

#include "passes/Pipeline.h"
#include "passes/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void trl::buildTrlPipeline(OpPassManager &pm, const PipelineOptions &o) {
  // Deduplicate parameter reads and drop values nothing uses before
  // differentiating.
  pm.addPass(createTrlTruncationBounds());
  pm.addPass(createCSEPass());
  pm.addPass(createCanonicalizerPass());
  if (o.packing)
    pm.addPass(createTrlPackingLayout());
  if (o.fuseLoss) {
    TrlFuseLossOptions fuse;
    fuse.chunkSize = o.lossChunkSize;
    pm.addPass(createTrlFuseLoss(fuse));
  }
  if (o.forwardOnly)
    return;
  pm.addPass(createTrlAutodiff());
  if (o.mixedPrecision)
    pm.addPass(createTrlMixedPrecision());
  if (o.offload || o.recompute || o.rematMaxCost >= 0) {
    TrlOffloadRematOptions remat;
    remat.offload = o.offload;
    remat.recompute = o.recompute;
    remat.minBytes = o.offloadMinBytes;
    remat.maxCost = o.rematMaxCost;
    pm.addPass(createTrlOffloadRemat(remat));
  }
  TrlOptimizerOptions opt;
  opt.maxGradNorm = o.maxGradNorm;
  opt.learningRate = o.learningRate;
  opt.schedule = o.schedule;
  opt.warmupSteps = o.warmupSteps;
  opt.totalSteps = o.totalSteps;
  opt.beta1 = o.beta1;
  opt.beta2 = o.beta2;
  opt.epsilon = o.epsilon;
  opt.weightDecay = o.weightDecay;
  pm.addPass(createTrlOptimizer(opt));
  if (o.zeroStage == 3) {
    TrlZero3ShardOptions zero;
    zero.worldSize = o.worldSize;
    zero.stage = o.zeroStage;
    pm.addPass(createTrlZero3Shard(zero));
  }
  // The backward pass reads some forward values twice (a tied head's
  // weight); merge what it duplicated.
  pm.addPass(createCSEPass());
  pm.addPass(createTrlPlanMemory());
}

void trl::registerTrlPipeline() {
  registerCSEPass();
  registerCanonicalizerPass();
  registerTrlPasses();
  PassPipelineRegistration<>(
      "trl-pipeline", "the full trlc compilation pipeline",
      [](OpPassManager &pm) { buildTrlPipeline(pm, PipelineOptions{}); });
}
