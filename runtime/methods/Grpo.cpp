//===- Grpo.cpp - GRPO: generate, reward, and the clipped policy step -----===//
//
// TRL's GRPOTrainer. At the start of every num_iterations-th optimizer
// step every rank
// takes its prompts of each micro-batch (per_device_train_batch_size /
// num_generations of them), samples num_generations completions of each
// with the generation programs (trlc/Generate.h), scores them with the
// reward functions (trlc/Rewards.h) and turns the rewards into group
// advantages: (reward - group mean) / (std + 1e-4), the std of the group
// (scale_rewards = "group"), of the global batch ("batch") or none. The
// micro-batch then trains on prompt + completion with the completion
// tokens in the loss. At num_iterations = 1 the step's ratio is exactly 1
// (it reads its own log-probabilities as the old ones, as TRL's detached
// ones make it); with more iterations the old log-probabilities come from
// @old_token_logps, a forward pass with the step's numerics run right
// after sampling, as TRL runs one, and the later iterations train on the
// same batch against them (saved with a checkpoint taken inside the
// cycle). RLOO (method = "rloo") runs here too: @old_token_logps always,
// the reference's for the KL taken off the reward, leave-one-out
// advantages and one ratio per completion. A prompt's
// group lies in one micro-batch of one rank, so group statistics need no
// communication; the batch statistics and the loss normalisers are summed
// over the ranks.
//
//===----------------------------------------------------------------------===//

#include "Online.h"

#include "trlc/Checkpoint.h"
#include "trlc/Run.h"

#include <chrono>
#include <filesystem>
#include <limits>
#include <cstdlib>
#include <cmath>
#include <fstream>
#include <random>

namespace trlc {

namespace {

using nlohmann::json;

class Grpo : public Method {
public:
  explicit Grpo(const artifact::Artifact &a) : a(a), g(*a.plan.run.grpo), data(a) {
    rloo = a.manifest.method == "rloo";
    pad = data.specials().pad;
    std::vector<std::string> names{"reward", "reward_std", "frac_reward_zero_std",
                                   "completions/mean_length", "completions/clipped_ratio",
                                   "completions/mean_terminated_length",
                                   "time/generation_s", "time/rewards_s"};
    for (auto &r : data.rewards())
      names.push_back("rewards/" + r->name() + "/mean");
    firstTrainMetric = names.size();
    for (const char *n : {"clip_ratio/low_mean", "clip_ratio/high_mean",
                          "clip_ratio/region_mean", "kl"})
      names.push_back(n);
    sums = std::make_unique<MetricSums>(names);
  }

  int64_t stepsPerBatch() const override { return g.numIterations; }

  int64_t rowsPerMicroBatch(int64_t batch) const override { return batch / g.numGenerations; }

