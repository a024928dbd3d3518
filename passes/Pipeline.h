//===- Pipeline.h - the one place trl passes are chained --------*- C++ -*-===//

#ifndef TRLC_PASSES_PIPELINE_H
#define TRLC_PASSES_PIPELINE_H

#include "mlir/Pass/PassManager.h"

#include <cstdint>
#include <string>

namespace mlir::trl {

/// Options of the compilation pipeline that come from the recipe.
struct PipelineOptions {
  /// Stop after the forward pass (no autodiff, no optimizer): for tests and
  /// `--emit=mlir` of the bare model.
  bool forwardOnly = false;
  bool packing = false;  // rows hold several documents: trl-packing-layout
  // trl-lora ([peft]): comma-separated target modules ("" = no LoRA)
  std::string loraTargets;
  int64_t loraRank = 8;
  double loraAlpha = 8.0;
  bool loraRslora = false;
  std::string loraSave;  // modules_to_save: trained whole
  double loraDropout = 0;  // lora_dropout in @train_step
  std::string loraKeep;    // name prefixes it leaves alone (PPO's value model)
  bool fuseLoss = false;       // trl-fuse-loss ([memory] use_liger_kernel)
  int64_t lossChunkSize = 0;   // its rows per chunk, 0: Liger's rule
  bool mixedPrecision = false; // trl-mixed-precision ([model] dtype = "bf16")
  bool offload = false;        // trl-offload-remat ([memory] activation_offloading)
  bool recompute = false;      // trl-offload-remat's cheap ops (recompute = "selective")
  bool recomputeLayers = false; // trl-offload-remat's whole layers (gradient_checkpointing)
  int64_t offloadMinBytes = 1024;  // smallest activation it offloads
  double rematMaxCost = -1;        // its cost bound, s per byte freed (-1: off)
  int64_t zeroStage = 0;   // trl-zero3-shard ([memory] zero_stage)
  int64_t worldSize = 1;   // data-parallel ranks (trlc compile --nproc)
  bool gatherForGeneration = true;  // its gather-for-generation (ds3_gather_for_generation)
  // trl-optimizer
  double maxGradNorm = 1.0;
  double learningRate = 2e-5;
  std::string schedule = "linear";
  int64_t warmupSteps = 0;
  int64_t totalSteps = 1;
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8, weightDecay = 0.0;
};

/// The whole pipeline, or its two halves around trl-offload-remat: the
/// budget search prices candidate schedules by running the second half on
/// copies of the first half's result.
enum class PipelinePart { Whole, UntilRemat, FromRemat };

/// Appends the trl compilation pipeline (or `part` of it) to `pm`, in
/// DESIGN.md order. Passes added by later stages of the compiler plug in
/// here and nowhere else.
void buildTrlPipeline(OpPassManager &pm, const PipelineOptions &options,
                      PipelinePart part = PipelinePart::Whole);

/// Registers every trl pass and the `trl-pipeline` pipeline with the global
/// registry (for trl-opt and --print-ir-after=NAME).
void registerTrlPipeline();

} // namespace mlir::trl

#endif // TRLC_PASSES_PIPELINE_H
