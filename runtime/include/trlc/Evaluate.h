//===- Evaluate.h - greedy completion of held-out prompts -------*- C++ -*-===//
//
// With [data] eval, the artifact holds an eval shard (prompt and expected
// completion per row, the completion marked by the loss mask), the
// generation programs (trlc/Generate.h) and the tokenizer's vocabulary
// (data/vocab.json, written by the compiler). After training, each prompt
// is completed greedily until EOS, the sequence bound or the expected
// completion's length, and the exact-match rate is reported.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_EVALUATE_H
#define TRLC_RUNTIME_EVALUATE_H

#include "trlc/Artifact.h"
#include "trlc/Executor.h"
#include "trlc/Shards.h"

#include <cstdint>
#include <string>
#include <vector>

namespace trlc {

struct EvalResult {
  int64_t correct = 0, examples = 0;
  double exactMatch() const { return examples ? double(correct) / examples : 0.0; }
};

/// Completes every row of `rows` greedily (trlc/Generate.h); prints the first
/// five (prompt, completion, expected) when `show`.
EvalResult evaluateGreedy(Executor &ex, const artifact::Artifact &artifact,
                          const std::vector<TokenRow> &rows, bool show);

/// The bytes of a data file of the artifact (a path relative to it, listed
/// in the manifest's "files"), checked against the manifest's hash; throws
/// RunError when they differ.
std::string readDataFile(const artifact::Artifact &artifact, const std::string &path);

/// The artifact's id -> token text table; empty when it has none.
std::vector<std::string> readVocab(const artifact::Artifact &artifact);

/// Concatenated token texts (<ID> for an id with no text).
std::string decode(const std::vector<std::string> &vocab, const std::vector<int64_t> &ids);

/// The model's special tokens from its config (-1: none; an id list, as
/// Llama 3 gives for EOS, counts by its first) and the step's padding.
struct SpecialTokens {
  int64_t bos = -1, eos = -1, pad = 0;
  /// `ids` without these, as transformers' skip_special_tokens decodes.
  std::vector<int64_t> strip(std::vector<int64_t> ids) const;
};
SpecialTokens specialTokens(const artifact::Artifact &artifact);

} // namespace trlc

#endif // TRLC_RUNTIME_EVALUATE_H
