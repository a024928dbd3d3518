//===- Ppo.cpp - PPO: rollout, GAE, and the clipped policy and value step -===//
//
// TRL's PPOTrainer. At the start of every num_ppo_epochs-th optimizer step
// each rank samples one completion of each of its prompts (every
// micro-batch of the step), scores them with the reward functions (a
// reward model, typically), takes missing_eos_penalty off the score of a
// completion without EOS, and runs the rollout's forward passes:
// @old_token_logps (the policy), @ref_token_logps (the reference) and
// @values (the value model). Per response token j of a completion of L
// tokens, the reward is -kl_coef x KL_j (k1: logp - ref; k3), and the score
// is added at j = L (the value position after the last token; L - 1 when
// the completion filled max_completion_length). Optionally whitened, the
// rewards give GAE advantages (gamma, lam) over the value positions,
// returns = advantages + values, and the advantages are whitened over the
// response tokens of the rank's batch. The num_ppo_epochs steps then train
// trl.ppo_loss on the same rollout, each micro-batch's terms masked means
// (the weights pg_weight and vf_weight), as TRL's masked_mean per
// micro-batch with gradient accumulation.
//
// Alignment: position t of a row predicts token t + 1, so response token j
// (at row position P + j, P the prompt's tokens) has its log-probability
// at t = P - 1 + j, and value position j (0..L) sits at t = P - 1 + j: the
// value after reading everything up to token P - 1 + j.
//
//===----------------------------------------------------------------------===//

#include "Online.h"

#include "trlc/Checkpoint.h"
#include "trlc/PreferenceMath.h"
#include "trlc/Run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

namespace trlc {

namespace {

using nlohmann::json;

class Ppo : public Method {
public:
  explicit Ppo(const artifact::Artifact &a)
      : a(a), g(*a.plan.run.grpo), p(*g.ppo), data(a),
        sums({"objective/kl", "objective/entropy", "objective/non_score_reward",
              "objective/rlhf_reward", "objective/scores", "policy/approxkl_avg",
              "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg", "val/clipfrac_avg",
              "val/ratio", "val/num_eos_tokens"}) {}

  int64_t stepsPerBatch() const override { return g.numIterations; }
  void setRows(const TokenRow *first, size_t count) override { data.setRows(first, count); }

  void prepare(Executor &ex, const std::vector<Rows> &micro, int64_t step, int accum,
               Communicator &comm) override {
    Generator &gen = data.generator(ex);
    scale = static_cast<double>(accum) * comm.size();
    next = 0;
    if (step % g.numIterations != 0) {
      if (rollout.size() != micro.size())
        throw std::logic_error("PPO: no rollout to train on");
      return;
    }
    std::mt19937_64 rng = data.stepRng(step, comm.rank());
    Sampling s = data.sampling();
    rollout.clear();
    double eos = 0;
    for (const Rows &prompts : micro) {
      std::vector<std::vector<int64_t>> in;
      for (const TokenRow *row : prompts)
        in.push_back(row->ids);
      std::vector<Completion> got = gen.generate(in, g.maxCompletionLength, s, rng);
      std::vector<double> scores = data.score(data.rewardBatch(prompts, got), nullptr);
      Batch b;
      for (size_t i = 0; i < got.size(); ++i) {
        if (!got[i].finished && p.missingEosPenalty >= 0)
          scores[i] -= p.missingEosPenalty;
        eos += got[i].finished ? 1.0 : 0.0;
        Row r;
        r.row.ids = prompts[i]->ids;
        r.prompt = prompts[i]->ids.size();
        r.row.mask.assign(r.prompt, 0);
        for (int64_t t : got[i].tokens) {
          r.row.ids.push_back(t);
          r.row.mask.push_back(1);
        }
        r.row.seqLengths = {static_cast<int64_t>(r.row.ids.size())};
        r.score = scores[i];
        b.rows.push_back(std::move(r));
      }
      forward(ex, b);
      rollout.push_back(std::move(b));
    }
    advantages(comm);
    comm.allReduceSum(&eos, 1);
    sums.add(11, eos, 1.0 / comm.size());
    // For tests/torch/test_ppo.py: the rollout of the run's first cycle.
    if (const char *dump = std::getenv("TRLC_DUMP_GRPO_BATCH"); dump && *dump && !dumped &&
        comm.rank() == 0) {
      dumped = true;
      std::ofstream(dump) << json{{"micro_batches", rolloutJson()}}.dump() << "\n";
    }
  }

