//===- trlc.cpp - the trlc command line -----------------------------------===//
//
//   trlc compile RECIPE.toml [-o OUT.trlc] [--emit=mlir] [--print-ir-after-all]
//                            [--print-ir-after=PASS] [--set section.key=value ...]
//                            [--print-config]
//
//===----------------------------------------------------------------------===//

#include "codegen/ArtifactWriter.h"
#include "codegen/Lowering.h"
#include "frontend/ModelConfig.h"
#include "codegen/MemorySummary.h"
#include "dialect/TrlDialect.h"
#include "frontend/GraphBuilder.h"
#include "frontend/Recipe.h"
#include "frontend/Suggest.h"
#include "passes/Pipeline.h"
#include "data/Dataset.h"
#include "trlc/Shards.h"
#include "trlc/Data.h"
#include "trlc/Kernels.h"
#include "trlc/Trainer.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/raw_ostream.h"

#include <glob.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <iostream>
#include <string>
#include <vector>

namespace {

const char *kUsage =
    "usage: trlc <command> [options]\n"
    "\n"
    "commands:\n"
    "  compile RECIPE.toml   compile a training recipe into an artifact\n"
    "  run ARTIFACT.trlc     train with a compiled artifact\n"
    "  train RECIPE.toml     compile, then run\n"
    "  data RECIPE.toml      run only the data plan: [--emit=jsonl] [--stats] [--limit N]\n"
    "  inspect ARTIFACT.trlc the memory plan: [--memory] [--json] [--timeline FILE.svg]\n"
    "\n"
    "compile options:\n"
    "  -o OUT.trlc               artifact directory (default: RECIPE_NAME.trlc)\n"
    "  --nproc N                 compile for N data-parallel processes (default 1)\n"
    "  --emit=mlir               print the trl module after the pipeline and stop\n"
    "  --emit=forward            print the forward pass and loss (before autodiff) and stop\n"
    "  --emit=plan               print the executable plan (plan.json) and stop\n"
    "  --print-ir-after-all      print the IR after every pass (to stderr)\n"
    "  --print-ir-after=PASS     print the IR after the named pass (to stderr)\n"
    "  --set section.key=value   override a recipe key (repeatable)\n"
    "  --print-config            print the fully resolved recipe and stop\n"
    "\n"
    "run options (train takes them too):\n"
    "  --device cpu|cuda         where to run (cuda: the GPU numbered LOCAL_RANK, 0\n"
    "                            by default)\n"
    "  --output-dir DIR          write checkpoints, metrics and the model there\n"
    "                            instead of the recipe's output_dir\n"
    "  --nproc N                 start N local data-parallel processes (Gloo);\n"
    "                            the artifact must be compiled for N\n"
    "  --max-steps N             stop after N optimizer steps (the LR schedule keeps\n"
    "                            the recipe's length)\n"
    "  --threads N               CPU threads (default: all)\n"
    "  --resume CHECKPOINT       continue from a checkpoint-STEP directory (any world\n"
    "                            size: ZeRO-3 shards are re-split from the consolidated files)\n"
    "  --quiet                   no progress output\n"
    "  --dump-initial FILE       write the initial weights (safetensors)\n"
    "  --dump-gradients FILE     write the first step's accumulated gradients (safetensors)\n";

int usageError(const std::string &msg) {
  std::cerr << "trlc: error: " << msg << "\n\n" << kUsage;
  return 2;
}

struct CompileOptions {
  std::string recipe;
  std::string output;
  std::string emit;
  bool printIrAfterAll = false;
  std::vector<std::string> printIrAfter;
  std::vector<std::string> overrides;
  bool printConfig = false;
  trlc::RunOptions run;
  bool train = false;
};

/// Parses compile's (and train's) arguments; returns an error message or "".
std::string parseCompileArgs(int argc, char **argv, CompileOptions &o) {
  std::string err;
  auto valueOf = [&](int &i, const std::string &arg,
                     const std::string &flag) -> std::optional<std::string> {
    if (arg.rfind(flag + "=", 0) == 0)
      return arg.substr(flag.size() + 1);
    if (arg == flag && i + 1 < argc)
      return std::string(argv[++i]);
    return std::nullopt;
  };
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (auto v = valueOf(i, arg, "-o")) {
      o.output = *v;
    } else if (auto v = valueOf(i, arg, "--emit")) {
      if (*v != "mlir" && *v != "forward" && *v != "plan")
        return "unknown --emit value '" + *v +
               "'; expected --emit=mlir, --emit=forward or --emit=plan";
      o.emit = *v;
    } else if (arg == "--print-ir-after-all") {
      o.printIrAfterAll = true;
    } else if (auto v = valueOf(i, arg, "--print-ir-after")) {
      o.printIrAfter.push_back(*v);
    } else if (auto v = valueOf(i, arg, "--set")) {
      o.overrides.push_back(*v);
    } else if (arg == "--print-config") {
      o.printConfig = true;
    } else if (!o.train && valueOf(i, arg, "--nproc")) {
      // compile: the world size the schedule is made for
      std::string v = arg.rfind("--nproc=", 0) == 0 ? arg.substr(8) : argv[i];
      char *end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n <= 0 || n > 256)
        return "--nproc needs a positive integer (at most 256), got '" + v + "'";
      o.run.nproc = static_cast<int>(n);
    } else if (o.train && trlc::parseRunOption(i, argc, argv, o.run, err)) {
      if (!err.empty())
        return err;
    } else if (!arg.empty() && arg[0] == '-') {
      std::vector<std::string> flags = {"-o", "--emit", "--print-ir-after-all",
                                        "--print-ir-after", "--set",
                                        "--print-config", "--nproc"};
      if (o.train)
        flags.insert(flags.end(), {"--device", "--output-dir", "--max-steps", "--nproc",
                                   "--threads", "--quiet", "--dump-initial",
                                   "--resume", "--dump-gradients"});
      std::string name = arg.substr(0, arg.find('='));
      std::string msg = "unknown option '" + arg + "'";
      if (auto best = trlc::closestMatch(name, flags))
        msg += "; did you mean '" + *best + "'?";
      return msg;
    } else if (o.recipe.empty()) {
      o.recipe = arg;
    } else {
      return "more than one recipe given ('" + o.recipe + "' and '" + arg + "')";
    }
  }
  if (o.recipe.empty())
    return o.train ? "train needs a recipe: trlc train RECIPE.toml"
                   : "compile needs a recipe: trlc compile RECIPE.toml";
  return "";
}

