//===- Trainer.h - the training loop around a compiled plan -----*- C++ -*-===//
//
// One process's share of a run: initialises or loads the weights
// (trlc/Checkpoint.h), draws the same shuffled global batches on every
// rank and trains on its slice of each, feeding the method's batches
// (trlc/Method.h) into train_step and running optimizer_step every
// gradient_accumulation_steps micro-batches; logs metrics.jsonl
// (trlc/Metrics.h), writes checkpoints and the final model, and, when the
// recipe has [data] eval, greedily completes the held-out prompts
// (trlc/Evaluate.h).
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_TRAINER_H
#define TRLC_RUNTIME_TRAINER_H

#include "trlc/Artifact.h"
#include "trlc/Comm.h"
#include "trlc/Executor.h"
#include "trlc/Run.h"

namespace trlc {

/// Trains `artifact` on `ex` as rank comm.rank() of comm.size(); returns
/// the exit code, throws RunError.
int train(const RunOptions &options, const artifact::Artifact &artifact, Executor &ex,
          Communicator &comm);

} // namespace trlc

#endif // TRLC_RUNTIME_TRAINER_H
