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
#include "trlc/Comm.h"
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
  /// Shard rows per rank per micro-batch, of `batch` batch rows (GRPO's
  /// rows are prompts: batch / num_generations of them).
  virtual int64_t rowsPerMicroBatch(int64_t batch) const { return batch; }
  /// The training rows, once (GRPO reads each row's columns by its place).
  virtual void setRows(const TokenRow *, size_t) {}
  /// Optimizer steps that train on the same rows (GRPO's num_iterations):
  /// the loop draws new rows every that many steps and passes the same
  /// ones to prepare() in between.
  virtual int64_t stepsPerBatch() const { return 1; }
  /// The state a checkpoint at a step inside such a cycle needs to resume
  /// it (GRPO: its generated batch), written by every rank into the
  /// checkpoint's directory and read back from it.
  virtual void saveState(const std::string & /*dir*/, Communicator &) {}
  virtual void loadState(const std::string & /*dir*/, int64_t /*step*/, Communicator &) {}
  /// At the start of optimizer step `step`, with this rank's rows of each
  /// of its `accum` micro-batches (online methods generate here).
  virtual void prepare(Executor &, const std::vector<Rows> &, int64_t /*step*/, int /*accum*/,
                       Communicator &) {}
  /// Fills the batch inputs of `program` from `rows` (at most the program's
  /// batch; missing rows are padding that contributes nothing). Returns the
  /// real tokens it placed.
  virtual int64_t fill(Executor &ex, const std::string &program, const Rows &rows) = 0;
  /// The loss normaliser of one optimizer step (TRL's num_items_in_batch)
  /// from every micro-batch of the global batch, all ranks' rows included.
  virtual double normalizer(const std::vector<Rows> &globalMicroBatches) const = 0;
  /// Sets the normaliser input of train_step before each micro-batch.
  virtual void setNormalizer(Executor &ex, double normalizer) = 0;
  /// After each train_step run, with the rows this rank filled: reads the
  /// method's metric outputs.
  virtual void observe(Executor &, const Rows &) {}
  /// After each optimizer step (every rank), with the tokens of its global
  /// batch; sums what observe() saw over the ranks.
  virtual void stepDone(int64_t tokens, Communicator &comm) = 0;
  /// The method's own keys of a logged metrics row (rank 0), for the steps
  /// since the last row.
  virtual void addMetrics(nlohmann::json &row) = 0;
  /// What the progress line adds for this method, from a metrics row.
  virtual std::string progressText(const nlohmann::json &) const { return ""; }
  /// A resumed run: the method's counters from the log history.
  virtual void resume(const nlohmann::json &logHistory) = 0;

  /// precompute_ref_log_probs (DPO, KTO): the reference log-probabilities
  /// per shard row, `referenceWidth()` of them (0: the method has none).
  virtual int referenceWidth() const { return 0; }
  /// Fills program ref_logps with `rows`, runs it, and returns their
  /// values, row by row.
  virtual std::vector<double> referenceLogps(Executor &, const Rows &) { return {}; }
  /// The whole table, indexed by the row's place in the shard starting at
  /// `first`; fill() feeds train_step's reference inputs from it.
  virtual void setReference(const TokenRow *, std::vector<double>) {}
};

/// The method of an artifact (its manifest's `method`); throws RunError
/// for a method the runtime cannot train yet, naming it.
std::unique_ptr<Method> makeMethod(const artifact::Artifact &artifact);

/// One factory per method file of runtime/methods/.
std::unique_ptr<Method> makeSft(const artifact::Artifact &artifact);
std::unique_ptr<Method> makeDpo(const artifact::Artifact &artifact);
std::unique_ptr<Method> makeKto(const artifact::Artifact &artifact);
std::unique_ptr<Method> makeGrpo(const artifact::Artifact &artifact);
std::unique_ptr<Method> makeOnlineDpo(const artifact::Artifact &artifact);
std::unique_ptr<Method> makePpo(const artifact::Artifact &artifact);
std::unique_ptr<Method> makeReward(const artifact::Artifact &artifact);

/// One sequence of a batch: document `doc` of a shard row (DPO's chosen or
/// rejected side, KTO's example or KL pair); no row is padding.
struct Sequence {
  const TokenRow *row = nullptr;
  size_t doc = 0;
};

/// Fills `prefix`input_ids, position_ids, attention_mask, labels (the next
/// token where the loss mask counts, -100 elsewhere) and, when `program`
/// has it, `prefix`completion_mask (1 where labels count; or
/// completion_mean_mask, 1 / the sequence's counted labels, whose masked
/// sum is the mean) with one sequence per batch row. Returns the real tokens placed; `completionTokens` gets
/// the labels that count.
int64_t fillSequences(Executor &ex, const std::string &program, const std::string &prefix,
                      const std::vector<Sequence> &sequences, int64_t pad,
                      int64_t *completionTokens = nullptr);

/// Padding-free pairs: the sequences back to back in the one token row of
/// `program` (position ids restarting at each, labels never crossing),
/// cu_seqlens between them (the padding at the end one more document,
/// unused entries at the total), and completion_mask (or
/// completion_mean_mask) with one row per sequence over the whole token
/// row.
int64_t fillPackedSequences(Executor &ex, const std::string &program,
                            const std::vector<Sequence> &sequences, int64_t pad,
                            int64_t *completionTokens = nullptr);

/// Preference pairs (DPO, reward modelling) as the sequences of a batch of
/// `pairs` pairs: row k's chosen side (document 0) at k, its rejected side
/// at pairs + k, the rest padding. Throws RunError when `rows` outnumber
/// the pairs `program` holds or a row is not a pair.
std::vector<Sequence> pairSequences(const Rows &rows, int64_t pairs, const std::string &program);
/// Each pair's loss weight: 1 / (the real pairs x `scale`, the accumulation
/// steps x ranks), 0 for padding: TRL's mean over the micro-batch.
std::vector<double> pairWeights(int64_t real, int64_t pairs, double scale);

/// Writes `values` into an f32, f64 or bf16 tensor.
void writeFloats(Executor &ex, const TensorRef &t, const std::vector<double> &values);
/// Reads an f32, f64 or bf16 tensor.
std::vector<double> readFloats(Executor &ex, const TensorRef &t);

/// Sums of per-example metrics over a logging interval: `sums[k]` over
/// `counts[k]` examples, reduced over the ranks at each step.
class MetricSums {
public:
  explicit MetricSums(std::vector<std::string> names)
      : names(std::move(names)), step(2 * this->names.size(), 0.0),
        total(step.size(), 0.0) {}
  void add(size_t k, double value, double count = 1) {
    step[2 * k] += value;
    step[2 * k + 1] += count;
  }
  /// The step's sums over every rank into the interval.
  void stepDone(Communicator &comm);
  /// name -> sum / count for the interval (names with no count left out);
  /// resets it.
  void emit(nlohmann::json &row);

private:
  std::vector<std::string> names;
  std::vector<double> step, total;
};

/// TRL's num_tokens: the input tokens trained on so far, summed over the
/// ranks (stepDone's `tokens`), written into each metrics row and read
/// back from the log history of a resumed run.
class TokenCount {
public:
  void add(int64_t tokens) { n += tokens; }
  void emit(nlohmann::json &row) const { row["num_tokens"] = n; }
  void resume(const nlohmann::json &logHistory) {
    for (const nlohmann::json &row : logHistory)
      n = row.value("num_tokens", n);
  }

private:
  int64_t n = 0;
};

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
