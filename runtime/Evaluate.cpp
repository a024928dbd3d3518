//===- Evaluate.cpp - greedy completion of held-out prompts ---------------===//

#include "trlc/Evaluate.h"
#include "trlc/Generate.h"
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

std::string readDataFile(const artifact::Artifact &artifact, const std::string &path) {
  fs::path file = fs::path(artifact.dir) / path;
  std::ifstream in(file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  auto hash = artifact.manifest.files.find(path);
  if (hash == artifact.manifest.files.end() || artifact::contentHash(text) != hash->second)
    throw RunError(file.string() + ": error: damaged (its bytes do not match the manifest's "
                   "hash); compile the artifact again");
  return text;
}

std::vector<std::string> readVocab(const artifact::Artifact &artifact) {
  std::vector<std::string> vocab;
  if (artifact.plan.run.data.vocab.empty())
    return vocab;
  json j = json::parse(readDataFile(artifact, artifact.plan.run.data.vocab), nullptr, false);
  if (j.is_array())
    for (const json &t : j)
      vocab.push_back(t.is_string() ? t.get<std::string>() : std::string());
  return vocab;
}

SpecialTokens specialTokens(const artifact::Artifact &artifact) {
  const json &cfg = artifact.plan.run.modelConfig;
  auto id = [&](const char *key) -> int64_t {
    if (!cfg.contains(key))
      return -1;
    const json &v = cfg[key];
    if (v.is_array() && !v.empty())
      return v[0].is_number_integer() ? v[0].get<int64_t>() : -1;
    return v.is_number_integer() ? v.get<int64_t>() : -1;
  };
  SpecialTokens t;
  t.bos = id("bos_token_id");
  t.eos = id("eos_token_id");
  t.pad = artifact.plan.run.padTokenId;
  return t;
}

std::vector<int64_t> SpecialTokens::strip(std::vector<int64_t> ids) const {
  ids.erase(std::remove_if(ids.begin(), ids.end(),
                           [&](int64_t t) { return t == eos || t == pad || t == bos; }),
            ids.end());
  return ids;
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
  std::vector<std::string> vocab = readVocab(artifact);
  SpecialTokens special = specialTokens(artifact);
  Generator gen(ex, special.eos, special.pad);
  Sampling greedy;
  greedy.greedy = true;
  std::mt19937_64 rng(0);  // unused by greedy decoding
  EvalResult result;
  result.examples = static_cast<int64_t>(rows.size());
  int64_t shown = 0;
  for (size_t start = 0; start < rows.size(); start += gen.batch()) {
    size_t n = std::min<size_t>(gen.batch(), rows.size() - start);
    // The prompt is what precedes the completion; tokens after it (a chat
    // template's newline) are neither. A completion longer than the
    // expected one cannot match: generation stops there.
    std::vector<std::vector<int64_t>> prompts(n), expected(n);
    int64_t longest = 0;
    for (size_t r = 0; r < n; ++r) {
      const TokenRow &e = rows[start + r];
      size_t first = std::find(e.mask.begin(), e.mask.end(), 1) - e.mask.begin();
      prompts[r].assign(e.ids.begin(), e.ids.begin() + first);
      if (prompts[r].empty())  // nothing to condition on: start from BOS
        prompts[r].push_back(special.bos >= 0 ? special.bos : special.pad);
      if (static_cast<int64_t>(prompts[r].size()) > gen.longestPrompt())  // kept from the end
        prompts[r].erase(prompts[r].begin(),
                         prompts[r].end() - gen.longestPrompt());
      for (size_t t = first; t < e.ids.size(); ++t)
        if (e.mask[t])
          expected[r].push_back(e.ids[t]);
      longest = std::max<int64_t>(longest, expected[r].size());
    }
    std::vector<Completion> got = gen.generate(prompts, longest, greedy, rng);
    for (size_t r = 0; r < n; ++r) {
      std::vector<int64_t> &tokens = got[r].tokens;
      if (tokens.size() > expected[r].size())
        tokens.resize(expected[r].size());
      bool ok = tokens == expected[r];
      result.correct += ok;
      if (show && shown < 5) {
        auto strip = [&](const std::vector<int64_t> &v) {
          return decode(vocab, special.strip(v));
        };
        std::cout << "  " << oneLine(strip(prompts[r]), 60) << " " << oneLine(strip(tokens), 0)
                  << "   (expected " << oneLine(strip(expected[r]), 0) << ")"
                  << (ok ? "" : "  x") << "\n";
        ++shown;
      }
    }
  }
  return result;
}

} // namespace trlc
