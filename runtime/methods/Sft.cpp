//===- Sft.cpp - supervised fine-tuning batches and metrics ---------------===//
//
// Rows are token shards' rows: one example, or several documents packed
// back to back (their seq_lengths). The first token of a document is never
// a target and no label crosses into the next document. The loss is the
// sum over trainable tokens divided by the trainable tokens of the whole
// accumulated global batch, as TRL divides; num_tokens counts the input
// tokens trained on, as TRL's SFTTrainer logs it.
//
//===----------------------------------------------------------------------===//

#include "trlc/Method.h"
#include "trlc/Run.h"

#include <algorithm>

namespace trlc {

namespace {

/// Marks the tokens of `row` that start a document.
std::vector<uint8_t> documentStarts(const TokenRow &row) {
  std::vector<uint8_t> starts(row.ids.size(), 0);
  if (!starts.empty())
    starts[0] = 1;
  size_t at = 0;
  for (int64_t len : row.seqLengths) {
    if (at < starts.size())
      starts[at] = 1;
    at += static_cast<size_t>(len);
  }
  return starts;
}

class Sft : public Method {
public:
  explicit Sft(int64_t pad) : pad(pad) {}
  int64_t fill(Executor &ex, const std::string &program, const Rows &rows) override {
    return fillSftBatch(ex, program, rows, pad);
  }
  double normalizer(const std::vector<Rows> &micro) const override {
    int64_t trainable = 0;
    for (const Rows &rows : micro)
      trainable += countTrainable(rows);
    return static_cast<double>(std::max<int64_t>(trainable, 1));
  }
  void setNormalizer(Executor &ex, double n) override {
    ex.setScalar(ex.input("train_step", "num_items_in_batch"), static_cast<float>(n));
  }
  void stepDone(int64_t tokens, Communicator &) override { numTokens.add(tokens); }
  /// TRL's SFTTrainer logs the input tokens seen so far.
  void addMetrics(nlohmann::json &row) override { numTokens.emit(row); }
  void resume(const nlohmann::json &logHistory) override { numTokens.resume(logHistory); }

private:
  int64_t pad;
  TokenCount numTokens;
};

} // namespace

int64_t fillSftBatch(Executor &ex, const std::string &prog, const Rows &rows, int64_t pad) {
  TensorRef ids = ex.input(prog, "input_ids"), pos = ex.input(prog, "position_ids"),
            mask = ex.input(prog, "attention_mask");
  int64_t b = ids.dim(0), s = ids.dim(1), tokens = 0;
  bool hasLabels = prog == "train_step", hasCu = ex.hasInput(prog, "cu_seqlens");
  TensorRef labelsIn = hasLabels ? ex.input(prog, "labels") : TensorRef{},
            cuIn = hasCu ? ex.input(prog, "cu_seqlens") : TensorRef{};
  // Built on the host, then copied in: the inputs may live on a GPU.
  std::vector<int64_t> idv(b * s), posv(b * s), maskv(b * s), labels(hasLabels ? b * s : 0);
  std::vector<int32_t> cu(hasCu ? cuIn.numel() : 0);
  // The rows come from the artifact's own shard and the step's shapes from
  // its plan: an artifact whose two disagree is refused, never truncated.
  if (static_cast<int64_t>(rows.size()) > b)
    throw RunError("error: a batch of " + std::to_string(rows.size()) + " rows for a " + prog +
                   " that holds " + std::to_string(b) + " (the artifact's batch_size and its "
                   "plan disagree); recompile the recipe with `trlc compile`");
  int64_t docs = 0;
  for (int64_t r = 0; r < b; ++r) {
    const TokenRow *e = r < static_cast<int64_t>(rows.size()) ? rows[r] : nullptr;
    int64_t len = e ? static_cast<int64_t>(e->ids.size()) : 0;
    if (len > s)
      throw RunError("error: a row of " + std::to_string(len) + " tokens for a " + prog +
                     " of sequence " + std::to_string(s) + " (the artifact's shard and its "
                     "plan disagree); recompile the recipe with `trlc compile`");
    std::vector<uint8_t> starts = e ? documentStarts(*e) : std::vector<uint8_t>();
    // Offsets this row adds: one per document after its first, its
    // padding's and its end (cu[docs] is the last one written).
    int64_t docsInRow = e ? std::max<int64_t>(static_cast<int64_t>(e->seqLengths.size()), 1) : 1;
    if (hasCu && docs + docsInRow + 2 > static_cast<int64_t>(cu.size()))
      throw RunError("error: more documents in a batch than the " + prog + "'s cu_seqlens (" +
                     std::to_string(cu.size()) + " offsets) holds; recompile the recipe with "
                     "`trlc compile`");
    tokens += len;
    int64_t position = 0;
    for (int64_t t = 0; t < s; ++t) {
      int64_t i = r * s + t;
      if (t < len && starts[t]) {
        position = 0;
        if (hasCu && t > 0)
          cu[++docs] = static_cast<int32_t>(i);
      }
      idv[i] = t < len ? e->ids[t] : pad;
      posv[i] = t < len ? position++ : 0;
      maskv[i] = t < len;
      if (hasLabels) {
        bool counts = t + 1 < len && e->mask[t + 1] && !starts[t + 1];
        labels[i] = counts ? e->ids[t + 1] : -100;
      }
    }
    if (hasCu) {
      if (len > 0 && len < s)
        cu[++docs] = static_cast<int32_t>(r * s + len);  // the row's padding
      cu[++docs] = static_cast<int32_t>((r + 1) * s);
    }
  }
  ex.write(ids, idv.data());
  ex.write(pos, posv.data());
  ex.write(mask, maskv.data());
  if (hasLabels)
    ex.write(labelsIn, labels.data());
  if (hasCu) {
    for (size_t k = docs + 1; k < cu.size(); ++k)
      cu[k] = static_cast<int32_t>(b * s);
    ex.write(cuIn, cu.data());
  }
  return tokens;
}

int64_t countTrainable(const Rows &rows) {
  int64_t n = 0;
  for (const TokenRow *e : rows) {
    std::vector<uint8_t> starts = documentStarts(*e);
    for (size_t t = 1; t < e->ids.size(); ++t)
      n += e->mask[t] && !starts[t];
  }
  return n;
}

std::unique_ptr<Method> makeSft(const artifact::Artifact &artifact) {
  return std::make_unique<Sft>(artifact.plan.run.padTokenId);
}

} // namespace trlc