  void prepare(Executor &ex, const std::vector<Rows> &micro, int64_t step, int accum,
               Communicator &comm) override {
    Generator &gen = data.generator(ex);
    microBatches = accum * comm.size();
    next = 0;
    if (step % g.numIterations != 0) {
      // A later iteration: the same completions, advantages and old
      // log-probabilities (generated at the cycle's first step, or read
      // back from the checkpoint).
      if (prepared.size() != micro.size())
        throw std::logic_error("GRPO: no generation batch to iterate on");
      return;
    }
    std::mt19937_64 rng = data.stepRng(step, comm.rank());
    Sampling s = data.sampling();
    prepared.clear();
    double completionTokens = 0;
    std::vector<double> all;  // every reward of this rank (scale_rewards = "batch")
    for (const Rows &prompts : micro) {
      Prepared p;
      auto t0 = std::chrono::steady_clock::now();
      std::vector<std::vector<int64_t>> in;
      Rows promptOf;
      for (const TokenRow *row : prompts)
        for (int64_t k = 0; k < g.numGenerations; ++k) {
          in.push_back(row->ids);
          promptOf.push_back(row);
        }
      std::vector<Completion> got = gen.generate(in, g.maxCompletionLength, s, rng);
      auto t1 = std::chrono::steady_clock::now();
      std::vector<std::pair<double, double>> perFunction;
      std::vector<double> total = data.score(data.rewardBatch(promptOf, got), &perFunction);
      for (size_t f = 0; f < perFunction.size(); ++f)
        sums->add(8 + f, perFunction[f].first, perFunction[f].second);
      auto t2 = std::chrono::steady_clock::now();
      sums->add(6, std::chrono::duration<double>(t1 - t0).count(), 1.0 / micro.size());
      sums->add(7, std::chrono::duration<double>(t2 - t1).count(), 1.0 / micro.size());
      // Groups: mean and (unbiased, as torch.std) std.
      size_t groups = got.size() / g.numGenerations;
      p.advantages.assign(got.size(), 0.0);
      std::vector<double> stds(groups);
      for (size_t q = 0; q < groups && !rloo; ++q) {
        double mean = 0, var = 0;
        for (int64_t k = 0; k < g.numGenerations; ++k)
          mean += total[q * g.numGenerations + k];
        mean /= g.numGenerations;
        for (int64_t k = 0; k < g.numGenerations; ++k)
          var += std::pow(total[q * g.numGenerations + k] - mean, 2);
        stds[q] = std::sqrt(var / (g.numGenerations - 1));
        for (int64_t k = 0; k < g.numGenerations; ++k)
          p.advantages[q * g.numGenerations + k] = total[q * g.numGenerations + k] - mean;
        sums->add(1, stds[q]);
        sums->add(2, std::abs(stds[q]) < 1e-8 ? 1.0 : 0.0);
      }
      if (g.scaleRewards == "group" && !rloo)
        for (size_t i = 0; i < got.size(); ++i)
          p.advantages[i] /= stds[i / g.numGenerations] + 1e-4;
      for (size_t i = 0; i < got.size(); ++i) {
        sums->add(0, total[i]);
        all.push_back(total[i]);
        bool truncated = !got[i].finished;
        sums->add(3, static_cast<double>(got[i].tokens.size()));
        sums->add(4, truncated ? 1.0 : 0.0);
        if (!truncated)
          sums->add(5, static_cast<double>(got[i].tokens.size()));
        // The training row: prompt then completion, the completion in the
        // loss (none of it when a truncated completion is masked out).
        TokenRow row;
        const TokenRow *prompt = prompts[i / g.numGenerations];
        row.ids = prompt->ids;
        row.mask.assign(prompt->ids.size(), 0);
        bool counted = !(truncated && g.maskTruncatedCompletions);
        for (int64_t t : got[i].tokens) {
          row.ids.push_back(t);
          row.mask.push_back(counted ? 1 : 0);
        }
        row.seqLengths = {static_cast<int64_t>(row.ids.size())};
        if (counted)
          completionTokens += static_cast<double>(got[i].tokens.size());
        p.rows.push_back(std::move(row));
        p.oldLogps.push_back(got[i].logprobs);
      }
      if (rloo)
        rlooAdvantages(ex, p, total);
      else if (g.numIterations > 1)
        stepOldLogps(ex, p);
      prepared.push_back(std::move(p));
    }
    if (rloo) {
      // TRL logs the std of the whole batch's rewards (the KL not taken off).
      sums->add(1, globalMeanStd(all, comm).second, 1.0 / comm.size());
      if (g.normalizeAdvantages) {
        // (A - mean) / (std + 1e-4) over every advantage of the global batch.
        std::vector<double> advs;
        for (const Prepared &p : prepared)
          advs.insert(advs.end(), p.advantages.begin(), p.advantages.end());
        auto [am, asd] = globalMeanStd(advs, comm);
        for (Prepared &p : prepared)
          for (double &adv : p.advantages)
            adv = (adv - am) / (asd + 1e-4);
      }
      double sequences = 0;
      for (const Prepared &p : prepared)
        sequences += static_cast<double>(p.rows.size());
      comm.allReduceSum(&sequences, 1);
      globalSequences = sequences;
    }
    if (g.scaleRewards == "batch") {
      // The std of every reward of the global batch (unbiased).
      double sd = globalMeanStd(all, comm).second;
      for (Prepared &p : prepared)
        for (double &adv : p.advantages)
          adv /= sd + 1e-4;
    }
    comm.allReduceSum(&completionTokens, 1);
    globalCompletionTokens = completionTokens;
    next = 0;
    // For tests/torch/test_grpo.py: the batches the run generates first,
    // as trained.
    if (const char *dump = std::getenv("TRLC_DUMP_GRPO_BATCH"); dump && *dump && !dumped &&
        comm.rank() == 0) {
      dumped = true;
      json out = {{"loss_type", rloo ? std::string("rloo") : g.lossType},
                  {"normalizer", normalizer({})},
                  {"max_completion_length", g.maxCompletionLength},
                  {"micro_batches", preparedJson()}};
      std::ofstream(dump) << out.dump() << "\n";
    }
  }

