//===- Evaluate.cpp - greedy completion of held-out prompts ---------------===//

#include "trlc/Evaluate.h"
#include "trlc/Method.h"
#include "trlc/Run.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace trlc {

std::vector<std::string> readVocab(const artifact::Artifact &artifact) {
  std::vector<std::string> vocab;
  if (artifact.plan.run.data.vocab.empty())
    return vocab;
  fs::path file = fs::path(artifact.dir) / artifact.plan.run.data.vocab;
  std::ifstream in(file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  auto hash = artifact.manifest.files.find(artifact.plan.run.data.vocab);
  if (hash == artifact.manifest.files.end() || artifact::contentHash(text) != hash->second)
    throw RunError(file.string() + ": error: damaged (its bytes do not match the manifest's "
                   "hash); compile the artifact again");
  json j = json::parse(text, nullptr, false);
  if (j.is_array())
    for (const json &t : j)
      vocab.push_back(t.is_string() ? t.get<std::string>() : std::string());
  return vocab;
}

std::string decode(const std::vector<std::string> &vocab, const std::vector<int64_t> &ids) {
  std::string s;
  for (int64_t id : ids)
    s += id >= 0 && id < static_cast<int64_t>(vocab.size()) && !vocab[id].empty()
             ? vocab[id]
             : "<" + std::to_string(id) + ">";
  return s;
}

namespace {
/// `text` on one line (newlines as \\n); with `tail` > 0, only its last
/// `tail` bytes (a chat prompt ends with the question).
std::string oneLine(const std::string &text, size_t tail) {
  std::string out;
  for (char c : text)
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  if (tail == 0 || out.size() <= tail)
    return out;
  size_t from = out.size() - tail;
  while (from < out.size() && (static_cast<unsigned char>(out[from]) & 0xc0) == 0x80)
    ++from;  // not inside a UTF-8 sequence
  return "..." + out.substr(from);
}
} // namespace

EvalResult evaluateGreedy(Executor &ex, const artifact::Artifact &artifact,
                          const std::vector<TokenRow> &rows, bool show) {
  const artifact::RunInfo &run = artifact.plan.run;
  const json &cfg = run.modelConfig;
  int64_t vocabSize = cfg.at("vocab_size").get<int64_t>();
  int64_t seqLen = artifact.manifest.sequenceBound;
  std::vector<std::string> vocab = readVocab(artifact);
  int64_t eos = cfg.contains("eos_token_id") ? cfg["eos_token_id"].get<int64_t>() : -1;
  int64_t bos = cfg.contains("bos_token_id") ? cfg["bos_token_id"].get<int64_t>() : -1;
  int64_t pad = run.padTokenId;
  int64_t b = ex.input("predict", "input_ids").dim(0);
  TensorRef logits = ex.output("predict", "logits");
  EvalResult result;
  result.examples = static_cast<int64_t>(rows.size());
  int64_t shown = 0;
  for (size_t start = 0; start < rows.size(); start += b) {
    size_t n = std::min<size_t>(b, rows.size() - start);
    std::vector<TokenRow> cur(n);
    std::vector<std::vector<int64_t>> expected(n);
    std::vector<bool> done(n, false);
    for (size_t r = 0; r < n; ++r) {
      // The prompt is what precedes the completion; tokens after it (a
      // chat template's newline) are neither.
      const TokenRow &e = rows[start + r];
      size_t first = std::find(e.mask.begin(), e.mask.end(), 1) - e.mask.begin();
      cur[r].ids.assign(e.ids.begin(), e.ids.begin() + first);
      for (size_t t = first; t < e.ids.size(); ++t)
        if (e.mask[t])
          expected[r].push_back(e.ids[t]);
      cur[r].mask.assign(cur[r].ids.size(), 0);
    }
    for (int64_t iter = 0; iter < seqLen; ++iter) {
      Rows batch;
      for (const TokenRow &c : cur)
        batch.push_back(&c);
      fillSftBatch(ex, "predict", batch, pad);
      ex.run("predict");
      bool any = false;
      for (size_t r = 0; r < n; ++r) {
        int64_t len = cur[r].ids.size();
        if (len >= seqLen)  // a prompt that fills the sequence bound
          done[r] = true;
        if (done[r])
          continue;
        std::vector<float> row = ex.read<float>(logits, (r * seqLen + len - 1) * vocabSize, vocabSize);
        int64_t next = std::max_element(row.begin(), row.end()) - row.begin();
        cur[r].ids.push_back(next);
        cur[r].mask.push_back(1);
        int64_t generated = std::count(cur[r].mask.begin(), cur[r].mask.end(), 1);
        // A completion longer than the expected one cannot match: stop
        // there (a padding-free row would otherwise run to the whole
        // batch's length).
        if (next == eos || len + 1 >= seqLen ||
            generated >= static_cast<int64_t>(expected[r].size()))
          done[r] = true;
        any |= !done[r];
      }
      if (!any)
        break;
    }
    for (size_t r = 0; r < n; ++r) {
      std::vector<int64_t> prompt, got;
      for (size_t t = 0; t < cur[r].ids.size(); ++t)
        (cur[r].mask[t] ? got : prompt).push_back(cur[r].ids[t]);
      bool ok = got == expected[r];
      result.correct += ok;
      if (show && shown < 5) {
        auto strip = [&](std::vector<int64_t> v) {
          v.erase(std::remove_if(v.begin(), v.end(),
                                 [&](int64_t t) { return t == eos || t == pad || t == bos; }),
                  v.end());
          return decode(vocab, v);
        };
        std::cout << "  " << oneLine(strip(prompt), 60) << " " << oneLine(strip(got), 0)
                  << "   (expected " << oneLine(strip(expected[r]), 0) << ")"
                  << (ok ? "" : "  x") << "\n";
        ++shown;
      }
    }
  }
  return result;
}

} // namespace trlc
