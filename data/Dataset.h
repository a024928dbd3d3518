//===- Dataset.h - the data plan: JSONL rows to training rows ---*- C++ -*-===//
//
// Reads JSONL datasets in the TRL formats, tokenizes them as TRL's trainers
// do, applies each method's truncation and, for SFT, packing:
//
//   format               keys                                   methods
//   language_modeling    text (dataset_text_field) | messages  sft
//   prompt_completion    prompt + completion                   sft
//   preference           [prompt +] chosen + rejected           dpo
//   unpaired_preference  prompt + completion + label            kto
//   prompt_only          prompt                                 grpo
//   tokenized            input_ids [+ completion_mask | assistant_masks]  sft
//                        prompt_input_ids + chosen_input_ids +
//                          rejected_input_ids                   dpo
//                        prompt_input_ids + completion_input_ids +
//                          label                                kto
//
// Values are strings (standard) or lists of {role, content} messages
// (conversational, rendered with the tokenizer's chat template). `auto`
// picks the format from the first row's keys. Non-conversational text gets
// the EOS token appended as TRL does; BOS comes from the tokenizer's
// post-processor. Bad rows are errors naming file and line, or are skipped
// and counted with on_bad_row = "skip".
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_DATA_DATASET_H
#define TRLC_DATA_DATASET_H

#include "data/Packing.h"
#include "data/Tokenizer.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace trlc::data {

struct DataConfig {
  std::string method = "sft";  // sft | dpo | kto | grpo
  std::vector<std::string> files;  // paths or globs
  std::string format = "auto";
  std::string datasetTextField = "text";
  bool skipBadRows = false;
  std::string tokenizer;          // directory with tokenizer.json
  std::string chatTemplatePath;   // overrides the tokenizer's template
  std::optional<int64_t> maxLength, maxPromptLength, maxCompletionLength;
  TruncationMode truncation = TruncationMode::KeepStart;
  bool packing = false;
  std::string packingStrategy = "bfd";
  bool paddingFree = false;
  std::optional<bool> completionOnlyLoss;
  bool assistantOnlyLoss = false;
  int64_t vocabSize = 0;          // pre-tokenized ids must lie below it
  int64_t batchSize = 1;          // padding-free rows hold one batch
  std::string where;              // "recipe:line:col" of [data] train
};

/// One tokenized example of the other methods, as full sequences whose
/// mask marks the completion: DPO chosen + rejected (prompt + completion
/// each); KTO `chosen` = prompt + completion with its label and `rejected`
/// its KL pair (the prompt with another example's completion, TRL's
/// _get_kl_dataset); GRPO `chosen` = the prompt (mask all zero; the
/// completion is generated).
struct PairedExample {
  Sequence chosen, rejected;
  bool label = true;
  std::vector<int64_t> prompt, completion;  // KTO, before truncation (for the KL pairs)
  /// GRPO: the row's other fields as one JSON object (the columns TRL
  /// passes to reward functions, e.g. "answer").
  std::string columns;
};

struct DataStats {
  int64_t rowsRead = 0;
  std::map<std::string, int64_t> skipped;   // bad rows by reason
  std::map<std::string, int64_t> dropped;   // examples by reason
  int64_t truncated = 0;
  std::string format;                       // the format read
  bool conversational = false;
};

struct DataPlan {
  DataStats stats;
  std::vector<Row> rows;                // sft: training rows
  std::vector<PairedExample> examples;  // dpo, kto, grpo
  int64_t maxLength = 0;                // the sequence bound rows respect
};

/// Expands globs; throws InputError when a pattern matches nothing.
std::vector<std::string> expandFiles(const std::vector<std::string> &patterns,
                                     const std::string &where);

/// Runs the whole data plan. Throws InputError (bad rows, tokenizer,
/// template) with file and line in the message.
DataPlan runDataPlan(const DataConfig &config);

} // namespace trlc::data

#endif // TRLC_DATA_DATASET_H