  int64_t fill(Executor &ex, const std::string &program, const Rows &) override {
    if (next >= prepared.size())
      throw std::logic_error("GRPO: fill() without a prepared micro-batch");
    const Prepared &p = prepared[next++];
    std::vector<Sequence> seqs;
    for (const TokenRow &r : p.rows)
      seqs.push_back({&r, 0});
    int64_t tokens = fillSequences(ex, program, "", seqs, pad);
    TensorRef ids = ex.input(program, "input_ids");
    int64_t b = ids.dim(0), s = ids.dim(1);
    // old log-probabilities at the label positions: token t + 1's at t.
    std::vector<double> old(b * s, 0.0), adv(b, 0.0);
    for (size_t r = 0; r < p.rows.size(); ++r) {
      size_t promptLen = p.rows[r].ids.size() - p.oldLogps[r].size();
      for (size_t k = 0; k < p.oldLogps[r].size(); ++k)
        old[r * s + promptLen + k - 1] = p.oldLogps[r][k];
      adv[r] = p.advantages[r];
    }
    if (rloo) {
      // The completion's log-probability: the masked sum of its tokens'.
      std::vector<double> seq(b, 0.0);
      for (size_t r = 0; r < p.rows.size(); ++r)
        seq[r] = sequenceLogp(p, r);
      writeFloats(ex, ex.input(program, "old_logps"), seq);
    } else if (ex.hasInput(program, "old_per_token_logps")) {
      // (At num_iterations = 1 the step reads its own log-probabilities.)
      writeFloats(ex, ex.input(program, "old_per_token_logps"), old);
    }
    writeFloats(ex, ex.input(program, "advantages"), adv);
    return tokens;
  }

