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
#include "data/Packing.h"
#include "trlc/Data.h"
#include "trlc/Trainer.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
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
    "\n"
    "compile options:\n"
    "  -o OUT.trlc               artifact directory (default: RECIPE_NAME.trlc)\n"
    "  --emit=mlir               print the trl module after the pipeline and stop\n"
    "  --emit=forward            print the forward pass and loss (before autodiff) and stop\n"
    "  --emit=plan               print the executable plan (plan.json) and stop\n"
    "  --print-ir-after-all      print the IR after every pass (to stderr)\n"
    "  --print-ir-after=PASS     print the IR after the named pass (to stderr)\n"
    "  --set section.key=value   override a recipe key (repeatable)\n"
    "  --print-config            print the fully resolved recipe and stop\n"
    "\n"
    "run options (train takes them too):\n"
    "  --device cpu              where to run (the CUDA backend is not built yet)\n"
    "  --nproc 1                 processes (multi-process runs are not supported yet)\n"
    "  --max-steps N             stop after N optimizer steps (the LR schedule keeps\n"
    "                            the recipe's length)\n"
    "  --threads N               CPU threads (default: all)\n"
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
    } else if (o.train && trlc::parseRunOption(i, argc, argv, o.run, err)) {
      if (!err.empty())
        return err;
    } else if (!arg.empty() && arg[0] == '-') {
      std::vector<std::string> flags = {"-o", "--emit", "--print-ir-after-all",
                                        "--print-ir-after", "--set",
                                        "--print-config"};
      if (o.train)
        flags.insert(flags.end(), {"--device", "--max-steps", "--nproc",
                                   "--threads", "--quiet", "--dump-initial",
                                   "--dump-gradients"});
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

/// Optimizer steps of the run, as the Hugging Face Trainer counts them.
struct Schedule {
  int64_t rows = 0;          // training examples
  int64_t totalSteps = 0;    // optimizer steps
  int64_t warmupSteps = 0;
};

trlc::Expected<Schedule> trainingSchedule(const trlc::Recipe &r) {
  Schedule s;
  for (const std::string &pattern : r.data.train) {
    glob_t g{};
    if (::glob(pattern.c_str(), 0, nullptr, &g) != 0) {
      globfree(&g);
      return trlc::Error{r.data.trainWhere + ": error: [data] train '" +
                         pattern + "' matches no file"};
    }
    for (size_t i = 0; i < g.gl_pathc; ++i) {
      std::ifstream in(g.gl_pathv[i]);
      std::string line;
      while (std::getline(in, line))
        if (line.find_first_not_of(" \t\r") != std::string::npos)
          ++s.rows;
    }
    globfree(&g);
  }
  if (s.rows == 0)
    return trlc::Error{r.data.trainWhere +
                       ": error: the [data] train files hold no examples"};
  int64_t batches = (s.rows + r.train.perDeviceTrainBatchSize - 1) /
                    r.train.perDeviceTrainBatchSize;
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
  return o;
}

/// What the runtime's training loop needs from the recipe (plan.json "run").
nlohmann::json runInfo(const trlc::Recipe &r, const Schedule &s) {
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
  if (recipe->data.packing)
    pending.push_back("[data] packing (rows stay one example each, padded)");
  if (recipe->data.paddingFree)
    pending.push_back("[data] padding_free");
  if (recipe->memory.useLigerKernel)
    pending.push_back("[memory] use_liger_kernel (the loss is not fused)");
  if (recipe->memory.gradientCheckpointing)
    pending.push_back("[memory] gradient_checkpointing");
  if (recipe->memory.activationOffloading)
    pending.push_back("[memory] activation_offloading");
  if (recipe->memory.zeroStage > 0)
    pending.push_back("[memory] zero_stage");
  for (const std::string &p : pending)
    std::cerr << recipe->file << ": note: " << p
              << " is not applied by this version of trlc\n";
  if (auto err = trlc::checkInputFiles(*recipe)) {
    std::cerr << err->message << "\n";
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
  auto module = trlc::buildTrainStep(context, *recipe);
  auto internalError = [&](const char *stage) {
    std::cerr << "trlc: internal error while " << stage << " for "
              << o.recipe << " (please report it with the recipe):\n"
              << diagnostics;
    return 3;
  };
  if (mlir::failed(mlir::verify(*module)))
    return internalError("building the training step");

  auto schedule = trainingSchedule(*recipe);
  if (!schedule) {
    std::cerr << schedule.error().message << "\n";
    return 1;
  }
  mlir::PassManager pm(&context);
  auto options = pipelineOptions(*recipe, *schedule);
  options.forwardOnly = o.emit == "forward";
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
  plan->run = runInfo(*recipe, *schedule);
  if (o.emit == "plan") {
    std::cout << trlc::artifact::planToJson(*plan).dump(1) << "\n";
    return 0;
  }
  trlc::MemorySummary cpu = trlc::summarizeMemory(*module, 4);
  trlc::MemorySummary cuda = trlc::summarizeMemory(*module, 2);
  std::string out = o.output.empty() ? recipe->stem + ".trlc" : o.output;
  if (auto err = trlc::writeArtifact(out, *recipe, *module, cpu, cuda, *plan)) {
    std::cerr << err->message << "\n";
    return 1;
  }
  std::cout << "compiled " << o.recipe << " (" << trlc::methodName(recipe->method)
            << ", " << trlc::familyName(recipe->model.config.family) << ") -> "
            << out << "\n"
            << trlc::formatMemorySummary(cpu, cuda);
  return 0;
}

/// `trlc data`: the recipe's training rows after truncation or packing.
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
  if (recipe->method != trlc::Method::SFT) {
    std::cerr << recipePath << ": error: trlc data handles SFT recipes until the "
              << "data pipeline builds preference and prompt batches\n";
    return 1;
  }
  const trlc::Recipe &r = *recipe;
  int64_t maxLength = *r.data.maxLength;
  trlc::Dataset read;
  try {
    read = trlc::readTokenized(r.data.train, std::numeric_limits<int64_t>::max(),
                               r.model.config.vocabSize);
  } catch (const trlc::DataError &e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  std::vector<trlc::data::Sequence> seqs;
  for (trlc::Example &e : read.rows) {
    if (r.data.completionOnlyLoss == false)
      std::fill(e.completion.begin(), e.completion.end(), 1);
    seqs.push_back({std::move(e.ids), std::move(e.completion)});
  }
  int64_t examples = static_cast<int64_t>(seqs.size());
  trlc::data::TruncationStats ts;
  std::vector<trlc::data::Row> rows;
  if (r.data.packing) {
    rows = trlc::data::pack(trlc::data::dropUntrainable(std::move(seqs), ts),
                            maxLength, r.data.packingStrategy);
  } else {
    auto mode = r.data.truncationMode == "keep_end"
                    ? trlc::data::TruncationMode::KeepEnd
                    : trlc::data::TruncationMode::KeepStart;
    rows = trlc::data::unpacked(trlc::data::truncate(std::move(seqs), maxLength, mode, ts));
  }
  if (emit == "jsonl") {
    int64_t n = 0;
    for (const trlc::data::Row &row : rows) {
      if (limit >= 0 && n++ >= limit)
        break;
      std::vector<int> mask(row.mask.begin(), row.mask.end());
      nlohmann::json j = {{"input_ids", row.ids},
                          {"seq_lengths", row.seqLengths},
                          {"position_ids", row.positions()},
                          {"completion_mask", mask}};
      std::cout << j.dump() << "\n";
    }
  }
  if (stats) {
    int64_t tokens = 0, kept = 0;
    std::map<int64_t, int64_t> histogram;  // power-of-two bucket -> documents
    for (const trlc::data::Row &row : rows) {
      tokens += static_cast<int64_t>(row.ids.size());
      std::vector<int64_t> docs = row.seqLengths;
      if (docs.empty())
        docs = {static_cast<int64_t>(row.ids.size())};
      for (int64_t len : docs) {
        int64_t bucket = 1;
        while (bucket < len)
          bucket *= 2;
        ++histogram[bucket];
        ++kept;
      }
    }
    auto pct = [](double x) {
      char buf[16];
      std::snprintf(buf, sizeof(buf), "%.1f%%", 100 * x);
      return std::string(buf);
    };
    int64_t docsKept = examples - ts.droppedEmpty - ts.droppedNoTarget;
    std::ostream &out = emit.empty() ? std::cout : std::cerr;
    out << "examples read: " << examples << "\n"
        << "dropped, empty: " << ts.droppedEmpty << "\n"
        << "dropped, no trainable token: " << ts.droppedNoTarget << "\n"
        << "truncated to max_length " << maxLength << ": " << ts.truncated << "\n"
        << "tokens: " << tokens << "\n"
        << "rows: " << rows.size()
        << (r.data.packing ? " (packed, " + r.data.packingStrategy + ")" : "") << "\n"
        << "padding before packing: "
        << pct(docsKept ? 1.0 - double(tokens) / double(docsKept * maxLength) : 0)
        << "\n"
        << "padding after packing: "
        << pct(rows.empty() ? 0 : 1.0 - double(tokens) / double(rows.size() * maxLength))
        << "\n"
        << "document lengths (up to):";
    for (auto [bucket, count] : histogram)
      out << " " << bucket << ":" << count;
    out << "\n";
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
  if (command == "run") {
    std::string err;
    int rc = trlc::runCommand(argc, argv, err);
    return err.empty() ? rc : usageError(err);
  }
  std::string msg = "unknown command '" + command + "'";
  if (auto best = trlc::closestMatch(command, {"compile", "run", "train", "data"}))
    msg += "; did you mean '" + *best + "'?";
  return usageError(msg);
}
