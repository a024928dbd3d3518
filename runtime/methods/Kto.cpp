//===- Kto.cpp - Kahneman-Tversky optimization's batches and metrics ------===//
//
// A shard row is one example (prompt + completion, with its label) and its
// KL pair (the prompt with another example's completion, paired by the
// data plan as TRL's _get_kl_dataset does, so the pair travels with its
// row through the shuffle). Each example's loss weighs 1 / (real examples
// of the micro-batch x accumulation x ranks), TRL's mean over the
// micro-batch; the KL estimate weighs each pair 1 / (real examples x
// ranks) and is summed over the ranks inside the step: the mean over the
// ranks' batches TRL gathers. Metrics are TRL's: rewards and log-probs of
// the desirable ("chosen") and undesirable ("rejected") examples averaged
// over those of the logging interval, and the KL averaged over its
// micro-batches.
//
//===----------------------------------------------------------------------===//

#include "trlc/Method.h"
#include "trlc/Run.h"

#include <cstdio>

namespace trlc {

namespace {

class Kto : public Method {
public:
  Kto(int64_t pad, int64_t accum, int64_t world, bool withKl)
      : width(withKl ? 2 : 1), pad(pad), accum(accum), world(world) {}

  int64_t fill(Executor &ex, const std::string &prog, const Rows &rows) override {
    int64_t batch = ex.input(prog, "input_ids").dim(0);
    if (static_cast<int64_t>(rows.size()) > batch)
      throw RunError("error: a batch of " + std::to_string(rows.size()) + " rows for a " +
                     prog + " that holds " + std::to_string(batch) + "; recompile the recipe "
                     "with `trlc compile`");
    std::vector<Sequence> seqs(batch), kl(batch);
    std::vector<uint8_t> label(batch, 0);
    for (size_t k = 0; k < rows.size(); ++k) {
      if (rows[k]->seqLengths.size() != 2)
        throw RunError("error: the token shard's rows are not KTO examples with their KL "
                       "pairs; compile the artifact again");
      seqs[k] = {rows[k], 0};
      kl[k] = {rows[k], 1};
      label[k] = rows[k]->label;
    }
    labels.assign(label.begin(), label.begin() + rows.size());
    int64_t tokens = fillSequences(ex, prog, "", seqs, pad);
    real = static_cast<int64_t>(rows.size());
    bool withKl = ex.hasInput(prog, "kl_input_ids");
    if (withKl)
      fillSequences(ex, prog, "kl_", kl, pad);
    if (prog == "ref_logps")
      return tokens;
    if (ex.hasInput(prog, "reference_logps")) {
      std::vector<double> ref(batch, 0.0), klRef(batch, 0.0);
      for (int64_t k = 0; k < real; ++k) {
        size_t at = width * static_cast<size_t>(rows[k] - first);
        ref[k] = table.at(at);
        if (withKl)
          klRef[k] = table.at(at + 1);
      }
      writeFloats(ex, ex.input(prog, "reference_logps"), ref);
      if (withKl)
        writeFloats(ex, ex.input(prog, "reference_kl_logps"), klRef);
    }
    std::vector<double> w(batch, 0.0), klw(batch, 0.0);
    for (int64_t k = 0; k < real; ++k) {
      w[k] = 1.0 / (double(real) * accum * world);
      klw[k] = 1.0 / (double(real) * world);
    }
    writeFloats(ex, ex.input(prog, "weights"), w);
    ex.write(ex.input(prog, "label"), label.data());
    if (withKl)
      writeFloats(ex, ex.input(prog, "kl_weights"), klw);
    return tokens;
  }
  double normalizer(const std::vector<Rows> &) const override { return 1.0; }
  void setNormalizer(Executor &, double) override {}

  void observe(Executor &ex, const Rows &) override {
    std::vector<double> r = readFloats(ex, ex.output("train_step", "rewards")),
                        lp = readFloats(ex, ex.output("train_step", "logps"));
    for (int64_t k = 0; k < real; ++k) {
      size_t side = labels[k] ? 0 : 1;
      sums.add(side, r[k]);
      sums.add(2 + side, lp[k]);
    }
    // The KL is already the mean over every rank's batch: count it once.
    double kl = readFloats(ex, ex.output("train_step", "kl"))[0];
    if (ex.hasInput("train_step", "kl_input_ids"))
      sums.add(4, world > 1 ? kl / world : kl, 1.0 / world);
  }
  void stepDone(int64_t, Communicator &comm) override { sums.stepDone(comm); }
  void addMetrics(nlohmann::json &row) override {
    sums.emit(row);
    if (row.contains("rewards/chosen") && row.contains("rewards/rejected"))
      row["rewards/margins"] =
          row["rewards/chosen"].get<double>() - row["rewards/rejected"].get<double>();
  }
  std::string progressText(const nlohmann::json &row) const override {
    std::string out;
    char buf[64];
    if (row.contains("rewards/margins")) {
      std::snprintf(buf, sizeof buf, "  reward margin %.3f", row["rewards/margins"].get<double>());
      out += buf;
    }
    if (row.contains("kl")) {
      std::snprintf(buf, sizeof buf, "  kl %.3f", row["kl"].get<double>());
      out += buf;
    }
    return out;
  }
  void resume(const nlohmann::json &) override {}

  int referenceWidth() const override { return width; }
  std::vector<double> referenceLogps(Executor &ex, const Rows &rows) override {
    fill(ex, "ref_logps", rows);
    ex.run("ref_logps");
    std::vector<double> ref = readFloats(ex, ex.output("ref_logps", "reference_logps")), kl,
                        out;
    if (width == 2)
      kl = readFloats(ex, ex.output("ref_logps", "reference_kl_logps"));
    for (size_t k = 0; k < rows.size(); ++k) {
      out.push_back(ref[k]);
      if (width == 2)
        out.push_back(kl[k]);
    }
    return out;
  }
  void setReference(const TokenRow *base, std::vector<double> values) override {
    first = base;
    table = std::move(values);
  }

private:
  int width = 1;  // precomputed values per row: the example's (and its KL pair's)
  const TokenRow *first = nullptr;
  std::vector<double> table;
  int64_t pad, accum, world;
  int64_t real = 0;
  std::vector<uint8_t> labels;
  MetricSums sums{{"rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected",
                   "kl"}};
};

} // namespace

std::unique_ptr<Method> makeKto(const artifact::Artifact &a) {
  auto it = a.plan.programs.find("train_step");
  bool withKl = it != a.plan.programs.end() && it->second.inputs.count("kl_input_ids");
  return std::make_unique<Kto>(a.plan.run.padTokenId, a.plan.run.gradientAccumulationSteps,
                               a.manifest.worldSize, withKl);
}

} // namespace trlc
