//===- Online.cpp - prompts, completions and rewards of the online methods ===//

#include "Online.h"

#include "trlc/Run.h"

#include <cctype>
#include <cmath>
#include <fstream>

namespace trlc {

using nlohmann::json;

namespace {

/// A reward model: program @reward_model_K scores prompt + completion
/// token ids at the last token, in batches of the program's rows: for PPO
/// the completion through its EOS (TRL's PPOTrainer scores the truncated
/// response's ids), for the others without its special tokens (TRL scores
/// the decoded text).
class ModelReward : public RewardFunction {
public:
  ModelReward(size_t k, const std::string &dir, Executor *const &ex, const SpecialTokens &specials,
              bool throughEos)
      : program("reward_model_" + std::to_string(k)), ex(ex), specials(specials),
        throughEos(throughEos) {
    // TRL names a model's reward by its name or path's last component.
    std::string d = dir;
    while (d.size() > 1 && d.back() == '/')
      d.pop_back();
    name_ = d.substr(d.find_last_of('/') + 1);
  }
  std::string name() const override { return name_; }

  std::vector<std::optional<double>> score(const RewardBatch &batch) override {
    if (!ex)
      throw std::logic_error("a reward model scored before the executor was known");
    TensorRef ids = ex->input(program, "input_ids");
    size_t rows = static_cast<size_t>(ids.dim(0)), slots = static_cast<size_t>(ids.dim(1));
    std::vector<std::optional<double>> out;
    for (size_t from = 0; from < batch.completions.size(); from += rows) {
      size_t n = std::min(rows, batch.completions.size() - from);
      std::vector<TokenRow> seqs(n);
      for (size_t i = 0; i < n; ++i) {
        TokenRow &r = seqs[i];
        r.ids = batch.promptIds.at(from + i);
        for (int64_t t : completion(batch.completionIds.at(from + i)))
          r.ids.push_back(t);
        if (r.ids.size() > slots)
          throw RunError("error: a prompt and completion of " + std::to_string(r.ids.size()) +
                         " tokens for reward model " + name_ + ", whose program holds " +
                         std::to_string(slots) + "; recompile the recipe");
        r.mask.assign(r.ids.size(), 0);
        r.seqLengths = {static_cast<int64_t>(r.ids.size())};
      }
      std::vector<Sequence> place;
      for (const TokenRow &r : seqs)
        place.push_back({&r, 0});
      fillSequences(*ex, program, "", place, specials.pad);
      std::vector<double> last(rows * slots, 0.0);
      for (size_t i = 0; i < n; ++i)
        last[i * slots + seqs[i].ids.size() - 1] = 1.0;
      writeFloats(*ex, ex->input(program, "last_token_mask"), last);
      ex->run(program);
      std::vector<double> scores = readFloats(*ex, ex->output(program, "scores"));
      for (size_t i = 0; i < n; ++i)
        out.push_back(scores[i]);
    }
    return out;
  }

private:
  /// The completion as the model reads it: PPO's (TRL's truncate_response)
  /// up to and including its first EOS; the other methods' as TRL
  /// re-tokenizes the decoded text, without special tokens.
  std::vector<int64_t> completion(const std::vector<int64_t> &ids) const {
    if (!throughEos)
      return specials.strip(ids);
    std::vector<int64_t> out;
    for (int64_t t : ids) {
      if (t == specials.pad && t != specials.eos)
        continue;
      out.push_back(t);
      if (t == specials.eos)
        break;
    }
    return out;
  }

