//===- Checkpoint.h - the model state of a run, in and out ------*- C++ -*-===//
//
// A run's parameters and AdamW moments, as Hugging Face files: the initial
// weights ([model] path's safetensors, or transformers' random
// initialisation), checkpoint-STEP directories (model.safetensors,
// config.json, generation_config.json, the tokenizer files,
// trainer_state.json and, unless save_only_model, optimizer.safetensors,
// rng_state.json and, under ZeRO-3, each rank's shards in zero3/), the
// final model, and --resume from any of them at any world size.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_CHECKPOINT_H
#define TRLC_RUNTIME_CHECKPOINT_H

#include "trlc/Artifact.h"
#include "trlc/Comm.h"
#include "trlc/Executor.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace trlc {

/// A parameter (or its gradient or moment) in Hugging Face layout.
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

/// Which of a parameter's tensors.
enum class StateKind { Param, Grad, ExpAvg, ExpAvgSq };

/// What trainer_state.json records beyond the tensors.
struct TrainerState {
  int64_t globalStep = 0;  // optimizer steps taken
  nlohmann::json logHistory = nlohmann::json::array();
};

/// The policy's state in the executor's arena. Every rank constructs one
/// and calls every method (sharded state is gathered through `comm`);
/// rank 0 writes the consolidated files.
class ModelState {
public:
  ModelState(const artifact::Artifact &artifact, Executor &ex, Communicator &comm);

  /// [model] path's weights, or N(0, initializer_range) matrices, ones for
  /// norms and zeros for biases, each parameter from its own seed; the
  /// frozen reference's from [dpo] ref_model, else the same as the policy.
  void initialize();
  /// The policy's parameters from another model directory (precomputed
  /// reference log-probabilities run the reference in the policy's place).
  void loadPolicyFrom(const std::string &dir);
  /// The policy's tensors of `kind`, whole (ZeRO-3 shards gathered), in
  /// Hugging Face layout, sorted by name; the trainable ones alone with
  /// `trainableOnly` (ZeRO-3 groups hold trainable parameters only).
  std::vector<NamedTensor> collect(StateKind kind, bool trainableOnly = false);
  /// collect(kind) into one safetensors file.
  void write(const std::string &path, StateKind kind);
  /// The model (config.json, weights, tokenizer files) into `dir` and,
  /// with `state`, everything --resume needs.
  void save(const std::string &dir, const TrainerState *state);
  /// save() into OUTPUT_DIR/checkpoint-STEP (written under a temporary
  /// name, then renamed), then removes the oldest checkpoints of the
  /// directory beyond save_total_limit. `extra` (every rank) writes more
  /// into the checkpoint's directory before it is renamed.
  void checkpoint(const TrainerState &state,
                  const std::function<void(const std::string &)> &extra = {});
  /// --resume CHECKPOINT: restores weights and moments; this rank's ZeRO-3
  /// shards are read as they are when the checkpoint has them for this
  /// world size, otherwise the consolidated files are sharded again.
  TrainerState resume(const std::string &dir);

private:
  bool lead() const { return comm.rank() == 0; }
  /// The policy from `policyDir` and, with `referenceDir`, the reference
  /// from it ("": the random initialisation).
  void load(const std::string &policyDir, const std::string *referenceDir);
  void writeTrainerState(const std::filesystem::path &dir, const TrainerState &state);
  const artifact::Artifact &artifact;
  Executor &ex;
  Communicator &comm;
  std::vector<bool> isShard;  // per parameter: a ZeRO-3 group's shard
};

/// Writes `text` to `file` atomically (trlc/Files.h); throws RunError when
/// it cannot.
void writeText(const std::string &file, const std::string &text);

/// Makes `dir` the run's output directory: it must be new, empty, or an
/// earlier trlc run's (marked by trlc_run.json, written here), so nothing
/// the user keeps there is overwritten. Takes an exclusive lock on it
/// (OUTPUT_DIR/.trlc.lock, held until the process exits: a second run is
/// refused with the holder's pid) and removes what an interrupted run left
/// half written. Throws RunError.
void claimOutputDir(const std::string &dir, const std::string &artifact);

} // namespace trlc

#endif // TRLC_RUNTIME_CHECKPOINT_H
