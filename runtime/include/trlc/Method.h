//===- Method.h - what a training method adds to the loop -------*- C++ -*-===//
//
// The training loop (Trainer.cpp) draws rows, runs train_step per
// micro-batch and optimizer_step per optimizer step; everything that
// depends on the method lives behind this interface, one file per method
// in runtime/methods/: how rows fill a program's batch inputs, how the
// loss is normalised across the accumulated batch, and which metrics the
// method logs. A method's graph (what train_step computes) is built by
// its twin in frontend/methods/.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_METHOD_H
#define TRLC_RUNTIME_METHOD_H

#include "trlc/Artifact.h"
#include "trlc/Executor.h"
#include "trlc/Shards.h"

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace trlc {

using Rows = std::vector<const TokenRow *>;

class Method {
public:
  virtual ~Method() = default;
  /// Fills the batch inputs of `program` from `rows` (at most the program's
  /// batch; missing rows are padding that contributes nothing). Returns the
  /// real tokens it placed.
  virtual int64_t fill(Executor &ex, const std::string &program, const Rows &rows) = 0;
  /// The loss normaliser of one optimizer step (TRL's num_items_in_batch)
  /// from every micro-batch of the global batch, all ranks' rows included.
  virtual double normalizer(const std::vector<Rows> &globalMicroBatches) const = 0;
  /// Sets the normaliser input of train_step before each micro-batch.
  virtual void setNormalizer(Executor &ex, double normalizer) = 0;
  /// After each optimizer step, with the tokens of its global batch.
  virtual void stepDone(int64_t tokens) = 0;
  /// The method's own keys of a logged metrics row.
  virtual void addMetrics(nlohmann::json &row) const = 0;
  /// A resumed run: the method's counters from the log history.
  virtual void resume(const nlohmann::json &logHistory) = 0;
};

/// The method of an artifact (its manifest's `method`); throws RunError
/// for a method the runtime cannot train yet, naming it.
std::unique_ptr<Method> makeMethod(const artifact::Artifact &artifact);

/// One factory per method file of runtime/methods/.
std::unique_ptr<Method> makeSft(const artifact::Artifact &artifact);

/// SFT (runtime/methods/Sft.cpp): input_ids, position_ids restarting at
/// each document, attention_mask and, when the program has them, labels
/// shifted by one with -100 where the loss does not count, and the
/// cu_seqlens of trl-packing-layout (every document, the padding at the end
/// of each row as one more, unused entries at the total).
int64_t fillSftBatch(Executor &ex, const std::string &program, const Rows &rows,
                     int64_t pad);
/// Tokens the loss counts in `rows`.
int64_t countTrainable(const Rows &rows);

} // namespace trlc

#endif // TRLC_RUNTIME_METHOD_H
