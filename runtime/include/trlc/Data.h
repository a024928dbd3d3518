//===- Data.h - training examples and the batches they fill -----*- C++ -*-===//
//
// The runtime's batch interface: tokenized examples (ids plus the mask of
// tokens the loss counts) fill a program's batch inputs by name. The rows
// come from the artifact's token shards (trlc/Shards.h), which the
// compiler's data plan wrote.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_DATA_H
#define TRLC_RUNTIME_DATA_H

#include "trlc/Executor.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace trlc {

/// A dataset problem, with the file, line and fix in the message.
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Example {
  std::vector<int64_t> ids;
  std::vector<uint8_t> completion;  // 1: the loss counts this token
  /// Document lengths of a packed row; empty: one document. The first
  /// token of a document is never a target, and no label crosses into the
  /// next document.
  std::vector<int64_t> seqLengths;
};

struct Dataset {
  std::vector<Example> rows;
};

/// Fills the SFT batch inputs of `program` (input_ids, position_ids
/// restarting at each document, attention_mask and, when the program has
/// them, labels shifted by one with -100 where the loss does not count,
/// and the cu_seqlens of trl-packing-layout: every document, the padding
/// at the end of each row as one more, unused entries at the total) from
/// `rows`, right-padded with `pad`; missing rows are padding that
/// contributes nothing. Adds the real
/// tokens to `inputTokens`; returns the tokens the loss counts.
int64_t fillSftBatch(Executor &ex, const std::string &program,
                     const std::vector<const Example *> &rows, int64_t pad,
                     int64_t &inputTokens);

/// Tokens the loss counts in `rows` (TRL's num_items_in_batch).
int64_t countTrainable(const std::vector<const Example *> &rows);

/// Token id -> text, from a Hugging Face tokenizer.json (model.vocab and
/// added_tokens); empty when there is none.
std::vector<std::string> readVocab(const std::string &tokenizer);

/// Concatenated token texts (<ID> for an id with no text).
std::string decode(const std::vector<std::string> &vocab,
                   const std::vector<int64_t> &ids);

} // namespace trlc

#endif // TRLC_RUNTIME_DATA_H
