//===- Data.cpp - training examples and the batches they fill -------------===//

#include "trlc/Data.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace trlc {

std::vector<std::string> readVocab(const std::string &tokenizer) {
  std::vector<std::string> vocab;
  if (tokenizer.empty())
    return vocab;
  fs::path file = fs::is_directory(tokenizer) ? fs::path(tokenizer) / "tokenizer.json"
                                              : fs::path(tokenizer);
  std::ifstream in(file);
  auto j = json::parse(in, nullptr, false);
  if (j.is_discarded())
    return vocab;
  auto put = [&](const std::string &tok, int64_t id) {
    if (id < 0 || id > 10000000)
      return;
    if (static_cast<int64_t>(vocab.size()) <= id)
      vocab.resize(id + 1);
    vocab[id] = tok;
  };
  if (j.contains("model") && j["model"].contains("vocab") && j["model"]["vocab"].is_object())
    for (const auto &[tok, id] : j["model"]["vocab"].items())
      if (id.is_number_integer())
        put(tok, id.get<int64_t>());
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const auto &t : j["added_tokens"])
      if (t.contains("content") && t.contains("id"))
        put(t["content"].get<std::string>(), t["id"].get<int64_t>());
  return vocab;
}

std::string decode(const std::vector<std::string> &vocab,
                   const std::vector<int64_t> &ids) {
  std::string s;
  for (int64_t id : ids)
    s += id < static_cast<int64_t>(vocab.size()) && !vocab[id].empty()
             ? vocab[id]
             : "<" + std::to_string(id) + ">";
  return s;
}

namespace {
/// Marks the tokens of `e` that start a document.
std::vector<uint8_t> documentStarts(const Example &e) {
  std::vector<uint8_t> starts(e.ids.size(), 0);
  if (!starts.empty())
    starts[0] = 1;
  size_t at = 0;
  for (int64_t len : e.seqLengths) {
    if (at < starts.size())
      starts[at] = 1;
    at += static_cast<size_t>(len);
  }
  return starts;
}
} // namespace

int64_t fillSftBatch(Executor &ex, const std::string &prog,
                     const std::vector<const Example *> &rows, int64_t pad,
                     int64_t &inputTokens) {
  TensorRef ids = ex.input(prog, "input_ids"), pos = ex.input(prog, "position_ids"),
            mask = ex.input(prog, "attention_mask");
  int64_t b = ids.dim(0), s = ids.dim(1), trainable = 0;
  bool hasLabels = prog == "train_step", hasCu = ex.hasInput(prog, "cu_seqlens");
  TensorRef labelsIn = hasLabels ? ex.input(prog, "labels") : TensorRef{},
            cuIn = hasCu ? ex.input(prog, "cu_seqlens") : TensorRef{};
  // Built on the host, then copied in: the inputs may live on a GPU.
  std::vector<int64_t> idv(b * s), posv(b * s), maskv(b * s), labels(hasLabels ? b * s : 0);
  std::vector<int32_t> cu(hasCu ? cuIn.numel() : 0);
  int64_t docs = 0;
  for (int64_t r = 0; r < b; ++r) {
    const Example *e = r < static_cast<int64_t>(rows.size()) ? rows[r] : nullptr;
    int64_t len = e ? static_cast<int64_t>(e->ids.size()) : 0;
    std::vector<uint8_t> starts = e ? documentStarts(*e) : std::vector<uint8_t>();
    inputTokens += len;
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
        bool counts = t + 1 < len && e->completion[t + 1] && !starts[t + 1];
        labels[i] = counts ? e->ids[t + 1] : -100;
        trainable += counts;
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
  return trainable;
}

int64_t countTrainable(const std::vector<const Example *> &rows) {
  int64_t n = 0;
  for (const Example *e : rows) {
    std::vector<uint8_t> starts = documentStarts(*e);
    for (size_t t = 1; t < e->ids.size(); ++t)
      n += e->completion[t] && !starts[t];
  }
  return n;
}

} // namespace trlc
