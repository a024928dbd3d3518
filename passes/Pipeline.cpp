//===- Pipeline.cpp - the trl compilation pipeline ------------------------===//

#include "passes/Pipeline.h"
#include "passes/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

namespace {

/// Everything before trl-offload-remat: the forward pass's layout and
/// loss, then (unless forward only) the backward pass and its precision.
void addUntilRemat(OpPassManager &pm, const trl::PipelineOptions &o) {
  if (!o.loraTargets.empty()) {
    trl::TrlLoraOptions lora;
    lora.targets = o.loraTargets;
    lora.rank = o.loraRank;
    lora.alpha = o.loraAlpha;
    lora.rslora = o.loraRslora;
    lora.save = o.loraSave;
    lora.dropout = o.loraDropout;
    lora.keep = o.loraKeep;
    pm.addPass(trl::createTrlLora(lora));
  }
  // Deduplicate parameter reads and drop values nothing uses before
  // differentiating.
  pm.addPass(trl::createTrlTruncationBounds());
  pm.addPass(createCSEPass());
  pm.addPass(createCanonicalizerPass());
  if (o.packing)
    pm.addPass(trl::createTrlPackingLayout());
  if (o.fuseLoss) {
    trl::TrlFuseLossOptions fuse;
    fuse.chunkSize = o.lossChunkSize;
    pm.addPass(trl::createTrlFuseLoss(fuse));
  }
  if (o.forwardOnly)
    return;
  pm.addPass(trl::createTrlAutodiff());
  if (o.mixedPrecision)
    pm.addPass(trl::createTrlMixedPrecision());
}

/// trl-offload-remat and everything after it: the schedule's activation
/// decisions, the optimizer, sharding and the memory plan.
void addFromRemat(OpPassManager &pm, const trl::PipelineOptions &o) {
  if (o.offload || o.recompute || o.recomputeLayers || o.rematMaxCost >= 0) {
    trl::TrlOffloadRematOptions remat;
    remat.offload = o.offload;
    remat.recompute = o.recompute;
    remat.layers = o.recomputeLayers;
    remat.minBytes = o.offloadMinBytes;
    remat.maxCost = o.rematMaxCost;
    pm.addPass(trl::createTrlOffloadRemat(remat));
  }
  trl::TrlOptimizerOptions opt;
  opt.maxGradNorm = o.maxGradNorm;
  opt.learningRate = o.learningRate;
  opt.schedule = o.schedule;
  opt.warmupSteps = o.warmupSteps;
  opt.totalSteps = o.totalSteps;
  opt.beta1 = o.beta1;
  opt.beta2 = o.beta2;
  opt.epsilon = o.epsilon;
  opt.weightDecay = o.weightDecay;
  pm.addPass(trl::createTrlOptimizer(opt));
  if (o.zeroStage == 3) {
    trl::TrlZero3ShardOptions zero;
    zero.worldSize = o.worldSize;
    zero.stage = o.zeroStage;
    zero.gatherForGeneration = o.gatherForGeneration;
    pm.addPass(trl::createTrlZero3Shard(zero));
  }
  // The backward pass reads some forward values twice (a tied head's
  // weight); merge what it duplicated.
  pm.addPass(createCSEPass());
  pm.addPass(trl::createTrlPlanMemory());
}

} // namespace

void trl::buildTrlPipeline(OpPassManager &pm, const PipelineOptions &o, PipelinePart part) {
  if (part != PipelinePart::FromRemat)
    addUntilRemat(pm, o);
  if (part != PipelinePart::UntilRemat && !o.forwardOnly)
    addFromRemat(pm, o);
}

void trl::registerTrlPipeline() {
  registerCSEPass();
  registerCanonicalizerPass();
  registerTrlPasses();
  PassPipelineRegistration<>(
      "trl-pipeline", "the full trlc compilation pipeline",
      [](OpPassManager &pm) { buildTrlPipeline(pm, PipelineOptions{}); });
}