  double normalizer(const std::vector<Rows> &) const override {
    // See trl.grpo_loss: dapo divides by the global batch's completion
    // tokens, the other types' per-micro-batch means by the micro-batches.
    if (rloo)  // the mean over the global batch's completions
      return std::max(globalSequences, 1.0);
    const std::string &type = g.lossType;
    if (type == "dapo")
      return std::max(globalCompletionTokens, 1.0);
    if (type == "dr_grpo")
      return static_cast<double>(microBatches * g.maxCompletionLength);
    return static_cast<double>(microBatches);
  }
  void setNormalizer(Executor &ex, double n) override {
    ex.setScalar(ex.input("train_step", "num_items_in_batch"), static_cast<float>(n));
  }
  /// TRL's kl and clip_ratio/* of the micro-batch just trained, from the
  /// step's log-probabilities: the k3 KL's mean over completion tokens;
  /// the share of tokens (sequences, at importance_sampling_level =
  /// "sequence") whose ratio lies below 1 - epsilon with a negative
  /// advantage (low), above 1 + epsilon_high with a positive one (high),
  /// or either (region).
  void observe(Executor &ex, const Rows &) override {
    const Prepared &p = prepared.at(next - 1);
    std::vector<double> lp = readFloats(ex, ex.output("train_step", "per_token_logps")), ref;
    if (ex.hasOutput("train_step", "ref_per_token_logps"))
      ref = readFloats(ex, ex.output("train_step", "ref_per_token_logps"));
    int64_t s = ex.output("train_step", "per_token_logps").dim(1);
    double low = 0, high = 0, region = 0, units = 0, kl = 0, tokens = 0;
    for (size_t r = 0; r < p.rows.size(); ++r) {
      size_t promptLen = p.rows[r].ids.size() - p.oldLogps[r].size();
      double A = p.advantages[r], logRatio = 0, active = 0;
      auto clipped = [&](double ratio, double weight) {
        bool lo = ratio < 1 - g.epsilonLow && A < 0, hi = ratio > 1 + g.epsilonHigh && A > 0;
        low += weight * lo;
        high += weight * hi;
        region += weight * (lo || hi);
        units += weight;
      };
      for (size_t k = 0; k < p.oldLogps[r].size(); ++k) {
        double m = p.rows[r].mask[promptLen + k];
        size_t t = r * s + promptLen + k - 1;
        if (m == 0)
          continue;
        // At num_iterations = 1 GRPO's ratio is exactly 1 (the step reads
        // its own log-probabilities as the old ones).
        double diff = !rloo && g.numIterations == 1 ? 0.0 : lp[t] - p.oldLogps[r][k];
        logRatio += m * diff;
        active += m;
        if (!g.sequenceLevel && !rloo)
          clipped(std::exp(diff), m);
        if (!ref.empty()) {
          double d = ref[t] - lp[t];
          kl += m * (std::exp(d) - d - 1);
          tokens += m;
        }
      }
      if (rloo)
        clipped(std::exp(logRatio), 1.0);  // one ratio per completion: its log-probability's
      else if (g.sequenceLevel)
        clipped(std::exp(logRatio / std::max(active, 1.0)), 1.0);
    }
    // A micro-batch without completion tokens has no mean (TRL's NaN,
    // skipped by nanmean, nanmin and nanmax).
    double nan = std::numeric_limits<double>::quiet_NaN();
    if (units > 0) {
      sums->add(firstTrainMetric, low / units);
      sums->add(firstTrainMetric + 1, high / units);
      sums->add(firstTrainMetric + 2, region / units);
    }
    lowShares.push_back(units > 0 ? low / units : nan);
    highShares.push_back(units > 0 ? high / units : nan);
    if (tokens > 0 && !rloo)
      sums->add(firstTrainMetric + 3, kl / tokens);
  }
  void stepDone(int64_t tokens, Communicator &comm) override {
    numTokens.add(tokens);
    sums->stepDone(comm);
    // clip_ratio/low_min and high_max: per micro-batch the least (most)
    // share over the ranks, averaged over the step's micro-batches.
    size_t perRank = lowShares.size(), world = static_cast<size_t>(comm.size());
    std::vector<double> all(4 * perRank * world, 0.0);
    for (size_t k = 0; k < perRank; ++k) {
      size_t at = comm.rank() * perRank + k;
      for (int side = 0; side < 2; ++side) {
        double v = (side ? highShares : lowShares)[k];
        all[(2 * side) * perRank * world + at] = std::isnan(v) ? 0 : v;
        all[(2 * side + 1) * perRank * world + at] = std::isnan(v) ? 0 : 1;
      }
    }
    if (world > 1)
      comm.allReduceSum(all.data(), all.size());
    for (size_t k = 0; k < perRank; ++k)
      for (int side = 0; side < 2; ++side) {
        double best = side ? -1.0 : 2.0;
        bool any = false;
        for (size_t r = 0; r < world; ++r) {
          size_t at = r * perRank + k;
          if (all[(2 * side + 1) * perRank * world + at] == 0)
            continue;
          double v = all[(2 * side) * perRank * world + at];
          best = side ? std::max(best, v) : std::min(best, v);
          any = true;
        }
        if (any) {
          extremes[2 * side] += best;
          extremes[2 * side + 1] += 1;
        }
      }
    lowShares.clear();
    highShares.clear();
  }
  void addMetrics(json &row) override {
    numTokens.emit(row);
    sums->emit(row);
    if (g.beta == 0)
      row.erase("kl");
    if (extremes[1] > 0)
      row["clip_ratio/low_min"] = extremes[0] / extremes[1];
    if (extremes[3] > 0)
      row["clip_ratio/high_max"] = extremes[2] / extremes[3];
    std::fill(std::begin(extremes), std::end(extremes), 0.0);
  }

