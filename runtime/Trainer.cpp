//===- Trainer.cpp - the training loop around a compiled plan -------------===//

#include "trlc/Trainer.h"
#include "trlc/Files.h"
#include "trlc/Checkpoint.h"
#include "trlc/Comm.h"
#include "trlc/Evaluate.h"
#include "trlc/Method.h"
#include "trlc/Metrics.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>

using nlohmann::json;

namespace trlc {
namespace {

/// The rows of one of the artifact's token shards.
std::vector<TokenRow> loadShard(const artifact::Artifact &a, const std::string &shard) {
  auto rows = artifact::readTokenShard(a, shard);
  if (!rows)
    throw RunError(rows.error().message);
  return std::move(*rows);
}

/// The rows every rank draws: the same shuffle per epoch (seed + epoch),
/// global micro-batches of world x batch rows, each rank training on its
/// own slice, so the global batch does not depend on the world size.
class Sampler {
public:
  Sampler(const std::vector<TokenRow> &rows, int64_t batch, int world, uint64_t seed)
      : rows(rows), order(rows.size()), cursor(rows.size()), batch(batch), world(world),
        seed(seed) {}
  /// The next global micro-batch; the epoch's last one may be partial.
  Rows next() {
    Rows out;
    while (static_cast<int64_t>(out.size()) < batch * world) {
      if (cursor == order.size()) {
        if (!out.empty())
          break;
        ++epoch;
        std::iota(order.begin(), order.end(), 0);
        std::mt19937_64 rng(seed + epoch);
        std::shuffle(order.begin(), order.end(), rng);
        cursor = 0;
      }
      out.push_back(&rows[order[cursor++]]);
    }
    return out;
  }
  /// Rank `rank`'s slice of a global micro-batch.
  Rows slice(const Rows &global, int rank) const {
    size_t from = std::min(global.size(), size_t(rank * batch));
    size_t to = std::min(global.size(), size_t((rank + 1) * batch));
    return Rows(global.begin() + from, global.begin() + to);
  }

private:
  const std::vector<TokenRow> &rows;
  std::vector<size_t> order;
  size_t cursor;
  int64_t batch;
  int world;
  uint64_t seed;
  int64_t epoch = -1;
};

/// One process's share of a run.
class Loop {
public:
  Loop(const RunOptions &o, const artifact::Artifact &a, Executor &ex, Communicator &comm)
      : o(o), a(a), run(a.plan.run), ex(ex), comm(comm), state(a, ex, comm),
        method(makeMethod(a)) {}
  int main();

private:
  bool lead() const { return comm.rank() == 0; }
  /// save_strategy: whether the state after `done` optimizer steps is
  /// checkpointed (the last step's aside).
  bool checkpointDue(int64_t done) const {
    if (run.saveStrategy == "steps")
      return run.saveSteps > 0 && done % run.saveSteps == 0;
    if (run.saveStrategy == "epoch")
      return done % std::max<int64_t>(1, run.stepsPerEpoch) == 0;
    return false;
  }
  /// Each rank's gradients are its share of the global mean: sum them
  /// (ZeRO-3 reduce-scatters them inside the step instead).
  void allReduceGradients();
  void evaluate(int64_t step);
  /// precompute_ref_log_probs: the reference's log-probabilities of every
  /// row, from OUTPUT_DIR/ref_logps.json when an earlier run of the same
  /// artifact and data wrote it, else computed (the ranks share the
  /// batches) and written there.
  void precomputeReference(const std::vector<TokenRow> &rows);