  int64_t fill(Executor &ex, const std::string &program, const Rows &) override {
    if (next >= rollout.size())
      throw std::logic_error("PPO: fill() without a rollout micro-batch");
    const Batch &b = rollout[next++];
    int64_t tokens = fillRows(ex, program, b);
    int64_t s = ex.input(program, "input_ids").dim(1), rows = ex.input(program, "input_ids").dim(0);
    std::vector<double> mask(rows * s, 0.0), vmask(rows * s, 0.0), old(rows * s, 0.0),
        adv(rows * s, 0.0), ret(rows * s, 0.0), oldV(rows * s, 0.0);
    double masked = 0, vmasked = 0;
    for (size_t r = 0; r < b.rows.size(); ++r) {
      const Row &row = b.rows[r];
      for (size_t j = 0; j < row.values.size(); ++j) {
        size_t t = r * s + row.prompt - 1 + j;
        vmask[t] = 1;
        oldV[t] = row.values[j];
        ret[t] = row.returns[j];
        vmasked += 1;
        if (j < row.logps.size()) {
          mask[t] = 1;
          old[t] = row.logps[j];
          adv[t] = row.advantages[j];
          masked += 1;
        }
      }
    }
    writeFloats(ex, ex.input(program, "completion_mask"), mask);
    writeFloats(ex, ex.input(program, "value_mask"), vmask);
    writeFloats(ex, ex.input(program, "old_per_token_logps"), old);
    writeFloats(ex, ex.input(program, "advantages"), adv);
    writeFloats(ex, ex.input(program, "returns"), ret);
    writeFloats(ex, ex.input(program, "old_values"), oldV);
    writeFloats(ex, ex.input(program, "pg_weight"), {masked > 0 ? 1.0 / (masked * scale) : 0.0});
    writeFloats(ex, ex.input(program, "vf_weight"),
                {vmasked > 0 ? 1.0 / (vmasked * scale) : 0.0});
    return tokens;
  }

  double normalizer(const std::vector<Rows> &) const override { return 1.0; }
  void setNormalizer(Executor &, double) override {}

  /// TRL's statistics of the micro-batch just trained: approxkl (half the
  /// mean squared log-ratio), the clipped shares of the policy and value
  /// terms, both losses (masked means) and the mean ratio over the
  /// response length (1 at the padding, as TRL's INVALID_LOGPROB gives).
  void observe(Executor &ex, const Rows &) override {
    const Batch &b = rollout.at(next - 1);
    std::vector<double> lp = readFloats(ex, ex.output("train_step", "per_token_logps")),
                        v = readFloats(ex, ex.output("train_step", "values"));
    int64_t s = ex.output("train_step", "values").dim(1);
    double n = 0, nv = 0, kl = 0, clip = 0, pg = 0, vf = 0, vclip = 0, ratio = 0, slots = 0;
    for (size_t r = 0; r < b.rows.size(); ++r) {
      const Row &row = b.rows[r];
      for (size_t j = 0; j < row.values.size(); ++j) {
        size_t t = r * s + row.prompt - 1 + j;
        PpoTerm value = ppoValueTerm(v[t], row.values[j], row.returns[j], p.cliprangeValue);
        vf += value.loss;
        vclip += value.clipped;
        nv += 1;
        if (j >= row.logps.size())
          continue;
        double d = lp[t] - row.logps[j];
        PpoTerm policy = ppoPolicyTerm(lp[t], row.logps[j], row.advantages[j], p.cliprange);
        kl += 0.5 * d * d;
        clip += policy.clipped;
        pg += policy.loss;
        ratio += std::exp(d);
        n += 1;
      }
      ratio += static_cast<double>(g.maxCompletionLength) - row.logps.size();
      slots += static_cast<double>(g.maxCompletionLength);
    }
    if (n > 0) {
      sums.add(5, kl / n);
      sums.add(6, clip / n);
      sums.add(7, pg / n);
    }
    if (nv > 0) {
      sums.add(8, 0.5 * vf / nv);
      sums.add(9, vclip / nv);
    }
    if (slots > 0)
      sums.add(10, ratio / slots);
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
    if (!row.contains("objective/scores"))  // no rollout in the interval
      return "";
    char buf[96];
    std::snprintf(buf, sizeof buf, "  score %.3f  kl %.3f", row.value("objective/scores", 0.0),
                  row.value("objective/kl", 0.0));
    return buf;
  }
  void resume(const json &logHistory) override { numTokens.resume(logHistory); }

