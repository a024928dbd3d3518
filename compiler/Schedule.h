//===- Schedule.h - what the recipe and the data decide ---------*- C++ -*-===//
//
// The step's shape (batch rows and sequence bound, tightened to the data
// plan's longest row), the run's optimizer steps as the Hugging Face
// Trainer counts them, the pass pipeline's options, and what the runtime's
// training loop needs (plan.json run): each computed once, from the recipe
// as loaded and the data plan's facts.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_COMPILER_SCHEDULE_H
#define TRLC_COMPILER_SCHEDULE_H

#include "compiler/DataStage.h"
#include "frontend/Recipe.h"
#include "frontend/StepShape.h"
#include "passes/Pipeline.h"
#include "trlc/Artifact.h"

namespace trlc::compiler {

/// The step's shape: the recipe's (recipeStepShape); padding-free SFT
/// rows hold a whole batch of examples back to back (one row of
/// batch x max_length tokens); an SFT bound tightens to the data plan's
/// longest row (train or eval), DPO and KTO's to the longest sequence,
/// rounded up to a multiple of 8; padding-free DPO puts a batch's pairs
/// back to back in one row. `world`
/// data-parallel ranks reduce the step's statistics.
StepShape stepShape(const Recipe &recipe, const DataFacts &data, int world);

/// Optimizer steps of the run, as the Hugging Face Trainer counts them.
struct Schedule {
  int64_t totalSteps = 0;
  int64_t warmupSteps = 0;
  int64_t stepsPerEpoch = 1;
};

/// Data parallel: each optimizer step takes `world` x batch rows.
Expected<Schedule> trainingSchedule(const Recipe &recipe, const StepShape &shape,
                                    int64_t rows, int world);

/// The pipeline's options from the recipe, the schedule and the world.
mlir::trl::PipelineOptions pipelineOptions(const Recipe &recipe, const Schedule &schedule,
                                           int world);

/// plan.json "run" (its data shards are the data stage's).
artifact::RunInfo runInfo(const Recipe &recipe, const Schedule &schedule);

} // namespace trlc::compiler

#endif // TRLC_COMPILER_SCHEDULE_H