  const RunOptions &o;
  const artifact::Artifact &a;
  const artifact::RunInfo &run;
  Executor &ex;
  Communicator &comm;
  ModelState state;
  std::unique_ptr<Method> method;
  MetricsLog metrics;
};

void Loop::allReduceGradients() {
  for (const artifact::ParamDesc &p : a.plan.params)
    if (p.grad >= 0) {
      TensorRef g = ex.tensor(p.grad);
      if (g.dtype() == artifact::DType::F64)
        comm.allReduceSum(g.as<double>(), g.numel());
      else
        comm.allReduceSum(g.as<float>(), g.numel());
    }
}

void Loop::precomputeReference(const std::vector<TokenRow> &rows) {
  int width = method->referenceWidth();
  if (!ex.hasProgram("ref_logps") || width == 0)
    return;
  namespace fs = std::filesystem;
  fs::path file = fs::path(run.outputDir) / "ref_logps.json";
  json key = {{"recipe_hash", a.manifest.recipeHash}, {"data_hash", run.data.hash},
              {"rows", rows.size()}, {"width", width}};
  if (pathExists(file)) {
    std::ifstream in(file);
    json saved = json::parse(in, nullptr, false);
    if (!saved.is_discarded() && saved.value("key", json()) == key &&
        saved.contains("values") && saved["values"].size() == rows.size() * width) {
      method->setReference(rows.data(), saved["values"].get<std::vector<double>>());
      if (!o.quiet && lead())
        std::cout << "reference log-probabilities: reusing " << file.string() << "\n";
      return;
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  // Without ref_model the policy as initialised is the reference.
  if (!run.refModelPath.empty())
    state.loadPolicyFrom(run.refModelPath);
  int64_t batch = a.manifest.batchSize;
  int world = comm.size(), rank = comm.rank();
  std::vector<double> table(rows.size() * width, 0.0);
  int64_t batches = (static_cast<int64_t>(rows.size()) + batch - 1) / batch;
  for (int64_t k = 0; k < batches; ++k) {
    // Every rank runs the same number of batches (collectives inside the
    // program under ZeRO-3); the ones past the end, or another rank's, are
    // empty or not kept.
    bool mine = k % world == rank;
    Rows part;
    for (int64_t i = k * batch; mine && i < std::min<int64_t>(rows.size(), (k + 1) * batch); ++i)
      part.push_back(&rows[i]);
    std::vector<double> v = method->referenceLogps(ex, part);
    for (size_t j = 0; j < v.size(); ++j)
      table[k * batch * width + j] = v[j];
  }
  if (world > 1)
    comm.allReduceSum(table.data(), table.size());
  if (!run.refModelPath.empty())
    state.initialize();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (lead()) {
    writeText(file.string(), json{{"key", key}, {"values", table}}.dump() + "\n");
    if (!o.quiet)
      std::printf("reference log-probabilities: %zu examples in %.1f s (saved to %s)\n",
                  rows.size(), seconds, file.string().c_str());
  }
  method->setReference(rows.data(), std::move(table));
}

void Loop::evaluate(int64_t step) {
  if (!ex.hasProgram("decode") || run.data.evalShard.empty())
    return;
  std::vector<TokenRow> rows = loadShard(a, run.data.evalShard);
  EvalResult r = evaluateGreedy(ex, a, rows, !o.quiet && lead());
  if (!lead())
    return;
  std::printf("eval: exact match %lld/%lld = %.1f%% (greedy)\n",
              static_cast<long long>(r.correct), static_cast<long long>(r.examples),
              100 * r.exactMatch());
  metrics.write({{"eval_exact_match", r.exactMatch()}, {"eval_examples", r.examples},
                 {"step", step}});
}

int Loop::main() {
  int64_t batch = a.manifest.batchSize, accum = run.gradientAccumulationSteps;
  int world = comm.size(), rank = comm.rank();
  // The rows the compiler's data plan wrote into the artifact.
  std::vector<TokenRow> rows = loadShard(a, run.data.trainShard);
  // The evaluation's files are checked now, not after hours of training.
  if (ex.hasProgram("decode") && !run.data.evalShard.empty()) {
    loadShard(a, run.data.evalShard);
    readVocab(a);
  }
  if (rows.empty())
    throw RunError("error: no training example has a trainable token (check [data] "
                   "max_length and completion_only_loss)");
  if (lead())
    claimOutputDir(run.outputDir, o.artifact);
  comm.barrier();

  state.initialize();
  precomputeReference(rows);
  TrainerState resumed;
  if (!o.resume.empty())
    resumed = state.resume(o.resume);
  // The weights the run's first step starts from (a resumed run's).
  if (!o.dumpInitial.empty())
    state.write(o.dumpInitial, StateKind::Param);
  int64_t first = resumed.globalStep;
  int64_t total = o.maxSteps > 0 ? std::min<int64_t>(o.maxSteps, run.totalSteps) : run.totalSteps;
  int64_t perBatch = method->rowsPerMicroBatch(batch);
  method->setRows(rows.data(), rows.size());
  Sampler sampler(rows, perBatch, world, static_cast<uint64_t>(run.seed));

  if (lead())
    metrics.open(run.outputDir, first > 0);
  metrics.history = resumed.logHistory;
  method->resume(resumed.logHistory);
  // GRPO improves a model it generates with: its starting point is
  // evaluated too (every rank when the weights are sharded).
  bool online = a.plan.run.grpo.has_value();
  if (online && first == 0 && (lead() || !a.plan.zero.groups.empty()))
    evaluate(0);
  if (first >= total)
    throw RunError(o.resume + ": error: the checkpoint is at step " + std::to_string(first) +
                   " and the run has " + std::to_string(total) +
                   " steps: nothing left to train (raise --max-steps or the recipe's length)");
  // A resumed run draws the batches the first steps used, and drops them;
  // inside a cycle of steps on one batch (GRPO's num_iterations) it draws
  // that batch again and the method restores what it generated from it.
  int64_t repeats = std::max<int64_t>(method->stepsPerBatch(), 1);
  for (int64_t s = 0; s < first / repeats * accum; ++s)
    sampler.next();
  std::vector<Rows> global;
  if (first % repeats != 0) {
    global.resize(accum);
    for (Rows &m : global)
      m = sampler.next();
    method->loadState(o.resume, first, comm);
  }
  int64_t logEvery = std::max<int64_t>(1, run.loggingSteps);
  Interval interval;
  ProgressBar progress(isatty(2) && !o.quiet && lead());
  TensorRef stepIn = ex.input("optimizer_step", "step");
  TensorRef lossOut = ex.output("train_step", "loss");
  // trl.dropout's seed ([peft] lora_dropout): one per micro-batch of each
  // rank, from the run's seed, the step and the micro-batch alone, so a
  // resumed run drops what the uninterrupted one did.
  bool dropout = ex.hasInput("train_step", "dropout_seed");
  TensorRef seedIn = dropout ? ex.input("train_step", "dropout_seed") : TensorRef{};
  if (!o.quiet && lead())
    std::cout << "training " << total << " steps on " << rows.size() << " examples (batch "
              << batch << " x " << accum << " accumulation"
              << (world > 1 ? " x " + std::to_string(world) + " processes (" + comm.name() + ")"
                            : std::string())
              << ", sequence bound " << a.manifest.sequenceBound << ")\n";

  // For the multi-process tests: TRLC_FAULT_EXIT=RANK:STEP makes that rank
  // die at that step, as a crashed process would.
  int faultRank = -1;
  int64_t faultStep = -1;
  if (const char *f = std::getenv("TRLC_FAULT_EXIT"))
    std::sscanf(f, "%d:%ld", &faultRank, &faultStep);
  int64_t step = first;
  for (; step < total; ++step) {
    if (rank == faultRank && step == faultStep)
      std::_Exit(3);
    auto t0 = std::chrono::steady_clock::now();
    if (step % repeats == 0) {
      global.assign(accum, Rows());
      for (Rows &m : global)
        m = sampler.next();
    }
    {
      std::vector<Rows> mine;
      for (const Rows &m : global)
        mine.push_back(sampler.slice(m, rank));
      method->prepare(ex, mine, step, static_cast<int>(accum), comm);
    }
    double normalizer = method->normalizer(global);  // over the whole global batch
    double loss = 0, tokensNow = 0;
    for (size_t k = 0; k < global.size(); ++k) {
      Rows mine = sampler.slice(global[k], rank);
      tokensNow += method->fill(ex, "train_step", mine);
      method->setNormalizer(ex, normalizer);
      if (dropout)
        ex.setScalar<int64_t>(seedIn, dropoutSeed(run.seed, (step * accum + static_cast<int64_t>(k)) * world + rank));
      ex.run("train_step");
      loss += ex.scalar<float>(lossOut);
      method->observe(ex, mine);
    }
    if (world > 1 && a.plan.zero.groups.empty())
      allReduceGradients();
    if (world > 1) {
      double totals[2] = {loss, tokensNow};
      comm.allReduceSum(totals, 2);
      loss = totals[0];
      tokensNow = totals[1];
    }
    method->stepDone(static_cast<int64_t>(tokensNow), comm);
    // The accumulated gradients of the run's first optimizer step.
    if (step == first && !o.dumpGradients.empty())
      state.write(o.dumpGradients, StateKind::Grad);
    ex.setScalar<int64_t>(stepIn, step);
    ex.run("optimizer_step");
    double gradNorm = ex.scalar<float>(ex.output("optimizer_step", "grad_norm"));
    double lr = ex.scalar<float>(ex.output("optimizer_step", "learning_rate"));
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!std::isfinite(loss))
      throw RunError("error: the loss is " + std::to_string(loss) + " at step " +
                     std::to_string(step + 1) + "; lower [train] learning_rate or "
                     "set max_grad_norm");
    interval.add(loss, dt, static_cast<int64_t>(tokensNow));
    if (lead() && ((step + 1) % logEvery == 0 || step + 1 == total)) {
      json m = {{"step", step + 1},
                {"loss", interval.loss / interval.steps},
                {"grad_norm", gradNorm},
                {"learning_rate", lr},
                {"tokens_per_second", interval.tokens / std::max(interval.seconds, 1e-9)},
                {"step_time_s", interval.seconds / interval.steps},
                {"peak_memory_bytes", peakRssBytes()},
                {"planned_memory_bytes", ex.reservedBytes()},
                {"runtime_allocated_bytes", ex.allocatedPeakBytes()},
                {"epoch", static_cast<double>(step + 1) / repeats * perBatch * accum * world /
                              rows.size()}};
      method->addMetrics(m);
      metrics.write(m);
      if (!progress.enabled() && !o.quiet)
        std::printf("step %lld/%lld  loss %.4f  grad_norm %.3f  lr %.2e  %.0f tok/s%s\n",
                    static_cast<long long>(step + 1), static_cast<long long>(total),
                    m["loss"].get<double>(), gradNorm, lr,
                    m["tokens_per_second"].get<double>(), method->progressText(m).c_str());
      interval = Interval();
    }
    progress.update(step + 1, total, loss);
    if (checkpointDue(step + 1) && step + 1 != total)
      state.checkpoint({step + 1, metrics.history},
                       [&](const std::string &dir) { method->saveState(dir, comm); });
  }
  // The last step is checkpointed (unless save_strategy = "no"), and the
  // final model is always saved (consolidated by rank 0 when sharded).
  if (run.saveStrategy != "no")
    state.checkpoint({step, metrics.history},
                     [&](const std::string &dir) { method->saveState(dir, comm); });
  state.save(run.outputDir, nullptr);
  if (!o.quiet && lead())
    std::cout << "trained " << step << " steps in " << clockText(progress.elapsedSeconds())
              << "; model saved to " << run.outputDir << "\n";
  // Generation reads sharded weights through collectives: every rank
  // decodes the same batches then; only rank 0 reports.
  if (a.plan.zero.groups.empty() && !lead())
    return 0;
  evaluate(step);
  return 0;
}

} // namespace

int train(const RunOptions &o, const artifact::Artifact &a, Executor &ex, Communicator &comm) {
  return Loop(o, a, ex, comm).main();
}

} // namespace trlc
