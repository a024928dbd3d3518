//===- Reward.cpp - reward modelling's batches and metrics ----------------===//
//
// A shard row is one preference pair, as for DPO: the chosen then the
// rejected sequence (prompt + completion + EOS each). A micro-batch of B
// pairs fills 2B sequences, the B chosen first; last_token_mask marks each
// sequence's last token, where the score head reads. Each pair's loss
// weighs 1 / (real pairs x accumulation x ranks): TRL's mean over the
// micro-batch, divided by the accumulation steps, averaged over the ranks.
// Metrics are TRL's RewardTrainer's: accuracy and margin over the pairs of
// the logging interval; min_reward and max_reward of each micro-batch
// (every rank's scores), averaged over the interval's micro-batches;
// mean_reward over all its scores; num_tokens.
//
//===----------------------------------------------------------------------===//

#include "trlc/Method.h"
#include "trlc/Run.h"

#include <algorithm>
#include <cstdio>
#include <limits>

namespace trlc {

namespace {

class Reward : public Method {
public:
  Reward(int64_t pad, int64_t accum, int64_t world) : pad(pad), scale(double(accum) * world) {}

  int64_t fill(Executor &ex, const std::string &prog, const Rows &rows) override {
    TensorRef ids = ex.input(prog, "input_ids");
    int64_t pairs = ids.dim(0) / 2, slots = ids.dim(1);
    std::vector<Sequence> seqs = pairSequences(rows, pairs, prog);
    std::vector<double> last(2 * pairs * slots, 0.0);
    for (size_t i = 0; i < seqs.size(); ++i) {
      if (!seqs[i].row)
        continue;
      int64_t len = seqs[i].row->seqLengths[seqs[i].doc];
      if (len < 1)
        throw RunError("error: the token shard holds an empty side of a preference pair; "
                       "compile the artifact again");
      last[i * slots + std::min(len, slots) - 1] = 1.0;
    }
    // (fillSequences refuses a sequence longer than the step's bound.)
    int64_t tokens = fillSequences(ex, prog, "", seqs, pad);
    writeFloats(ex, ex.input(prog, "last_token_mask"), last);
    real = static_cast<int64_t>(rows.size());
    writeFloats(ex, ex.input(prog, "pair_weights"), pairWeights(real, pairs, scale));
    return tokens;
  }
  double normalizer(const std::vector<Rows> &) const override { return 1.0; }
  void setNormalizer(Executor &, double) override {}

  void observe(Executor &ex, const Rows &) override {
    std::vector<double> rc = readFloats(ex, ex.output("train_step", "rewards_chosen")),
                        rr = readFloats(ex, ex.output("train_step", "rewards_rejected"));
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    double sum = 0;
    for (int64_t k = 0; k < real; ++k) {
      sums.add(0, rc[k] > rr[k] ? 1.0 : 0.0);
      sums.add(1, rc[k] - rr[k]);
      for (double s : {rc[k], rr[k]}) {
        lo = std::min(lo, static_cast<float>(s));
        hi = std::max(hi, static_cast<float>(s));
        sum += s;
      }
    }
    extremes.push_back(lo);
    extremes.push_back(hi);
    scoreSum += sum;
    scoreCount += 2.0 * static_cast<double>(real);
  }
  void stepDone(int64_t tokens, Communicator &comm) override {
    sums.stepDone(comm);
    numTokens.add(tokens);
    // Each micro-batch's lowest and highest score over every rank's pairs
    // (TRL gathers the scores before taking them).
    std::vector<float> all(extremes.size() * comm.size());
    if (comm.size() > 1)
      comm.allGather(extremes.data(), all.data(), extremes.size());
    else
      all = extremes;
    for (size_t m = 0; m < extremes.size(); m += 2) {
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      for (int r = 0; r < comm.size(); ++r) {
        lo = std::min(lo, all[r * extremes.size() + m]);
        hi = std::max(hi, all[r * extremes.size() + m + 1]);
      }
      if (lo <= hi) {  // some rank had a pair
        range[0] += lo;
        range[1] += hi;
        range[2] += 1;
      }
    }
    extremes.clear();
    double mean[2] = {scoreSum, scoreCount};
    if (comm.size() > 1)
      comm.allReduceSum(mean, 2);
    range[3] += mean[0];
    range[4] += mean[1];
    scoreSum = scoreCount = 0;
  }
  void addMetrics(nlohmann::json &row) override {
    sums.emit(row);
    if (range[2] > 0) {
      row["min_reward"] = range[0] / range[2];
      row["max_reward"] = range[1] / range[2];
    }
    if (range[4] > 0)
      row["mean_reward"] = range[3] / range[4];
    std::fill(std::begin(range), std::end(range), 0.0);
    numTokens.emit(row);
  }
  std::string progressText(const nlohmann::json &row) const override {
    if (!row.contains("accuracy"))
      return "";
    char buf[96];
    std::snprintf(buf, sizeof buf, "  accuracy %.2f  margin %.3f", row["accuracy"].get<double>(),
                  row["margin"].get<double>());
    return buf;
  }
  void resume(const nlohmann::json &logHistory) override { numTokens.resume(logHistory); }

private:
  int64_t pad;
  double scale;      // accumulation steps x ranks
  int64_t real = 0;  // pairs of the last micro-batch
  std::vector<float> extremes;  // per micro-batch of this step: lowest, highest score
  double scoreSum = 0, scoreCount = 0;
  MetricSums sums{{"accuracy", "margin"}};
  /// The interval's sums of the micro-batches' lowest and highest scores
  /// and their count, and of all scores and their count.
  double range[5] = {0, 0, 0, 0, 0};
  TokenCount numTokens;
};

} // namespace

std::unique_ptr<Method> makeReward(const artifact::Artifact &a) {
  return std::make_unique<Reward>(a.plan.run.padTokenId, a.plan.run.gradientAccumulationSteps,
                                  a.manifest.worldSize);
}

} // namespace trlc
