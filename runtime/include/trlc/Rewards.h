//===- Rewards.h - GRPO's reward functions ----------------------*- C++ -*-===//
//
// The rewards a GRPO run scores its completions with ([grpo] reward_funcs):
//   accuracy   1 when the completion equals the row's "solution" (else
//              "answer") column after normalising whitespace, else 0
//   format     1 when the whole completion matches format_pattern, else 0
//   length     -(completion tokens) / max_completion_length
//   python:FILE:FUNCTION  a function written as for TRL,
//              def f(prompts, completions, completion_ids, **columns)
//              -> list[float | None], run in one helper Python process per
//              reward (`python3`, or TRLC_PYTHON) that reads and writes JSON
//              lines over pipes: trlc links no Python
//   command:PROGRAM  any program speaking the same JSON lines (one request
//              {"prompts", "completions", "completion_ids", "columns"} per
//              line, one reply {"rewards": [...]} or {"error": "..."})
//   model:DIR  a reward model (sequence classification): the artifact's
//              @reward_model_K program, which the caller provides
//              (runtime/methods/Online.cpp)
// A reward that fails, times out or returns the wrong count stops the run
// with its message and the first example of the batch. None (null) is a
// missing reward, which the weighted sum skips as TRL does.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_REWARDS_H
#define TRLC_RUNTIME_REWARDS_H

#include "trlc/Artifact.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace trlc {

struct RewardBatch {
  /// Decoded text (the built-in rewards read these).
  std::vector<std::string> prompts, completions;
  /// A conversational row's prompt messages (null for a text prompt): the
  /// helpers then get these as the prompt and the completion as
  /// [{"role": "assistant", "content": TEXT}], as TRL passes them.
  std::vector<nlohmann::json> promptMessages;
  std::vector<std::vector<int64_t>> completionIds;
  std::vector<std::vector<int64_t>> promptIds;  // the prompt rows' token ids
  std::vector<nlohmann::json> columns;  // each row's dataset fields
};

class RewardFunction {
public:
  virtual ~RewardFunction() = default;
  /// The metric name (rewards/NAME/mean): the built-in's, or FUNCTION.
  virtual std::string name() const = 0;
  /// One reward per completion (nullopt: none).
  virtual std::vector<std::optional<double>> score(const RewardBatch &batch) = 0;
};

/// Online DPO's pairwise judge ([online_dpo] judge): a Python function
/// def judge(prompts, completions) taking pairs [first, second] and
/// returning per pair 0 when the first is better, else 1 (TRL's
/// BasePairwiseJudge.judge), or a command answering {"ranks": [...]}.
class PairwiseJudge {
public:
  virtual ~PairwiseJudge() = default;
  virtual std::vector<int> judge(const std::vector<std::string> &prompts,
                                 const std::vector<std::pair<std::string, std::string>> &pairs) = 0;
};
std::unique_ptr<PairwiseJudge> makeJudge(const artifact::GrpoRun &grpo);

/// The run's reward functions, in recipe order; starts the helper
/// processes (throws RunError when one cannot start or its function is
/// missing or has the wrong signature). `model(k, dir)` makes the k-th
/// reward model's.
std::vector<std::unique_ptr<RewardFunction>> makeRewards(
    const artifact::GrpoRun &grpo,
    const std::function<std::unique_ptr<RewardFunction>(size_t, const std::string &)> &model);

} // namespace trlc

#endif // TRLC_RUNTIME_REWARDS_H