  /// A checkpoint inside a num_ppo_epochs cycle keeps this rank's rollout.
  void saveState(const std::string &dir, Communicator &comm) override {
    if (g.numIterations == 1)
      return;
    std::filesystem::create_directories(dir);
    writeText(stateFile(dir, comm), json{{"micro_batches", rolloutJson()}}.dump() + "\n");
  }
  void loadState(const std::string &dir, int64_t step, Communicator &comm) override {
    CycleState state(stateFile(dir, comm), step, "num_ppo_epochs", g.numIterations,
                     "the rollout each rank made");
    const json &j = state.json();
    auto fail = [&](const std::string &why) { return state.fail(why); };
    try {
      rollout.clear();
      int64_t vocabSize = a.plan.run.modelConfig.value("vocab_size", int64_t(0));
      for (const json &rows : j.at("micro_batches")) {
        Batch b;
        for (const json &r : rows) {
          Row row;
          row.row.ids = r.at("input_ids").get<std::vector<int64_t>>();
          row.prompt = r.at("prompt_length").get<size_t>();
          row.logps = r.at("logps").get<std::vector<double>>();
          row.values = r.at("values").get<std::vector<double>>();
          row.advantages = r.at("advantages").get<std::vector<double>>();
          row.returns = r.at("returns").get<std::vector<double>>();
          row.score = r.at("score").get<double>();
          size_t n = row.row.ids.size();
          if (row.prompt < 1 || row.prompt + row.logps.size() != n ||
              row.values.size() < row.logps.size() || row.values.size() > row.logps.size() + 1 ||
              row.advantages.size() != row.logps.size() ||
              row.returns.size() != row.values.size() ||
              static_cast<int64_t>(n) > a.manifest.sequenceBound)
            throw fail("a row's lengths disagree");
          for (int64_t t : row.row.ids)
            if (t < 0 || t >= vocabSize)
              throw fail("a token id outside the vocabulary");
          row.row.mask.assign(n, 0);
          std::fill(row.row.mask.begin() + row.prompt, row.row.mask.end(), 1);
          row.row.seqLengths = {static_cast<int64_t>(n)};
          b.rows.push_back(std::move(row));
        }
        if (static_cast<int64_t>(b.rows.size()) > a.manifest.batchSize)
          throw fail("a micro-batch of more rows than the step's " +
                     std::to_string(a.manifest.batchSize));
        rollout.push_back(std::move(b));
      }
      if (static_cast<int64_t>(rollout.size()) != a.plan.run.gradientAccumulationSteps)
        throw fail(std::to_string(rollout.size()) + " micro-batches, not the " +
                   std::to_string(a.plan.run.gradientAccumulationSteps) +
                   " of gradient_accumulation_steps");
    } catch (const json::exception &e) {
      throw fail(std::string("unreadable (") + e.what() + ")");
    }
  }

private:
  struct Row {
    TokenRow row;                   // prompt + completion, the completion in the mask
    size_t prompt = 0;              // P
    double score = 0;
    std::vector<double> logps;      // per response token (L): the rollout policy's
    std::vector<double> values;     // per value position (L, or L + 1 below the length)
    std::vector<double> rewards;    // per value position
    std::vector<double> advantages; // per response token
    std::vector<double> returns;    // per value position
  };
  struct Batch {
    std::vector<Row> rows;
  };

  int64_t fillRows(Executor &ex, const std::string &program, const Batch &b) {
    std::vector<Sequence> seqs;
    for (const Row &r : b.rows)
      seqs.push_back({&r.row, 0});
    return fillSequences(ex, program, "", seqs, data.specials().pad);
  }