/// The data plan's settings from the recipe; `eval` reads [data] eval one
/// example per row.
trlc::data::DataConfig dataConfig(const trlc::Recipe &r, bool eval) {
  trlc::data::DataConfig c;
  c.method = trlc::methodName(r.method);
  c.files = eval ? r.data.eval : r.data.train;
  c.where = eval ? r.data.evalWhere : r.data.trainWhere;
  c.format = r.data.format;
  c.datasetTextField = r.data.datasetTextField;
  c.skipBadRows = r.data.onBadRow == "skip";
  if (r.model.tokenizer)
    c.tokenizer = *r.model.tokenizer;
  else if (r.model.path)
    c.tokenizer = *r.model.path;
  c.chatTemplatePath = r.data.chatTemplatePath.value_or("");
  c.maxLength = r.data.maxLength;
  c.maxPromptLength = r.data.maxPromptLength;
  c.maxCompletionLength = r.data.maxCompletionLength;
  c.truncation = r.data.truncationMode == "keep_end" ? trlc::data::TruncationMode::KeepEnd
                                                     : trlc::data::TruncationMode::KeepStart;
  c.packing = r.data.packing && !eval;
  c.packingStrategy = r.data.packingStrategy;
  c.paddingFree = r.data.paddingFree && !eval;
  c.completionOnlyLoss = r.data.completionOnlyLoss;
  c.assistantOnlyLoss = r.data.assistantOnlyLoss;
  c.vocabSize = r.model.config.vocabSize;
  c.batchSize = r.train.perDeviceTrainBatchSize;
  return c;
}

/// Padding when batches of `batch` rows are padded to their longest row.
double paddingFraction(const std::vector<int64_t> &lengths, int64_t batch) {
  int64_t tokens = 0, padded = 0;
  for (size_t k = 0; k < lengths.size(); k += batch) {
    int64_t longest = 0, n = 0;
    for (size_t j = k; j < std::min(lengths.size(), k + size_t(batch)); ++j, ++n) {
      longest = std::max(longest, lengths[j]);
      tokens += lengths[j];
    }
    padded += longest * n;
  }
  return padded ? 1.0 - double(tokens) / double(padded) : 0.0;
}

void printDataStats(std::ostream &out, const trlc::Recipe &r,
                    const trlc::data::DataConfig &c, const trlc::data::DataPlan &plan) {
  const trlc::data::DataStats &st = plan.stats;
  auto pct = [](double x) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%.1f%%", 100 * x);
    return std::string(buf);
  };
  out << "format: " << st.format << (st.conversational ? " (conversational)" : "") << "\n"
      << "examples read: " << st.rowsRead << "\n";
  // "LABEL: TOTAL (reason: n) ..."
  auto counts = [&](const char *label, const auto &byReason) {
    int64_t total = 0;
    for (auto &[why, n] : byReason)
      total += n;
    out << label << ": " << total;
    for (auto &[why, n] : byReason)
      out << " (" << why << ": " << n << ")";
    out << "\n";
  };
  counts("bad rows skipped", st.skipped);
  counts("examples dropped", st.dropped);
  out << "examples truncated: " << st.truncated << "\n";

  std::vector<int64_t> docs, rows;
  int64_t tokens = 0;
  if (r.method == trlc::Method::SFT) {
    for (const trlc::data::Row &row : plan.rows) {
      rows.push_back(static_cast<int64_t>(row.ids.size()));
      tokens += rows.back();
      if (row.seqLengths.empty())
        docs.push_back(rows.back());
      for (int64_t len : row.seqLengths)
        docs.push_back(len);
    }
  } else {
    for (const trlc::data::PairedExample &e : plan.examples) {
      for (const trlc::data::Sequence *s : {&e.chosen, &e.rejected}) {
        if (s->ids.empty())
          continue;
        docs.push_back(static_cast<int64_t>(s->ids.size()));
        rows.push_back(docs.back());
        tokens += docs.back();
      }
    }
  }
  out << "tokens: " << tokens << "\n"
      << "rows: " << rows.size();
  if (c.packing)
    out << " (packed, " << c.packingStrategy << ", seq_length " << plan.maxLength << ")";
  else if (c.paddingFree)
    out << " (padding-free, " << c.batchSize << " examples per row)";
  out << "\n";
  int64_t batch = r.train.perDeviceTrainBatchSize;
  out << "padding before packing: " << pct(paddingFraction(docs, batch)) << "\n"
      << "padding after packing: "
      << pct(c.paddingFree ? 0.0 : paddingFraction(rows, batch))
      << "\n";
  std::map<int64_t, int64_t> histogram;  // power-of-two bucket -> sequences
  for (int64_t len : docs) {
    int64_t bucket = 1;
    while (bucket < len)
      bucket *= 2;
    ++histogram[bucket];
  }
  out << "sequence lengths (up to):";
  for (auto [bucket, count] : histogram)
    out << " " << bucket << ":" << count;
  out << "\n";
}

