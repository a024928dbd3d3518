//===- StepShape.h - the static shape of one training step ------*- C++ -*-===//
//
// The batch geometry every graph builder works to: rows per micro-batch
// and the static bound of every sequence dimension, with where the bound
// comes from (recorded on the step's inputs as `#trl.seq_bound`). The
// compiler decides it once (compiler/StepShape.cpp: the recipe, padding-
// free rows, the data plan's longest row) and passes it down; nothing
// edits the recipe for it.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_FRONTEND_STEPSHAPE_H
#define TRLC_FRONTEND_STEPSHAPE_H

#include "frontend/Recipe.h"

#include <cstdint>
#include <string>

namespace trlc {

struct StepShape {
  int64_t batch = 0;          // rows per micro-batch (examples, pairs, prompts)
  int64_t sequenceBound = 0;  // tokens per row
  std::string boundSource;    // "max_length", "data plan: longest row ...", ...
  int64_t worldSize = 1;      // data-parallel ranks (statistics reduced over them)
  /// DPO padding-free pairs: the batch's 2 x `batch` sequences back to back
  /// in one token row of sequenceBound tokens.
  bool packedPairs = false;
  /// Padding-free rows (SFT, DPO pairs): the longest document a row holds
  /// (the padded layout's bound); 0 otherwise.
  int64_t sequenceLimit = 0;
};

/// The shape the recipe alone gives: per_device_train_batch_size rows of
/// max_length tokens (GRPO: max_prompt_length + max_completion_length).
StepShape recipeStepShape(const Recipe &recipe);

} // namespace trlc

#endif // TRLC_FRONTEND_STEPSHAPE_H
