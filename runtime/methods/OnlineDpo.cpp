//===- OnlineDpo.cpp - online DPO: two samples per prompt, ranked, DPO ----===//
//
// TRL's OnlineDPOTrainer. At the start of every optimizer step each rank
// takes the prompts of each of its micro-batches (B of them: the batch
// counts pairs), samples two completions of each with the generation
// programs (all B first completions, then all B second ones, as TRL's
// prompt_ids.repeat(2, 1)), scores the 2B completions with the reward
// functions, takes missing_eos_penalty off the score of a completion that
// did not end with EOS, and ranks each pair: the first completion is the
// chosen one when its score is at least the second's (with a pairwise
// judge instead: when the judge ranks it first). The micro-batch
// then trains DPO's loss on the B chosen rows followed by the B rejected
// rows, each pair weighing 1 / (B x accumulation x ranks): TRL's mean over
// the micro-batch, divided by the accumulation steps, averaged over the
// ranks. beta is the epoch's entry of the recipe's list (the last one for
// later epochs); train_step reads it as an input.
//
//===----------------------------------------------------------------------===//

#include "Online.h"

#include "trlc/Run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>

namespace trlc {

namespace {

using nlohmann::json;

class OnlineDpo : public Method {
public:
  explicit OnlineDpo(const artifact::Artifact &a)
      : a(a), g(*a.plan.run.grpo), data(a), judge(g.judge.empty() ? nullptr : makeJudge(g)),
        sums({"objective/kl", "objective/entropy", "objective/non_score_reward",
              "objective/rlhf_reward", "objective/scores", "objective/scores_margin",
              "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
              "logps/chosen", "logps/rejected", "val/contain_eos_token", "beta"}) {}

  void setRows(const TokenRow *first, size_t count) override {
    data.setRows(first, count);
    datasetRows = count;
  }

  /// The epoch's beta: the epoch of the step's first prompt.
  double betaAt(int64_t step) const {
    double perStep = static_cast<double>(a.manifest.batchSize) *
                     a.plan.run.gradientAccumulationSteps * a.manifest.worldSize;
    size_t epoch = static_cast<size_t>(
        std::floor(static_cast<double>(step) * perStep / std::max<size_t>(datasetRows, 1)));
    return g.dpoBetas[std::min(epoch, g.dpoBetas.size() - 1)];
  }

  void prepare(Executor &ex, const std::vector<Rows> &micro, int64_t step, int accum,
               Communicator &comm) override {
    Generator &gen = data.generator(ex);
    scale = static_cast<double>(accum) * comm.size();
    beta = betaAt(step);
    std::mt19937_64 rng = data.stepRng(step, comm.rank());
    Sampling s = data.sampling();
    prepared.clear();
    next = 0;
    for (const Rows &prompts : micro) {
      size_t b = prompts.size();
      std::vector<std::vector<int64_t>> in;
      Rows promptOf;
      for (int copy = 0; copy < 2; ++copy)
        for (const TokenRow *row : prompts) {
          in.push_back(row->ids);
          promptOf.push_back(row);
        }
      std::vector<Completion> got = gen.generate(in, g.maxCompletionLength, s, rng);
      for (const Completion &c : got)
        sums.add(12, c.finished ? 1.0 : 0.0);
      // The first completion of pair k wins when its score is at least the
      // second's, or when the judge ranks it first.
      std::vector<bool> wins(b);
      std::vector<double> scores(got.size(), 0.0);
      if (judge) {
        std::vector<std::string> texts;
        std::vector<std::pair<std::string, std::string>> pairs;
        for (size_t k = 0; k < b; ++k) {
          texts.push_back(data.judgeText(prompts[k]));
          pairs.push_back({data.judgeText(prompts[k], got[k].tokens),
                           data.judgeText(prompts[k], got[b + k].tokens)});
        }
        std::vector<int> ranks = judge->judge(texts, pairs);
        for (size_t k = 0; k < b; ++k)
          wins[k] = ranks[k] == 0;
      } else {
        scores = data.score(data.rewardBatch(promptOf, got), nullptr);
        for (size_t i = 0; i < got.size(); ++i) {
          if (!got[i].finished && g.missingEosPenalty >= 0)
            scores[i] -= g.missingEosPenalty;
          sums.add(4, scores[i]);
        }
        for (size_t k = 0; k < b; ++k)
          wins[k] = scores[k] >= scores[b + k];
      }
      Prepared p;
      // Chosen rows first, then the rejected ones, pair k in place k of each.
      p.rows.resize(2 * b);
      p.scores.resize(2 * b);
      for (size_t k = 0; k < b; ++k) {
        bool firstWins = wins[k];
        size_t chosen = firstWins ? k : b + k, rejected = firstWins ? b + k : k;
        for (auto [slot, from] : {std::pair{k, chosen}, std::pair{b + k, rejected}}) {
          TokenRow &row = p.rows[slot];
          row.ids = prompts[k]->ids;
          row.mask.assign(row.ids.size(), 0);
          for (int64_t t : got[from].tokens) {
            row.ids.push_back(t);
            row.mask.push_back(1);
          }
          row.seqLengths = {static_cast<int64_t>(row.ids.size())};
          p.scores[slot] = scores[from];
        }
        if (!judge)
          sums.add(5, scores[chosen] - scores[rejected]);
      }
      prepared.push_back(std::move(p));
    }
    // For tests/torch/test_online_dpo.py: the pairs of the run's first
    // prepared step, as trained.
    if (const char *dump = std::getenv("TRLC_DUMP_GRPO_BATCH"); dump && *dump && !dumped &&
        comm.rank() == 0) {
      dumped = true;
      json batches = json::array();
      for (const Prepared &p : prepared) {
        json rows = json::array();
        for (size_t r = 0; r < p.rows.size(); ++r)
          rows.push_back({{"input_ids", p.rows[r].ids},
                          {"completion_mask", p.rows[r].mask},
                          {"score", p.scores[r]}});
        batches.push_back(rows);
      }
      std::ofstream(dump) << json{{"beta", beta}, {"micro_batches", batches}}.dump() << "\n";
    }
  }