/// The data plan of a compile: its rows, reused from an earlier artifact
/// when neither the data, the tokenizer nor the data settings changed.
struct PreparedData {
  int64_t rows = 0;
  nlohmann::json run;    // plan.json run.data
  nlohmann::json index;  // data/index.json
  std::vector<trlc::data::Row> train, eval;
  bool reused = false;
  std::string summary;

  std::optional<trlc::Error> write(const std::string &artifact) const {
    namespace fs = std::filesystem;
    if (reused)
      return std::nullopt;
    fs::path dir = fs::path(artifact) / "data";
    std::error_code ec;
    fs::create_directories(dir, ec);
    try {
      auto rows = [](const std::vector<trlc::data::Row> &in) {
        std::vector<trlc::TokenRow> out;
        for (const trlc::data::Row &r : in)
          out.push_back({r.ids, r.mask, r.seqLengths});
        return out;
      };
      trlc::writeShard((dir / "train.bin").string(), rows(train));
      if (!eval.empty())
        trlc::writeShard((dir / "eval.bin").string(), rows(eval));
      else
        fs::remove(dir / "eval.bin", ec);
    } catch (const std::exception &e) {
      return trlc::Error{e.what()};
    }
    std::ofstream(dir / "index.json") << index.dump(1) << "\n";
    return std::nullopt;
  }
};

