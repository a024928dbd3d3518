//===- DataStage.h - the data plan of a compile -----------------*- C++ -*-===//
//
// The first stage of `trlc compile`: the recipe's datasets through the
// data plan (data/Dataset.h: read, tokenize, mask, truncate, pack) into
// the artifact's token shards, reused when neither the data, the tokenizer
// nor the data settings changed since the last compile into the same
// artifact. The facts later stages need (rows, lengths) come out typed.
// `trlc data` runs this stage alone.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_COMPILER_DATASTAGE_H
#define TRLC_COMPILER_DATASTAGE_H

#include "data/Dataset.h"
#include "frontend/Recipe.h"
#include "trlc/Artifact.h"
#include "trlc/Expected.h"
#include "trlc/Shards.h"

#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace trlc::compiler {

/// The data plan's settings from the recipe; `eval` reads [data] eval, one
/// example per row.
data::DataConfig dataConfig(const Recipe &recipe, bool eval);

/// What the rest of the compile knows of the data.
struct DataFacts {
  int64_t rows = 0;         // training rows (examples for DPO, KTO, GRPO)
  int64_t tokens = 0;
  int64_t longest = 0;      // tokens of the longest training row
  int64_t evalLongest = 0;  // and of the longest eval row
  /// Preference rows: the most tokens one micro-batch can draw (the
  /// per_device_train_batch_size longest rows together), padding-free
  /// pairs' bound.
  int64_t longestBatch = 0;
  std::map<int64_t, int64_t> lengthHistogram;  // power-of-two bucket -> rows
  std::string hash;         // of the dataset files
};

/// The token shards of a compile and what it says about them.
struct PreparedData {
  DataFacts facts;
  artifact::DataShards shards;  // plan.json run.data
  std::string summary;          // the line `trlc compile` prints

  /// Writes the shards, the vocabulary and the index into the artifact
  /// (nothing when they were reused).
  std::optional<Error> write(const std::string &artifactDir) const;

  bool reused = false;
  std::vector<TokenRow> train, eval;
  std::vector<std::string> vocab;  // id -> token text, for the evaluation
  std::vector<std::string> columns;  // GRPO: each training row's other fields (JSON)
  nlohmann::json index;            // data/index.json
};

/// Runs (or reuses) the data plan of `recipe` for the artifact `artifactDir`.
Expected<PreparedData> prepareData(const Recipe &recipe, const std::string &artifactDir);

/// `trlc data`: the training rows after tokenization, truncation and
/// packing as JSONL (`limit` rows, -1: all) and/or statistics.
struct DataRequest {
  std::string recipe;
  std::vector<std::string> overrides;
  bool jsonl = false, stats = false;
  int64_t limit = -1;
};
int dataCommand(const DataRequest &request, std::ostream &out, std::ostream &err);

} // namespace trlc::compiler

#endif // TRLC_COMPILER_DATASTAGE_H