  /// A checkpoint inside a num_iterations cycle keeps this rank's batch.
  void saveState(const std::string &dir, Communicator &comm) override {
    if (g.numIterations == 1)
      return;
    std::filesystem::create_directories(dir);
    writeText(stateFile(dir, comm), json{{"global_completion_tokens", globalCompletionTokens},
                                         {"global_sequences", globalSequences},
                                         {"micro_batches", preparedJson()}}
                                        .dump() +
                                        "\n");
  }
  void loadState(const std::string &dir, int64_t step, Communicator &comm) override {
    CycleState state(stateFile(dir, comm), step, "num_iterations", g.numIterations,
                     "the batch each rank generated");
    const json &j = state.json();
    auto fail = [&](const std::string &why) { return state.fail(why); };
    try {
      prepared.clear();
      globalCompletionTokens = j.at("global_completion_tokens").get<double>();
      globalSequences = j.at("global_sequences").get<double>();
      for (const json &rows : j.at("micro_batches")) {
        Prepared p;
        for (const json &r : rows) {
          TokenRow row;
          row.ids = r.at("input_ids").get<std::vector<int64_t>>();
          row.mask = r.at("completion_mask").get<std::vector<uint8_t>>();
          std::vector<double> old = r.at("old_logps").get<std::vector<double>>();
          if (row.mask.size() != row.ids.size() || old.size() >= row.ids.size() ||
              static_cast<int64_t>(row.ids.size()) > a.manifest.sequenceBound)
            throw fail("a row's lengths disagree");
          for (uint8_t m : row.mask)
            if (m > 1)
              throw fail("a completion_mask value other than 0 or 1");
          int64_t vocabSize = a.plan.run.modelConfig.value("vocab_size", int64_t(0));
          for (int64_t t : row.ids)
            if (t < 0 || t >= vocabSize)
              throw fail("a token id outside the vocabulary");
          row.seqLengths = {static_cast<int64_t>(row.ids.size())};
          p.rows.push_back(std::move(row));
          p.oldLogps.push_back(std::move(old));
          p.advantages.push_back(r.at("advantage").get<double>());
        }
        if (static_cast<int64_t>(p.rows.size()) > a.manifest.batchSize)
          throw fail("a micro-batch of more rows than the step's " +
                     std::to_string(a.manifest.batchSize));
        prepared.push_back(std::move(p));
      }
      if (static_cast<int64_t>(prepared.size()) != a.plan.run.gradientAccumulationSteps)
        throw fail(std::to_string(prepared.size()) + " micro-batches, not the " +
                   std::to_string(a.plan.run.gradientAccumulationSteps) +
                   " of gradient_accumulation_steps");
    } catch (const json::exception &e) {
      throw fail(std::string("unreadable (") + e.what() + ")");
    }
  }
  std::string progressText(const json &row) const override {
    char buf[96];
    std::snprintf(buf, sizeof buf, "  reward %.3f  length %.1f", row.value("reward", 0.0),
                  row.value("completions/mean_length", 0.0));
    return buf;
  }
  void resume(const json &logHistory) override { numTokens.resume(logHistory); }

private:
  struct Prepared {
    std::vector<TokenRow> rows;
    std::vector<std::vector<double>> oldLogps;
    std::vector<double> advantages;
  };

  /// Row r's completion log-probability under the sampling policy: the
  /// sum of its counted tokens' (old_logps of RLOO).
  static double sequenceLogp(const Prepared &p, size_t r) {
    size_t promptLen = p.rows[r].ids.size() - p.oldLogps[r].size();
    double sum = 0;
    for (size_t k = 0; k < p.oldLogps[r].size(); ++k)
      sum += p.rows[r].mask[promptLen + k] * p.oldLogps[r][k];
    return sum;
  }

  /// The prepared micro-batches as rows of input_ids, completion_mask,
  /// old_logps and advantage (the checkpoint's batch and the test dump).
  json preparedJson() const {
    json batches = json::array();
    for (const Prepared &p : prepared) {
      json rows = json::array();
      for (size_t r = 0; r < p.rows.size(); ++r)
        rows.push_back({{"input_ids", p.rows[r].ids},
                        {"completion_mask", p.rows[r].mask},
                        {"old_logps", p.oldLogps[r]},
                        {"advantage", p.advantages[r]}});
      batches.push_back(rows);
    }
    return batches;
  }