trlc::Expected<PreparedData> prepareData(const trlc::Recipe &r, const std::string &artifact,
                                         bool mayReuse) {
  namespace fs = std::filesystem;
  PreparedData d;
  trlc::data::DataConfig train = dataConfig(r, false), eval = dataConfig(r, true);
  // Packed rows feed the step through trl-packing-layout (SFT); so do
  // padding-free rows (one batch of examples back to back per row).
  train.packing = train.packing && r.method == trlc::Method::SFT;
  train.paddingFree = train.paddingFree && !train.packing && r.method == trlc::Method::SFT;
  std::vector<std::string> sources, evalSources;
  try {
    sources = trlc::data::expandFiles(train.files, train.where);
    if (!eval.files.empty())
      evalSources = trlc::data::expandFiles(eval.files, eval.where);
  } catch (const trlc::data::InputError &e) {
    return trlc::Error{e.what()};
  }
  std::vector<std::string> hashed = sources;
  hashed.insert(hashed.end(), evalSources.begin(), evalSources.end());
  std::vector<std::string> tokenizerFiles;
  if (!train.tokenizer.empty())
    for (const char *f : {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"})
      if (fs::exists(fs::path(train.tokenizer) / f))
        tokenizerFiles.push_back((fs::path(train.tokenizer) / f).string());
  if (!train.chatTemplatePath.empty())
    tokenizerFiles.push_back(train.chatTemplatePath);
  auto absolute = [](std::vector<std::string> files) {
    for (std::string &f : files)
      f = fs::absolute(f).lexically_normal().string();
    return files;
  };
  nlohmann::json settings = {
      {"method", train.method}, {"format", train.format},
      {"dataset_text_field", train.datasetTextField}, {"skip_bad_rows", train.skipBadRows},
      {"max_length", train.maxLength.value_or(-1)},
      {"max_prompt_length", train.maxPromptLength.value_or(-1)},
      {"max_completion_length", train.maxCompletionLength.value_or(-1)},
      {"truncation_mode", r.data.truncationMode},
      {"completion_only_loss", train.completionOnlyLoss.value_or(true)},
      {"assistant_only_loss", train.assistantOnlyLoss}, {"vocab_size", train.vocabSize},
      {"packing", train.packing}, {"packing_strategy", train.packingStrategy},
      {"padding_free", train.paddingFree}, {"batch_size", train.batchSize},
      {"tokenizer", trlc::hashFiles(tokenizerFiles)}};
  std::string hash = trlc::hashFiles(hashed);
  d.run = {{"train_shard", "data/train.bin"},
           {"eval_shard", evalSources.empty() ? "" : "data/eval.bin"},
           {"sources", absolute(hashed)},
           {"hash", hash}};

  fs::path indexPath = fs::path(artifact) / "data" / "index.json";
  if (mayReuse && fs::exists(indexPath)) {
    try {
      nlohmann::json old = nlohmann::json::parse(std::ifstream(indexPath));
      if (old.value("hash", "") == hash && old.value("settings", nlohmann::json()) == settings &&
          fs::exists(fs::path(artifact) / "data" / "train.bin")) {
        d.index = old;
        d.rows = old.value("train_rows", 0);
        d.reused = true;
        d.summary = "data: unchanged since the last compile (hash " + hash +
                    "), reusing the token shards\n";
        return d;
      }
    } catch (const std::exception &) {
      // Damaged index: rebuild.
    }
  }

  try {
    trlc::data::DataPlan plan = trlc::data::runDataPlan(train);
    if (r.method == trlc::Method::SFT) {
      d.train = std::move(plan.rows);
    } else {
      for (trlc::data::PairedExample &e : plan.examples)
        d.train.push_back({std::move(e.chosen.ids), std::move(e.chosen.mask),
                           {static_cast<int64_t>(e.chosen.ids.size())}});
    }
    d.rows = static_cast<int64_t>(r.method == trlc::Method::SFT ? d.train.size()
                                                                : plan.examples.size());
    if (!evalSources.empty() && r.method == trlc::Method::SFT)
      d.eval = trlc::data::runDataPlan(eval).rows;
    int64_t tokens = 0, longest = 0;
    std::map<int64_t, int64_t> histogram;
    for (const trlc::data::Row &row : d.train) {
      int64_t len = static_cast<int64_t>(row.ids.size());
      tokens += len;
      longest = std::max(longest, len);
      int64_t bucket = 1;
      while (bucket < len)
        bucket *= 2;
      ++histogram[bucket];
    }
    nlohmann::json hist = nlohmann::json::object();
    for (auto [b, n] : histogram)
      hist[std::to_string(b)] = n;
    int64_t skipped = 0, dropped = 0;
    for (auto &[k, n] : plan.stats.skipped)
      skipped += n;
    for (auto &[k, n] : plan.stats.dropped)
      dropped += n;
    int64_t evalLongest = 0;
    for (const trlc::data::Row &row : d.eval)
      evalLongest = std::max<int64_t>(evalLongest, static_cast<int64_t>(row.ids.size()));
    d.index = {{"hash", hash}, {"settings", settings}, {"sources", absolute(hashed)},
               {"eval_max_length", evalLongest},
               {"format", plan.stats.format}, {"train_rows", d.rows},
               {"eval_rows", d.eval.size()}, {"tokens", tokens},
               {"max_length", longest}, {"length_histogram", hist},
               {"rows_read", plan.stats.rowsRead}, {"bad_rows_skipped", skipped},
               {"examples_dropped", dropped}, {"examples_truncated", plan.stats.truncated},
               {"packing", train.packing}, {"padding_free", train.paddingFree}};
    if (d.rows == 0) {
      std::string why;
      for (auto &[k, n] : plan.stats.dropped)
        why += (why.empty() ? "" : ", ") + k + ": " + std::to_string(n);
      for (auto &[k, n] : plan.stats.skipped)
        why += (why.empty() ? "" : ", ") + k + " (skipped): " + std::to_string(n);
      return trlc::Error{train.where + ": error: no training example is left after the data "
                         "plan: " + std::to_string(plan.stats.rowsRead) + " rows read, none kept (" +
                         why + "); check [data] max_length, truncation_mode and "
                         "completion_only_loss (trlc data --stats shows the plan)"};
    }
    d.summary = "data: " + std::to_string(plan.stats.rowsRead) + " rows read (" +
                plan.stats.format + "), " + std::to_string(d.rows) + " training rows, " +
                std::to_string(tokens) + " tokens, longest " + std::to_string(longest) +
                (skipped ? ", " + std::to_string(skipped) + " bad rows skipped" : "") +
                (dropped ? ", " + std::to_string(dropped) + " examples dropped" : "") + "\n";
  } catch (const trlc::data::InputError &e) {
    return trlc::Error{e.what()};
  }
  return d;
}

/// Optimizer steps of the run, as the Hugging Face Trainer counts them.
struct Schedule {
  int64_t rows = 0;          // training examples
  int64_t totalSteps = 0;    // optimizer steps
  int64_t warmupSteps = 0;
};

trlc::Expected<Schedule> trainingSchedule(const trlc::Recipe &r, int64_t rows, int world) {
  Schedule s;
  s.rows = rows;
  if (s.rows == 0)
    return trlc::Error{r.data.trainWhere +
                       ": error: no training example is left after the data plan "
                       "(see trlc data --stats)"};
  // Data parallel: each optimizer step takes world x batch rows.
  int64_t global = r.train.perDeviceTrainBatchSize * world;
  int64_t batches = (s.rows + global - 1) / global;
  int64_t perEpoch =
      std::max<int64_t>(batches / r.train.gradientAccumulationSteps, 1);
  s.totalSteps = r.train.maxSteps > 0
                     ? r.train.maxSteps
                     : static_cast<int64_t>(
                           std::ceil(r.train.numTrainEpochs * perEpoch));
  s.warmupSteps = r.train.warmupSteps > 0
                      ? r.train.warmupSteps
                      : static_cast<int64_t>(
                            std::ceil(r.train.warmupRatio * s.totalSteps));
  return s;
}

mlir::trl::PipelineOptions pipelineOptions(const trlc::Recipe &r,
                                           const Schedule &s) {
  mlir::trl::PipelineOptions o;
  o.maxGradNorm = r.train.maxGradNorm;
  o.learningRate = r.train.learningRate;
  o.schedule = r.train.lrSchedulerType;
  o.warmupSteps = s.warmupSteps;
  o.totalSteps = s.totalSteps;
  o.beta1 = r.train.adamBeta1;
  o.beta2 = r.train.adamBeta2;
  o.epsilon = r.train.adamEpsilon;
  o.weightDecay = r.train.weightDecay;
  o.mixedPrecision = r.model.dtype == "bf16";
  return o;
}

/// What the runtime's training loop needs from the recipe (plan.json "run").
nlohmann::json runInfo(const trlc::Recipe &r, const Schedule &s, int world) {
  namespace fs = std::filesystem;
  auto absolute = [](const std::vector<std::string> &files) {
    std::vector<std::string> out;
    for (const std::string &f : files)
      out.push_back(fs::absolute(f).lexically_normal().string());
    return out;
  };
  std::string tokenizer;
  if (r.model.tokenizer)
    tokenizer = fs::absolute(*r.model.tokenizer).lexically_normal().string();
  else if (r.model.path)
    tokenizer = fs::absolute(*r.model.path).lexically_normal().string();
  return {
      {"method", trlc::methodName(r.method)},
      {"world_size", world},
      {"batch_size", r.train.perDeviceTrainBatchSize},
      {"seq_len", trlc::sequenceBound(r)},
      {"gradient_accumulation_steps", r.train.gradientAccumulationSteps},
      {"train_rows", s.rows},
      {"total_steps", s.totalSteps},
      {"num_train_epochs", r.train.numTrainEpochs},
      {"seed", r.train.seed},
      {"init_seed", r.model.initSeed},
      {"initializer_range", r.model.config.initializerRange},
      {"model_path", r.model.path
                         ? fs::absolute(*r.model.path).lexically_normal().string()
                         : std::string()},
      {"tokenizer", tokenizer},
      {"model_config", nlohmann::json::parse(
                           trlc::configToHfJson(r.model.config))},
      {"truncation_mode", r.data.truncationMode},
      {"completion_only_loss", r.data.completionOnlyLoss.value_or(true)},
      {"pad_token_id", r.model.config.padTokenId.value_or(
                           r.model.config.eosTokenId.value_or(0))},
      {"train", absolute(r.data.train)},
      {"eval", absolute(r.data.eval)},
      {"output_dir", fs::absolute(r.output.outputDir).lexically_normal().string()},
      {"logging_steps", r.output.loggingSteps},
      {"save_steps", r.output.saveSteps},
      {"save_total_limit", r.output.saveTotalLimit.value_or(-1)}};
}

/// A compiled step's planned device bytes (arena + the CPU kernels'
/// largest scratch) and what trl-offload-remat decided; bytes -1 when a
/// stage fails.
struct Planned {
  int64_t bytes = -1;
  int64_t recomputed = 0, offloaded = 0;
  double overheadSeconds = 0;
};

Planned planStep(const trlc::Recipe &r, const mlir::trl::PipelineOptions &options) {
  Planned out;
  mlir::MLIRContext context;
  mlir::ScopedDiagnosticHandler quiet(&context, [](mlir::Diagnostic &) { return mlir::success(); });
  auto module = trlc::buildTrainStep(context, r);
  mlir::PassManager pm(&context);
  mlir::trl::buildTrlPipeline(pm, options);
  if (mlir::failed(pm.run(*module)))
    return out;
  if (auto fn = module->lookupSymbol<mlir::func::FuncOp>("train_step")) {
    if (auto a = fn->getAttrOfType<mlir::IntegerAttr>("trl.recomputed_values"))
      out.recomputed = a.getInt();
    if (auto a = fn->getAttrOfType<mlir::IntegerAttr>("trl.offloaded_values"))
      out.offloaded = a.getInt();
    if (auto a = fn->getAttrOfType<mlir::FloatAttr>("trl.remat_overhead_s"))
      out.overheadSeconds = a.getValueAsDouble();
  }
  auto plan = trlc::lowerToPlan(*module);
  if (!plan)
    return out;
  out.bytes = plan->arenaBytes + trlc::planScratchBytes(*plan, {trlc::ScratchTarget::Cpu, 1});
  return out;
}

int64_t plannedDeviceBytes(const trlc::Recipe &r, const mlir::trl::PipelineOptions &options) {
  return planStep(r, options).bytes;
}

/// The planned device bytes with none, then each, of the memory passes the
/// recipe turns on (in pipeline order), for `trlc inspect --memory`.
nlohmann::json passEffects(const trlc::Recipe &r, mlir::trl::PipelineOptions options) {
  nlohmann::json out = nlohmann::json::array();
  bool packing = options.packing, fuse = options.fuseLoss, recompute = options.recompute,
       offload = options.offload, mixed = options.mixedPrecision;
  if (!packing && !fuse && !recompute && !offload && !mixed)
    return out;
  options.packing = options.fuseLoss = options.recompute = options.offload = false;
  options.mixedPrecision = false;
  options.forwardOnly = false;
  out.push_back({{"pass", "none"}, {"device_bytes", plannedDeviceBytes(r, options)}});
  if (packing) {
    options.packing = true;
    out.push_back({{"pass", "trl-packing-layout"}, {"device_bytes", plannedDeviceBytes(r, options)}});
  }
  if (fuse) {
    options.fuseLoss = true;
    out.push_back({{"pass", "trl-fuse-loss"}, {"device_bytes", plannedDeviceBytes(r, options)}});
  }
  if (mixed) {
    options.mixedPrecision = true;
    out.push_back({{"pass", "trl-mixed-precision"},
                   {"device_bytes", plannedDeviceBytes(r, options)}});
  }
  if (recompute) {
    options.recompute = true;
    out.push_back({{"pass", "trl-offload-remat (recompute)"},
                   {"device_bytes", plannedDeviceBytes(r, options)}});
  }
  if (offload) {
    options.offload = true;
    out.push_back({{"pass", "trl-offload-remat (offload)"},
                   {"device_bytes", plannedDeviceBytes(r, options)}});
  }
  return out;
}

/// `[memory] budget`: the cheapest schedule whose planned device bytes fit.
/// trl-offload-remat's cost model prices, on the CPU profile, recomputing
/// or offloading each saved activation per byte it frees; the search looks
/// for the smallest cost bound whose schedule fits (bisection in log
/// space). Returns a message when nothing fits, naming the smallest budget
/// that would.
std::optional<std::string> fitBudget(const trlc::Recipe &r, mlir::trl::PipelineOptions &options,
                                     std::string &decision) {
  if (!r.memory.budgetBytes)
    return std::nullopt;
  int64_t budget = *r.memory.budgetBytes;
  mlir::trl::PipelineOptions o = options;
  o.forwardOnly = false;
  auto describe = [](const Planned &p) {
    char overhead[64];
    std::snprintf(overhead, sizeof overhead, "%.3g ms", 1e3 * p.overheadSeconds);
    return std::to_string(p.recomputed) + " activations recomputed, " +
           std::to_string(p.offloaded) + " offloaded, about " + overhead +
           " added per step on the cpu profile; planned " + trlc::formatBytes(p.bytes);
  };
  Planned asIs = planStep(r, o);
  if (asIs.bytes >= 0 && asIs.bytes <= budget) {
    decision = "fits as the recipe asks (" + trlc::formatBytes(asIs.bytes) + ")";
    return std::nullopt;
  }
  o.rematMaxCost = 1e9;  // every decision the model can take
  Planned most = planStep(r, o);
  if (most.bytes < 0 || most.bytes > budget)
    return "the step needs at least " + trlc::formatBytes(most.bytes) + " (" +
           std::to_string(most.bytes) + " bytes) of device memory even with every saved "
           "activation recomputed or offloaded; raise [memory] budget to at least that, or "
           "shrink per_device_train_batch_size or max_length";
  double lo = 1e-15, hi = 1e-3;  // s per byte; hi: effectively everything
  Planned best = most;
  for (int i = 0; i < 24; ++i) {
    double mid = std::sqrt(lo * hi);
    o.rematMaxCost = mid;
    Planned p = planStep(r, o);
    if (p.bytes >= 0 && p.bytes <= budget) {
      hi = mid;
      best = p;
    } else {
      lo = mid;
    }
  }
  options.rematMaxCost = hi;
  decision = describe(best);
  return std::nullopt;
}

int compile(const CompileOptions &o) {
  auto recipe = trlc::loadRecipe(o.recipe, o.overrides);
  if (!recipe) {
    std::cerr << recipe.error().message << "\n";
    return 1;
  }
  if (o.printConfig) {
    std::cout << recipe->resolvedToml;
    return 0;
  }
  // Settings the pipeline does not apply yet: said, not silently ignored.
  std::vector<std::string> pending;
  if (recipe->data.packing && recipe->method != trlc::Method::SFT)
    pending.push_back("[data] packing for " + std::string(trlc::methodName(recipe->method)));
  if (recipe->data.paddingFree && recipe->method != trlc::Method::SFT)
    pending.push_back("[data] padding_free for " + std::string(trlc::methodName(recipe->method)));
  if (recipe->memory.zeroStage == 1 || recipe->memory.zeroStage == 2) {
    std::cerr << recipe->file << ": error: [memory] zero_stage = " << recipe->memory.zeroStage
              << " is not implemented; use 3 (parameters, gradients and optimizer state "
                 "sharded) or 0 (replicated, gradients all-reduced)\n";
    return 1;
  }
  for (const std::string &p : pending)
    std::cerr << recipe->file << ": note: " << p
              << " is not applied by this version of trlc\n";
  if (auto err = trlc::checkInputFiles(*recipe)) {
    std::cerr << err->message << "\n";
    return 1;
  }
  std::string out = o.output.empty() ? recipe->stem + ".trlc" : o.output;
  auto data = prepareData(*recipe, out, true);
  if (!data) {
    std::cerr << data.error().message << "\n";
    return 1;
  }

  mlir::MLIRContext context;
  // Any MLIR diagnostic here is a compiler bug, not a recipe error: report it
  // as such instead of printing raw IR locations.
  std::string diagnostics;
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &d) {
    diagnostics += d.str() + "\n";
    return mlir::success();
  });
  // The data plan knows the longest row: an SFT step needs no longer
  // sequence bound than that (rounded up to a multiple of 8).
  trlc::Recipe built = *recipe;
  bool sft = recipe->method == trlc::Method::SFT;
  if (sft && recipe->data.paddingFree && !recipe->data.packing && recipe->data.maxLength) {
    // Padding-free: one row holds a whole batch, documents back to back.
    built.data.maxLength = *recipe->data.maxLength * recipe->train.perDeviceTrainBatchSize;
    built.train.perDeviceTrainBatchSize = 1;
  }
  if (sft && built.data.maxLength) {
    int64_t limit = *built.data.maxLength;
    int64_t longest = std::max(data->index.value("max_length", int64_t(0)),
                               data->index.value("eval_max_length", int64_t(0)));
    int64_t bound = std::min(limit, (longest + 7) / 8 * 8);
    if (longest > 0 && bound < limit) {
      built.data.maxLength = bound;
      built.data.seqBoundSource = "data plan: longest row " + std::to_string(longest) +
                                  " (bound " + std::to_string(limit) + ", from max_length)";
    }
  }
  auto module = trlc::buildTrainStep(context, built);
  // The data plan's length statistics, for the truncation and packing
  // passes: rows, tokens, the longest row and the power-of-two histogram.
  {
    mlir::Builder b(&context);
    const nlohmann::json &idx = data->index;
    llvm::SmallVector<mlir::NamedAttribute> hist;
    nlohmann::json histogram = idx.value("length_histogram", nlohmann::json::object());
    for (auto &[bucket, n] : histogram.items())
      hist.push_back(b.getNamedAttr("le_" + bucket, b.getI64IntegerAttr(n.get<int64_t>())));
    (*module)->setAttr(
        "trl.data",
        b.getDictionaryAttr({
            b.getNamedAttr("rows", b.getI64IntegerAttr(idx.value("train_rows", int64_t(0)))),
            b.getNamedAttr("tokens", b.getI64IntegerAttr(idx.value("tokens", int64_t(0)))),
            b.getNamedAttr("max_length", b.getI64IntegerAttr(idx.value("max_length", int64_t(0)))),
            b.getNamedAttr("length_histogram", b.getDictionaryAttr(hist)),
            b.getNamedAttr("hash", b.getStringAttr(idx.value("hash", std::string())))}));
  }
  auto internalError = [&](const char *stage) {
    std::cerr << "trlc: internal error while " << stage << " for "
              << o.recipe << " (please report it with the recipe):\n"
              << diagnostics;
    return 3;
  };
  if (mlir::failed(mlir::verify(*module)))
    return internalError("building the training step");

  auto schedule = trainingSchedule(built, data->rows, o.run.nproc);
  if (!schedule) {
    std::cerr << schedule.error().message << "\n";
    return 1;
  }
  mlir::PassManager pm(&context);
  auto options = pipelineOptions(*recipe, *schedule);
  options.forwardOnly = o.emit == "forward";
  options.packing = (recipe->data.packing || recipe->data.paddingFree) &&
                    recipe->method == trlc::Method::SFT;
  options.fuseLoss = recipe->memory.useLigerKernel;
  options.lossChunkSize = recipe->memory.lossChunkSize;
  options.offload = recipe->memory.activationOffloading;
  options.recompute = recipe->memory.gradientCheckpointing;
  options.zeroStage = recipe->memory.zeroStage;
  options.worldSize = o.run.nproc;
  std::string budgetDecision;
  if (auto err = fitBudget(built, options, budgetDecision)) {
    std::cerr << recipe->file << ": error: [memory] budget "
              << trlc::formatBytes(*recipe->memory.budgetBytes) << ": " << *err << "\n";
    return 1;
  }
  if (!budgetDecision.empty())
    std::cerr << recipe->file << ": note: [memory] budget "
              << trlc::formatBytes(*recipe->memory.budgetBytes) << ": " << budgetDecision << "\n";
  mlir::trl::buildTrlPipeline(pm, options);
  std::vector<std::string> known;
  for (mlir::Pass &p : pm.getPasses())
    if (std::find(known.begin(), known.end(), p.getArgument().str()) ==
        known.end())
      known.push_back(p.getArgument().str());
  for (const std::string &name : o.printIrAfter) {
    if (std::find(known.begin(), known.end(), name) != known.end())
      continue;
    std::string list;
    for (const std::string &k : known)
      list += (list.empty() ? "" : ", ") + k;
    std::string msg = "--print-ir-after=" + name +
                      ": no such pass in the pipeline (passes: " + list + ")";
    if (auto best = trlc::closestMatch(name, known))
      msg += "; did you mean '" + *best + "'?";
    return usageError(msg);
  }

  if (o.printIrAfterAll || !o.printIrAfter.empty()) {
    context.disableMultithreading();
    auto names = o.printIrAfter;
    bool all = o.printIrAfterAll;
    pm.enableIRPrinting(
        /*shouldPrintBeforePass=*/[](mlir::Pass *, mlir::Operation *) { return false; },
        /*shouldPrintAfterPass=*/
        [names, all](mlir::Pass *pass, mlir::Operation *) {
          return all || std::find(names.begin(), names.end(),
                                  pass->getArgument().str()) != names.end();
        },
        /*printModuleScope=*/true, /*printAfterOnlyOnChange=*/false);
  }
  if (mlir::failed(pm.run(*module)))
    return internalError("running the pass pipeline");

  if (o.emit == "mlir" || o.emit == "forward") {
    module->print(llvm::outs());
    llvm::outs() << "\n";
    return 0;
  }

  auto plan = trlc::lowerToPlan(*module);
  if (!plan) {
    std::cerr << "trlc: " << plan.error().message << " (please report it with "
              << "the recipe " << o.recipe << ")\n";
    return 3;
  }
  plan->run = runInfo(built, *schedule, o.run.nproc);
  plan->run["data"] = data->run;
  if (o.emit == "plan") {
    std::cout << trlc::artifact::planToJson(*plan).dump(1) << "\n";
    return 0;
  }
  trlc::MemorySummary summary = trlc::summarizeMemory(*module);
  if (auto err = trlc::writeArtifact(out, built, *module, summary, *plan)) {
    std::cerr << err->message << "\n";
    return 1;
  }
  {
    // Record what each memory pass changed (trlc inspect --memory).
    namespace fs = std::filesystem;
    fs::path mp = fs::path(out) / "memory_plan.json";
    nlohmann::json memoryPlan = nlohmann::json::object();
    if (fs::exists(mp))
      memoryPlan = nlohmann::json::parse(std::ifstream(mp), nullptr, false);
    if (memoryPlan.is_discarded() || !memoryPlan.is_object())
      memoryPlan = nlohmann::json::object();
    memoryPlan["passes"] = passEffects(built, options);
    std::ofstream(mp) << memoryPlan.dump(2) << "\n";
  }
  if (auto err = data->write(out)) {
    std::cerr << err->message << "\n";
    return 1;
  }
  std::cout << data->summary;
  std::cout << "compiled " << o.recipe << " (" << trlc::methodName(recipe->method)
            << ", " << trlc::familyName(recipe->model.config.family) << ") -> "
            << out << "\n"
            << trlc::formatMemorySummary(summary);
  return 0;
}

