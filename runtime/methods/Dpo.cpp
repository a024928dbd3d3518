//===- Dpo.cpp - direct preference optimization's batches and metrics -----===//
//
// A shard row is one pair: the chosen then the rejected sequence (prompt +
// completion each). A micro-batch of B pairs fills 2B sequences, the B
// chosen first. Each pair's loss weighs 1 / (real pairs of the micro-batch
// x accumulation x ranks): TRL's mean over the micro-batch, divided by the
// accumulation steps, averaged over the ranks. With rpo_alpha the chosen
// completions' NLL is their mean over the micro-batch's chosen completion
// tokens, weighted the same way. Metrics are TRL's, averaged over the
// pairs of the logging interval.
//
//===----------------------------------------------------------------------===//

#include "trlc/Method.h"
#include "trlc/Run.h"

#include <cstdio>

namespace trlc {

namespace {

class Dpo : public Method {
public:
  Dpo(int64_t pad, int64_t accum, int64_t world) : pad(pad), scale(double(accum) * world) {}

  int64_t fill(Executor &ex, const std::string &prog, const Rows &rows) override {
    bool packed = ex.hasInput(prog, "cu_seqlens");
    TensorRef ids = ex.input(prog, "input_ids");
    int64_t pairs = packed ? ids.dim(0) : ids.dim(0) / 2;
    if (packed)  // one mask row per sequence
      pairs = ex.input(prog, ex.hasInput(prog, "completion_mask") ? "completion_mask"
                                                                  : "completion_mean_mask")
                  .dim(0) / 2;
    std::vector<Sequence> seqs = pairSequences(rows, pairs, prog);
    int64_t completion = 0;
    int64_t tokens = packed ? fillPackedSequences(ex, prog, seqs, pad, &completion)
                            : fillSequences(ex, prog, "", seqs, pad, &completion);
    real = static_cast<int64_t>(rows.size());
    if (prog == "ref_logps")
      return tokens;
    if (ex.hasInput(prog, "ref_chosen_logps")) {
      std::vector<double> rc(pairs, 0.0), rr(pairs, 0.0);
      for (int64_t k = 0; k < real; ++k) {
        size_t at = 2 * static_cast<size_t>(rows[k] - first);
        rc[k] = table.at(at);
        rr[k] = table.at(at + 1);
      }
      writeFloats(ex, ex.input(prog, "ref_chosen_logps"), rc);
      writeFloats(ex, ex.input(prog, "ref_rejected_logps"), rr);
    }
    writeFloats(ex, ex.input(prog, "pair_weights"), pairWeights(real, pairs, scale));
    if (ex.hasInput(prog, "nll_weight")) {
      // Tokens of the chosen completions alone.
      std::vector<Sequence> chosen(seqs.begin(), seqs.begin() + pairs);
      int64_t chosenTokens = 0;
      for (const Sequence &q : chosen)
        if (q.row) {
          const TokenRow &r = *q.row;
          for (int64_t t = 1; t < r.seqLengths[0]; ++t)
            chosenTokens += r.mask[t];
        }
      writeFloats(ex, ex.input(prog, "nll_weight"),
                  {chosenTokens ? 1.0 / (double(chosenTokens) * scale) : 0.0});
    }
    return tokens;
  }
  double normalizer(const std::vector<Rows> &) const override { return 1.0; }
  void setNormalizer(Executor &, double) override {}

  void observe(Executor &ex, const Rows &) override {
    std::vector<double> rc = readFloats(ex, ex.output("train_step", "rewards_chosen")),
                        rr = readFloats(ex, ex.output("train_step", "rewards_rejected")),
                        pc = readFloats(ex, ex.output("train_step", "logps_chosen")),
                        pr = readFloats(ex, ex.output("train_step", "logps_rejected"));
    for (int64_t k = 0; k < real; ++k) {
      sums.add(0, rc[k]);
      sums.add(1, rr[k]);
      sums.add(2, rc[k] > rr[k] ? 1.0 : 0.0);
      sums.add(3, rc[k] - rr[k]);
      sums.add(4, pc[k]);
      sums.add(5, pr[k]);
    }
  }
  void stepDone(int64_t, Communicator &comm) override { sums.stepDone(comm); }
  void addMetrics(nlohmann::json &row) override { sums.emit(row); }
  std::string progressText(const nlohmann::json &row) const override {
    if (!row.contains("rewards/accuracies"))
      return "";
    char buf[96];
    std::snprintf(buf, sizeof buf, "  reward acc %.2f  margin %.3f",
                  row["rewards/accuracies"].get<double>(), row["rewards/margins"].get<double>());
    return buf;
  }
  void resume(const nlohmann::json &) override {}

  int referenceWidth() const override { return 2; }
  std::vector<double> referenceLogps(Executor &ex, const Rows &rows) override {
    fill(ex, "ref_logps", rows);
    ex.run("ref_logps");
    std::vector<double> rc = readFloats(ex, ex.output("ref_logps", "ref_chosen_logps")),
                        rr = readFloats(ex, ex.output("ref_logps", "ref_rejected_logps")),
                        out;
    for (size_t k = 0; k < rows.size(); ++k) {
      out.push_back(rc[k]);
      out.push_back(rr[k]);
    }
    return out;
  }
  void setReference(const TokenRow *base, std::vector<double> values) override {
    first = base;
    table = std::move(values);
  }

private:
  const TokenRow *first = nullptr;
  std::vector<double> table;  // precomputed: per row, chosen then rejected
  int64_t pad;
  double scale;       // accumulation steps x ranks
  int64_t real = 0;   // pairs of the last micro-batch
  MetricSums sums{{"rewards/chosen", "rewards/rejected", "rewards/accuracies",
                   "rewards/margins", "logps/chosen", "logps/rejected"}};
};

} // namespace

std::unique_ptr<Method> makeDpo(const artifact::Artifact &a) {
  return std::make_unique<Dpo>(a.plan.run.padTokenId, a.plan.run.gradientAccumulationSteps,
                               a.manifest.worldSize);
}

} // namespace trlc