  /// The old log-probabilities of `p`'s completions from a forward pass
  /// with the training step's numerics (@old_token_logps; the decode
  /// step's differ by rounding, which bf16 makes large enough to clip a
  /// whole completion's ratio).
  void stepOldLogps(Executor &ex, Prepared &p) {
    std::vector<Sequence> seqs;
    for (const TokenRow &r : p.rows)
      seqs.push_back({&r, 0});
    fillSequences(ex, "old_token_logps", "", seqs, pad);
    ex.run("old_token_logps");
    TensorRef out = ex.output("old_token_logps", "per_token_logps");
    std::vector<double> lp = readFloats(ex, out);
    int64_t s = out.dim(1);
    for (size_t r = 0; r < p.rows.size(); ++r) {
      size_t promptLen = p.rows[r].ids.size() - p.oldLogps[r].size();
      for (size_t k = 0; k < p.oldLogps[r].size(); ++k)
        p.oldLogps[r][k] = lp[r * s + promptLen + k - 1];
    }
  }

  /// RLOO's old log-probabilities and advantages of one micro-batch: with
  /// beta > 0 each reward less
  /// beta x the completion's KL to the reference (the sum over its counted
  /// tokens of old - reference log-probability, the reference's from
  /// @ref_token_logps), then each minus the mean of the other rewards of
  /// its group (leave-one-out).
  void rlooAdvantages(Executor &ex, Prepared &p, std::vector<double> rewards) {
    size_t n = p.rows.size();
    std::vector<Sequence> seqs;
    for (const TokenRow &r : p.rows)
      seqs.push_back({&r, 0});
    stepOldLogps(ex, p);
    if (g.beta != 0) {
      fillSequences(ex, "ref_token_logps", "", seqs, pad);
      ex.run("ref_token_logps");
      TensorRef out = ex.output("ref_token_logps", "ref_per_token_logps");
      std::vector<double> ref = readFloats(ex, out);
      int64_t s = out.dim(1);
      double klSum = 0, tokens = 0;
      for (size_t r = 0; r < n; ++r) {
        size_t promptLen = p.rows[r].ids.size() - p.oldLogps[r].size();
        double kl = 0;
        for (size_t k = 0; k < p.oldLogps[r].size(); ++k) {
          double m = p.rows[r].mask[promptLen + k];
          double d = p.oldLogps[r][k] - ref[r * s + promptLen + k - 1];
          kl += m * d;
          tokens += m;
        }
        klSum += kl;
        rewards[r] -= g.beta * kl;
      }
      if (tokens > 0)
        sums->add(firstTrainMetric + 3, klSum / tokens);
    }
    int64_t k = g.numGenerations;
    for (size_t q = 0; q < n / k; ++q) {
      double sum = 0, mean, var = 0;
      for (int64_t j = 0; j < k; ++j)
        sum += rewards[q * k + j];
      mean = sum / k;
      for (int64_t j = 0; j < k; ++j)
        var += std::pow(rewards[q * k + j] - mean, 2);
      sums->add(2, var / (k - 1) < 1e-16 ? 1.0 : 0.0);
      for (int64_t j = 0; j < k; ++j)
        p.advantages[q * k + j] = rewards[q * k + j] - (sum - rewards[q * k + j]) / (k - 1);
    }
  }

 public:
  void setRows(const TokenRow *first, size_t count) override { data.setRows(first, count); }

 private:
  const artifact::Artifact &a;
  const artifact::GrpoRun &g;
  OnlineData data;
  std::unique_ptr<MetricSums> sums;
  std::vector<Prepared> prepared;
  size_t next = 0;
  bool rloo = false;            // RLOO: leave-one-out advantages, one ratio per completion
  bool dumped = false;          // TRLC_DUMP_GRPO_BATCH written
  double globalSequences = 1;   // RLOO's normaliser
  size_t firstTrainMetric = 0;
  std::vector<double> lowShares, highShares;  // per micro-batch of the step
  double extremes[4] = {0, 0, 0, 0};          // low_min sum, count; high_max sum, count

  std::string stateFile(const std::string &dir, Communicator &comm) const {
    return dir + "/grpo_batch-rank" + std::to_string(comm.rank()) + ".json";
  }
  int64_t pad = 0, microBatches = 1;
  TokenCount numTokens;
  double globalCompletionTokens = 1;
};

} // namespace

std::unique_ptr<Method> makeGrpo(const artifact::Artifact &artifact) {
  if (!artifact.plan.run.grpo)
    throw RunError(artifact.dir + "/plan.json: error: an online method's artifact without its run.grpo "
                   "settings; compile the recipe again");
  return std::make_unique<Grpo>(artifact);
}

} // namespace trlc