  /// The rollout's forward passes over micro-batch `b`: log-probabilities,
  /// the reference's for the KL, the values; the per-token rewards.
  void forward(Executor &ex, Batch &b) {
    auto run = [&](const char *program, const char *output) {
      fillRows(ex, program, b);
      ex.run(program);
      TensorRef out = ex.output(program, output);
      return std::pair{readFloats(ex, out), out.dim(1)};
    };
    auto [lp, s] = run("old_token_logps", "per_token_logps");
    std::vector<double> ref = run("ref_token_logps", "ref_per_token_logps").first;
    std::vector<double> values = run("values", "values").first;
    size_t most = static_cast<size_t>(g.maxCompletionLength);
    double kl = 0, entropy = 0, nonScore = 0, scores = 0;
    for (size_t r = 0; r < b.rows.size(); ++r) {
      Row &row = b.rows[r];
      size_t L = row.row.ids.size() - row.prompt, Lv = L < most ? L + 1 : L;
      double rowKl = 0, rowLp = 0;
      row.rewards.assign(Lv, 0.0);
      for (size_t j = 0; j < Lv; ++j) {
        size_t t = r * static_cast<size_t>(s) + row.prompt - 1 + j;
        row.values.push_back(values[t]);
        if (j >= L)
          continue;
        row.logps.push_back(lp[t]);
        double logr = ref[t] - lp[t];
        double k = p.klEstimator == "k3" ? std::expm1(logr) - logr : -logr;
        row.rewards[j] = -p.klCoef * k;
        rowKl += k;
        rowLp += lp[t];
      }
      row.rewards[L < most ? L : L - 1] += row.score;
      kl += rowKl;
      entropy -= rowLp;
      nonScore -= p.klCoef * rowKl;
      scores += row.score;
    }
    double n = static_cast<double>(b.rows.size());
    if (n > 0) {
      sums.add(0, kl / n);
      sums.add(1, entropy / n);
      sums.add(2, nonScore / n);
      sums.add(3, (nonScore + scores) / n);
      sums.add(4, scores / n);
    }
  }

  /// TRL's masked_whiten over `select`ed entries of every row: (x - mean) /
  /// sqrt(var + 1e-8) with the unbiased variance, the mean added back
  /// unless `shift`.
  template <typename Get>
  void whiten(Get get, bool shift) {
    double sum = 0, sq = 0, n = 0;
    for (Batch &b : rollout)
      for (Row &r : b.rows)
        for (double &x : get(r)) {
          sum += x;
          sq += x * x;
          n += 1;
        }
    if (n < 2)
      return;
    double mean = sum / n, var = (sq / n - mean * mean) * n / (n - 1);
    double inv = 1.0 / std::sqrt(std::max(var, 0.0) + 1e-8);
    for (Batch &b : rollout)
      for (Row &r : b.rows)
        for (double &x : get(r))
          x = (x - mean) * inv + (shift ? 0.0 : mean);
  }

  /// GAE over each row's value positions, returns, and the whitened
  /// advantages (this rank's batch, as TRL's per-process rollout).
  void advantages(Communicator &) {
    if (p.whitenRewards)
      whiten([](Row &r) -> std::vector<double> & { return r.rewards; }, false);
    for (Batch &b : rollout)
      for (Row &r : b.rows) {
        size_t Lv = r.values.size();
        std::vector<double> adv(Lv, 0.0);
        double last = 0;
        for (size_t j = Lv; j-- > 0;) {
          double nextValue = j + 1 < Lv ? r.values[j + 1] : 0.0;
          double delta = r.rewards[j] + p.gamma * nextValue - r.values[j];
          last = delta + p.gamma * p.lam * last;
          adv[j] = last;
        }
        r.returns.resize(Lv);
        for (size_t j = 0; j < Lv; ++j)
          r.returns[j] = adv[j] + r.values[j];
        r.advantages.assign(adv.begin(), adv.begin() + r.logps.size());
      }
    whiten([](Row &r) -> std::vector<double> & { return r.advantages; }, true);
  }

  json rolloutJson() const {
    json batches = json::array();
    for (const Batch &b : rollout) {
      json rows = json::array();
      for (const Row &r : b.rows)
        rows.push_back({{"input_ids", r.row.ids},
                        {"prompt_length", r.prompt},
                        {"score", r.score},
                        {"logps", r.logps},
                        {"values", r.values},
                        {"advantages", r.advantages},
                        {"returns", r.returns}});
      batches.push_back(rows);
    }
    return batches;
  }

  std::string stateFile(const std::string &dir, Communicator &comm) const {
    return dir + "/ppo_rollout-rank" + std::to_string(comm.rank()) + ".json";
  }

  const artifact::Artifact &a;
  const artifact::GrpoRun &g;
  const artifact::GrpoRun::Ppo &p;
  OnlineData data;
  MetricSums sums;
  std::vector<Batch> rollout;
  size_t next = 0;
  double scale = 1;
  TokenCount numTokens;
  bool dumped = false;
};

} // namespace

std::unique_ptr<Method> makePpo(const artifact::Artifact &artifact) {
  if (!artifact.plan.run.grpo || !artifact.plan.run.grpo->ppo)
    throw RunError(artifact.dir + "/plan.json: error: a PPO artifact without its run.grpo.ppo "
                   "settings; compile the recipe again");
  return std::make_unique<Ppo>(artifact);
}

} // namespace trlc