  std::string program, name_;
  Executor *const &ex;
  const SpecialTokens &specials;
  bool throughEos;
};

} // namespace

OnlineData::OnlineData(const artifact::Artifact &a)
    : a(a), g(*a.plan.run.grpo), vocab(readVocab(a)), specials_(specialTokens(a)) {
  if (vocab.empty())
    throw RunError(a.dir + ": error: the artifact has no vocabulary to decode completions "
                   "for the rewards; the recipe needs [model] tokenizer (or path)");
  readColumns();
  rewards_ = makeRewards(g, [&](size_t k, const std::string &dir) {
    return std::make_unique<ModelReward>(k, dir, exec, specials_, g.ppo.has_value());
  });
}

void OnlineData::setRows(const TokenRow *first, size_t count) {
  firstRow = first;
  if (count != columns.size())
    throw RunError(a.dir + ": error: data/columns.jsonl has " + std::to_string(columns.size()) +
                   " rows for " + std::to_string(count) + " training rows; compile the "
                   "artifact again");
}

Sampling OnlineData::sampling() const {
  Sampling s;
  s.temperature = g.temperature;
  s.topK = g.topK;
  s.topP = g.topP;
  s.minP = g.minP;
  s.repetitionPenalty = g.repetitionPenalty;
  return s;
}

std::mt19937_64 OnlineData::stepRng(int64_t step, int rank) const {
  return std::mt19937_64(static_cast<uint64_t>(a.plan.run.seed) * 0x9E3779B97F4A7C15ull +
                         static_cast<uint64_t>(step) * 1000003ull + static_cast<uint64_t>(rank));
}

Generator &OnlineData::generator(Executor &ex) {
  exec = &ex;
  if (!gen)
    gen = std::make_unique<Generator>(ex, specials_.eos, specials_.pad);
  return *gen;
}

RewardBatch OnlineData::rewardBatch(const Rows &promptOf,
                                    const std::vector<Completion> &completions) const {
  RewardBatch rb;
  for (size_t i = 0; i < completions.size(); ++i) {
    const TokenRow *row = promptOf.at(i);
    rb.prompts.push_back(text(row->ids));
    rb.completions.push_back(text(completions[i].tokens));
    rb.completionIds.push_back(completions[i].tokens);
    rb.promptIds.push_back(row->ids);
    rb.columns.push_back(columns.at(row - firstRow));
    rb.promptMessages.push_back(messages.at(row - firstRow));
  }
  return rb;
}

std::vector<double> OnlineData::score(const RewardBatch &batch,
                                      std::vector<std::pair<double, double>> *perFunction) {
  std::vector<double> total(batch.completions.size(), 0.0);
  if (perFunction)
    perFunction->assign(rewards_.size(), {0.0, 0.0});
  for (size_t f = 0; f < rewards_.size(); ++f) {
    std::vector<std::optional<double>> r = rewards_[f]->score(batch);
    for (size_t i = 0; i < r.size(); ++i)
      if (r[i]) {
        total[i] += g.rewardWeights[f] * *r[i];
        if (perFunction) {
          (*perFunction)[f].first += *r[i];
          (*perFunction)[f].second += 1;
        }
      }
  }
  return total;
}

std::string OnlineData::text(const std::vector<int64_t> &ids) const {
  return decode(vocab, specials_.strip(ids));
}

namespace {
/// TRL's SIMPLE_CHAT_TEMPLATE without a generation prompt.
std::string simpleChat(const json &messages) {
  std::string out;
  for (const json &m : messages) {
    std::string role = m.value("role", std::string());
    if (!role.empty())
      role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
    std::string content = m.contains("content") && m["content"].is_string()
                              ? m["content"].get<std::string>()
                              : m.value("content", json()).dump();
    out += role + ": " + content + "\n\n";
  }
  return out;
}
} // namespace

std::string OnlineData::judgeText(const TokenRow *row) const {
  const json &m = messages.at(row - firstRow);
  return m.is_null() ? text(row->ids) : simpleChat(m);
}

std::string OnlineData::judgeText(const TokenRow *row,
                                  const std::vector<int64_t> &completion) const {
  if (messages.at(row - firstRow).is_null())
    return text(completion);
  return simpleChat(json::array({{{"role", "assistant"}, {"content", text(completion)}}}));
}

void OnlineData::readColumns() {
  const std::string &rel = a.plan.run.data.columns;
  if (rel.empty())
    throw RunError(a.dir + ": error: the artifact has no data/columns.jsonl for the rewards; "
                   "compile the recipe again");
  std::string file = a.dir + "/" + rel;
  std::string textAll = readDataFile(a, rel);
  size_t start = 0;
  while (start < textAll.size()) {
    size_t nl = textAll.find('\n', start);
    if (nl == std::string::npos)
      nl = textAll.size();
    json j = json::parse(textAll.substr(start, nl - start), nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw RunError(file + ":" + std::to_string(columns.size() + 1) +
                     ": error: not a JSON object; compile the artifact again");
    // A conversational prompt's messages travel under "prompt".
    json prompt = nullptr;
    if (auto it = j.find("prompt"); it != j.end()) {
      if (!it->is_array())
        throw RunError(file + ":" + std::to_string(columns.size() + 1) +
                       ": error: \"prompt\" is not a list of messages; compile the "
                       "artifact again");
      prompt = std::move(*it);
      j.erase("prompt");
    }
    messages.push_back(std::move(prompt));
    columns.push_back(std::move(j));
    start = nl + 1;
  }
}

CycleState::CycleState(std::string file, int64_t step, const std::string &key, int64_t cycle,
                       const std::string &what)
    : file(std::move(file)) {
  context = "; the checkpoint at step " + std::to_string(step) + " is inside a cycle of " + key +
            " = " + std::to_string(cycle) + " and needs " + what + " (resume with the same "
            "number of processes, or from a checkpoint at a multiple of " + key + ")";
  std::ifstream in(this->file);
  j = json::parse(in, nullptr, false);
  if (!in || j.is_discarded() || !j.is_object())
    throw fail("missing or not JSON");
}

RunError CycleState::fail(const std::string &why) const {
  return RunError(file + ": error: " + why + context);
}

std::pair<double, double> globalMeanStd(const std::vector<double> &values, Communicator &comm) {
  double stats[3] = {0, 0, static_cast<double>(values.size())};
  for (double v : values) {
    stats[0] += v;
    stats[1] += v * v;
  }
  comm.allReduceSum(stats, 3);
  double mean = stats[0] / std::max(stats[2], 1.0);
  double var = std::max(0.0, (stats[1] - stats[2] * mean * mean) / std::max(stats[2] - 1, 1.0));
  return {mean, std::sqrt(var)};
}

} // namespace trlc