  int64_t fill(Executor &ex, const std::string &program, const Rows &) override {
    if (next >= prepared.size())
      throw std::logic_error("online DPO: fill() without a prepared micro-batch");
    const Prepared &p = prepared[next++];
    TensorRef weights = ex.input(program, "pair_weights");
    int64_t pairs = weights.dim(0);
    int64_t real = static_cast<int64_t>(p.rows.size() / 2);
    if (real > pairs)
      throw RunError("error: a batch of " + std::to_string(real) + " pairs for a " + program +
                     " that holds " + std::to_string(pairs) + "; recompile the recipe with "
                     "`trlc compile`");
    std::vector<Sequence> seqs(2 * pairs);
    for (int64_t k = 0; k < real; ++k) {
      seqs[k] = {&p.rows[k], 0};
      seqs[pairs + k] = {&p.rows[real + k], 0};
    }
    int64_t tokens = fillSequences(ex, program, "", seqs, data.specials().pad);
    std::vector<double> w(pairs, 0.0);
    for (int64_t k = 0; k < real; ++k)
      w[k] = 1.0 / (static_cast<double>(real) * scale);
    writeFloats(ex, weights, w);
    writeFloats(ex, ex.input(program, "beta"), {beta});
    observed = &p;
    return tokens;
  }

  double normalizer(const std::vector<Rows> &) const override { return 1.0; }
  void setNormalizer(Executor &, double) override {}

  /// TRL's metrics of the pairs just trained: KL and entropy are sums over
  /// each completion's tokens, averaged over the 2B completions.
  void observe(Executor &ex, const Rows &) override {
    auto out = [&](const char *name) { return readFloats(ex, ex.output("train_step", name)); };
    std::vector<double> rc = out("rewards_chosen"), rr = out("rewards_rejected"),
                        pc = out("logps_chosen"), pr = out("logps_rejected"),
                        refc = out("ref_logps_chosen"), refr = out("ref_logps_rejected");
    size_t real = observed->rows.size() / 2;
    for (size_t k = 0; k < real; ++k) {
      for (auto [lp, ref, score] : {std::tuple{pc[k], refc[k], observed->scores[k]},
                                    std::tuple{pr[k], refr[k], observed->scores[real + k]}}) {
        double kl = lp - ref;
        sums.add(0, kl);
        sums.add(1, -lp);
        sums.add(2, -beta * kl);
        if (!judge)  // (TRL logs the RLHF reward with scores only)
          sums.add(3, score - beta * kl);
      }
      sums.add(6, rc[k]);
      sums.add(7, rr[k]);
      sums.add(8, rc[k] - rr[k] > 0 ? 1.0 : 0.0);
      sums.add(9, rc[k] - rr[k]);
      sums.add(10, pc[k]);
      sums.add(11, pr[k]);
    }
    sums.add(13, beta);
  }
  void stepDone(int64_t tokens, Communicator &comm) override {
    numTokens.add(tokens);
    sums.stepDone(comm);
  }
  void addMetrics(json &row) override {
    numTokens.emit(row);
    sums.emit(row);
  }
  std::string progressText(const json &row) const override {
    char buf[96];
    std::snprintf(buf, sizeof buf, "  score %.3f  reward acc %.2f",
                  row.value("objective/scores", 0.0), row.value("rewards/accuracies", 0.0));
    return buf;
  }
  void resume(const json &logHistory) override { numTokens.resume(logHistory); }

private:
  struct Prepared {
    std::vector<TokenRow> rows;  // B chosen, then B rejected
    std::vector<double> scores;  // theirs, missing_eos_penalty included
  };

  const artifact::Artifact &a;
  const artifact::GrpoRun &g;
  OnlineData data;
  std::unique_ptr<PairwiseJudge> judge;  // ranks the pairs instead of the rewards
  MetricSums sums;
  std::vector<Prepared> prepared;
  const Prepared *observed = nullptr;
  size_t next = 0, datasetRows = 1;
  double beta = 0.1, scale = 1;
  TokenCount numTokens;
  bool dumped = false;
};

} // namespace

std::unique_ptr<Method> makeOnlineDpo(const artifact::Artifact &artifact) {
  if (!artifact.plan.run.grpo || artifact.plan.run.grpo->dpoBetas.empty())
    throw RunError(artifact.dir + "/plan.json: error: an online DPO artifact without its "
                   "run.grpo.online_dpo settings; compile the recipe again");
  return std::make_unique<OnlineDpo>(artifact);
}

} // namespace trlc