/// `trlc data`: the recipe's training rows after tokenization, truncation
/// and packing, one JSON object per line, and/or statistics.
int dataCommand(int argc, char **argv) {
  std::string recipePath, emit;
  std::vector<std::string> overrides;
  bool stats = false;
  int64_t limit = -1;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string &flag) -> std::optional<std::string> {
      if (arg.rfind(flag + "=", 0) == 0)
        return arg.substr(flag.size() + 1);
      if (arg == flag && i + 1 < argc)
        return std::string(argv[++i]);
      return std::nullopt;
    };
    if (auto v = value("--emit")) {
      if (*v != "jsonl")
        return usageError("unknown --emit value '" + *v + "' for data; expected --emit=jsonl");
      emit = *v;
    } else if (auto v = value("--limit")) {
      char *end = nullptr;
      limit = std::strtoll(v->c_str(), &end, 10);
      if (v->empty() || *end || limit < 0)
        return usageError("--limit needs a non-negative integer, got '" + *v + "'");
    } else if (auto v = value("--set")) {
      overrides.push_back(*v);
    } else if (arg == "--stats") {
      stats = true;
    } else if (!arg.empty() && arg[0] == '-') {
      std::string msg = "unknown option '" + arg + "'";
      if (auto best = trlc::closestMatch(arg.substr(0, arg.find('=')),
                                         {"--emit", "--stats", "--limit", "--set"}))
        msg += "; did you mean '" + *best + "'?";
      return usageError(msg);
    } else if (recipePath.empty()) {
      recipePath = arg;
    } else {
      return usageError("more than one recipe given ('" + recipePath + "' and '" + arg + "')");
    }
  }
  if (recipePath.empty())
    return usageError("data needs a recipe: trlc data RECIPE.toml");
  if (emit.empty() && !stats)
    emit = "jsonl";
  auto recipe = trlc::loadRecipe(recipePath, overrides);
  if (!recipe) {
    std::cerr << recipe.error().message << "\n";
    return 1;
  }
  if (auto err = trlc::checkInputFiles(*recipe)) {
    std::cerr << err->message << "\n";
    return 1;
  }
  const trlc::Recipe &r = *recipe;
  trlc::data::DataConfig config = dataConfig(r, false);
  trlc::data::DataPlan plan;
  try {
    plan = trlc::data::runDataPlan(config);
  } catch (const trlc::data::InputError &e) {
    std::cerr << e.what() << "\n";
    return 1;
  }

  auto rowJson = [](const trlc::data::Row &row) {
    std::vector<int> mask(row.mask.begin(), row.mask.end());
    return nlohmann::json{{"input_ids", row.ids},
                          {"seq_lengths", row.seqLengths},
                          {"position_ids", row.positions()},
                          {"completion_mask", mask}};
  };
  auto seqRow = [](const trlc::data::Sequence &s) {
    trlc::data::Row row{s.ids, s.mask, {static_cast<int64_t>(s.ids.size())}};
    return row;
  };
  if (emit == "jsonl") {
    int64_t n = 0;
    auto more = [&] { return limit < 0 || n++ < limit; };
    if (r.method == trlc::Method::SFT) {
      for (const trlc::data::Row &row : plan.rows) {
        if (!more())
          break;
        nlohmann::json j = rowJson(row);
        if (config.paddingFree || config.packing) {
          std::vector<int64_t> cu{0};
          for (int64_t len : row.seqLengths)
            cu.push_back(cu.back() + len);
          if (row.seqLengths.empty())  // wrapped: one attention span
            cu.push_back(static_cast<int64_t>(row.ids.size()));
          j["cu_seqlens"] = cu;
        }
        std::cout << j.dump() << "\n";
      }
    } else {
      for (size_t k = 0; k < plan.examples.size() && more(); ++k) {
        const trlc::data::PairedExample &e = plan.examples[k];
        nlohmann::json j = rowJson(seqRow(e.chosen));
        j["example"] = k;
        if (r.method == trlc::Method::DPO) {
          j["kind"] = "chosen";
          std::cout << j.dump() << "\n";
          if (!more())
            break;
          j = rowJson(seqRow(e.rejected));
          j["example"] = k;
          j["kind"] = "rejected";
        } else if (r.method == trlc::Method::KTO) {
          j["label"] = e.label;
        }
        std::cout << j.dump() << "\n";
      }
    }
  }
  if (stats) {
    std::ostream &out = emit.empty() ? std::cout : std::cerr;
    printDataStats(out, r, config, plan);
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2)
    return usageError("missing command");
  std::string command = argv[1];
  if (command == "run" || command == "train")
    trlc::preferPassiveOpenMP(argv);
  if (command == "-h" || command == "--help" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (command == "compile" || command == "train") {
    CompileOptions options;
    options.train = command == "train";
    std::string err = parseCompileArgs(argc, argv, options);
    if (!err.empty())
      return usageError(err);
    if (options.train && (!options.emit.empty() || options.printConfig))
      return usageError("--emit and --print-config belong to `trlc compile`");
    int rc = compile(options);
    if (rc != 0 || !options.train)
      return rc;
    options.run.artifact = options.output.empty()
                               ? std::filesystem::path(options.recipe).stem().string() + ".trlc"
                               : options.output;
    return trlc::runArtifact(options.run);
  }
  if (command == "data")
    return dataCommand(argc, argv);
  if (command == "inspect") {
    std::string err;
    int rc = trlc::inspectCommand(argc, argv, err);
    return err.empty() ? rc : usageError(err);
  }
  if (command == "run") {
    std::string err;
    int rc = trlc::runCommand(argc, argv, err);
    return err.empty() ? rc : usageError(err);
  }
  std::string msg = "unknown command '" + command + "'";
  if (auto best = trlc::closestMatch(command, {"compile", "run", "train", "data", "inspect"}))
    msg += "; did you mean '" + *best + "'?";
  return usageError(msg);
}
