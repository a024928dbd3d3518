//===- Online.h - what the online methods share ----------------*- C++ -*-===//
//
// GRPO, RLOO (Grpo.cpp) and online DPO (OnlineDpo.cpp) sample completions
// of their prompts with the generation programs and score them with the
// reward functions. `OnlineData` holds what that needs: the vocabulary
// the completions are decoded with, each prompt row's dataset columns
// (data/columns.jsonl, which the rewards read), the generator and the
// reward functions of run.grpo.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_METHODS_ONLINE_H
#define TRLC_RUNTIME_METHODS_ONLINE_H

#include "trlc/Evaluate.h"
#include "trlc/Generate.h"
#include "trlc/Method.h"
#include "trlc/Rewards.h"
#include "trlc/Run.h"

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace trlc {

class OnlineData {
public:
  /// Reads the vocabulary and the columns and starts the reward functions
  /// (throws RunError naming what the artifact lacks).
  explicit OnlineData(const artifact::Artifact &a);

  /// The shard's rows: columns are indexed by a row's place among them.
  void setRows(const TokenRow *first, size_t count);
  /// run.grpo's sampling settings.
  Sampling sampling() const;
  /// The sampling generator of optimizer step `step` on rank `rank`: the
  /// run's seed, the step and the rank, so a resumed run samples as the
  /// uninterrupted one did.
  std::mt19937_64 stepRng(int64_t step, int rank) const;
  /// The generator over the executor's programs (made once).
  Generator &generator(Executor &ex);

  /// The reward batch of `completions`, completion i of prompt row
  /// `promptOf[i]`: decoded prompts and completions, the columns, and a
  /// conversational prompt's messages.
  RewardBatch rewardBatch(const Rows &promptOf, const std::vector<Completion> &completions) const;
  /// Each completion's weighted sum of the rewards (a missing reward, None,
  /// adds nothing, as TRL's nansum); `perFunction[f]` gets function f's sum
  /// and count of present rewards.
  std::vector<double> score(const RewardBatch &batch,
                            std::vector<std::pair<double, double>> *perFunction);

  /// Decoded text without the special tokens (skip_special_tokens).
  std::string text(const std::vector<int64_t> &ids) const;
  /// What a pairwise judge reads of prompt row `row` and of its completion
  /// `completion`: the texts, or for a conversational row TRL's simple chat
  /// rendering ("Role: content\n\n" per message; the completion as the
  /// assistant's), which keeps the policy's template out of the judgement.
  std::string judgeText(const TokenRow *row) const;
  std::string judgeText(const TokenRow *row, const std::vector<int64_t> &completion) const;

  const std::vector<std::unique_ptr<RewardFunction>> &rewards() const { return rewards_; }
  const SpecialTokens &specials() const { return specials_; }

private:
  void readColumns();

  const artifact::Artifact &a;
  const artifact::GrpoRun &g;
  std::vector<std::string> vocab;
  SpecialTokens specials_;
  std::vector<nlohmann::json> columns;
  std::vector<nlohmann::json> messages;  // per row: a conversational prompt, or null
  const TokenRow *firstRow = nullptr;
  std::vector<std::unique_ptr<RewardFunction>> rewards_;
  std::unique_ptr<Generator> gen;
  Executor *exec = nullptr;  // the reward models' (set by generator())
};

/// What a checkpoint inside a cycle of optimizer steps on one batch
/// (GRPO's num_iterations, PPO's num_ppo_epochs) keeps of each rank: its
/// batch, as JSON in `file`. Reading it back: the parsed object, and
/// fail(why), the error naming the file, the step and how to resume
/// otherwise (thrown at once for a missing or malformed file).
class CycleState {
public:
  CycleState(std::string file, int64_t step, const std::string &key, int64_t cycle,
             const std::string &what);
  const nlohmann::json &json() const { return j; }
  RunError fail(const std::string &why) const;

private:
  std::string file, context;
  nlohmann::json j;
};

/// The mean and (unbiased, as torch.std) std of every rank's `values`.
std::pair<double, double> globalMeanStd(const std::vector<double> &values, Communicator &comm);

} // namespace trlc

#endif // TRLC_RUNTIME_METHODS_ONLINE_H
