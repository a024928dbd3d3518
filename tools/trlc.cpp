//===- trlc.cpp - the trlc command line -----------------------------------===//
//
//   trlc compile RECIPE.toml [-o OUT.trlc] [--emit=mlir|forward|plan] ...
//   trlc train RECIPE.toml [compile and run options]
//   trlc run ARTIFACT.trlc [--device cpu|cuda] [--max-steps N] ...
//   trlc inspect ARTIFACT.trlc [--memory] [--json] [--timeline FILE.svg]
//   trlc generate ARTIFACT.trlc (--prompt TEXT | --prompts FILE.jsonl) ...
//   trlc data RECIPE.toml [--emit=jsonl] [--stats] [--limit N]
//
// Parses the command line into a request and hands it to a library: the
// compiler (compiler/Driver.h, compiler/DataStage.h) or the runtime
// (tools/RunCommands.h).
//
//===----------------------------------------------------------------------===//

#include "compiler/DataStage.h"
#include "compiler/Driver.h"
#include "frontend/Suggest.h"
#include "tools/GenerateCommand.h"
#include "tools/Options.h"
#include "tools/RunCommands.h"
#include "trlc/Launch.h"

#include <iostream>
#include <string>
#include <vector>

using trlc::cli::Options;
using trlc::compiler::CompileRequest;

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
    "  generate ARTIFACT.trlc completions of --prompt TEXT or --prompts FILE.jsonl\n"
    "  merge ADAPTER_DIR     a LoRA adapter merged into its base: -o OUT_DIR [--base DIR]\n"
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
    "  --dump-initial FILE       write the weights the first step starts from (safetensors)\n"
    "  --dump-gradients FILE     write the run's first step's accumulated gradients (safetensors)\n"
    "\n"
    "generate options:\n"
    "  --prompt TEXT             a prompt (repeatable); printed: its completion\n"
    "  --prompts FILE.jsonl      rows with a \"prompt\" (text or messages); printed: one\n"
    "                            JSON line per row\n"
    "  --model DIR               weights of a trained model (output_dir or a checkpoint)\n"
    "                            instead of the artifact's initial ones\n"
    "  --max-new-tokens N        at most N tokens per completion (default: up to the\n"
    "                            sequence bound)\n"
    "  --sample                  sample instead of greedy decoding; --temperature T,\n"
    "                            --top-k K, --top-p P, --min-p P, --repetition-penalty R\n"
    "                            (TRL's keys and defaults) imply it; --seed S\n"
    "  --eos-token-id N          stop a completion at N (default: the model's)\n"
    "  --timing                  print tokens, seconds and tokens/s of generation to stderr\n"
    "  --device, --threads       as for run\n";

int usageError(const std::string &msg) {
  std::cerr << "trlc: error: " << msg << "\n\n" << kUsage;
  return 2;
}

/// "unknown option"; with a close option name, the suggestion.
auto suggestOption = [](const std::string &arg, const std::vector<std::string> &names) {
  std::string msg = "unknown option '" + arg + "'";
  if (auto best = trlc::closestMatch(arg.substr(0, arg.find('=')), names))
    msg += "; did you mean '" + *best + "'?";
  return msg;
};

/// The recipe argument of compile, train and data.
Options::Setter recipeArgument(std::string &recipe) {
  return [&recipe](const std::string &arg) {
    if (!recipe.empty())
      return "more than one recipe given ('" + recipe + "' and '" + arg + "')";
    recipe = arg;
    return std::string();
  };
}

/// compile's options (train takes them and run's).
Options compileOptions(CompileRequest &c, bool &printConfig) {
  Options o;
  o.value("-o",
          [&c](const std::string &v) {
            c.output = v;
            return std::string();
          })
      .value("--emit",
             [&c](const std::string &v) {
               if (v == "mlir")
                 c.emit = CompileRequest::Emit::Mlir;
               else if (v == "forward")
                 c.emit = CompileRequest::Emit::Forward;
               else if (v == "plan")
                 c.emit = CompileRequest::Emit::Plan;
               else
                 return "unknown --emit value '" + v +
                        "'; expected --emit=mlir, --emit=forward or --emit=plan";
               return std::string();
             })
      .flag("--print-ir-after-all", [&c] { c.printIrAfterAll = true; })
      .value("--print-ir-after",
             [&c](const std::string &v) {
               c.printIrAfter.push_back(v);
               return std::string();
             })
      .value("--set",
             [&c](const std::string &v) {
               c.overrides.push_back(v);
               return std::string();
             })
      .flag("--print-config", [&printConfig] { printConfig = true; });
  return o;
}

int compileCommand(int argc, char **argv) {
  CompileRequest c;
  bool printConfig = false;
  Options o = compileOptions(c, printConfig);
  o.value("--nproc",
          [&c](const std::string &v) {
            int64_t n = 0;
            std::string err = trlc::cli::positiveInteger("--nproc", v, 256, "processes", n);
            c.worldSize = static_cast<int>(n);
            return err;
          })
      .positional(recipeArgument(c.recipe))
      .unknown(suggestOption);
  if (std::string err = o.parse(argc, argv, 2); !err.empty())
    return usageError(err);
  if (c.recipe.empty())
    return usageError("compile needs a recipe: trlc compile RECIPE.toml");
  if (printConfig)
    c.emit = CompileRequest::Emit::Config;
  trlc::compiler::CompileResult r = trlc::compiler::compile(c, std::cout, std::cerr);
  return r.exitCode == 2 ? usageError(r.usageError) : r.exitCode;
}

int trainCommand(int argc, char **argv) {
  CompileRequest c;
  trlc::RunOptions run;
  bool printConfig = false;
  Options o = compileOptions(c, printConfig);
  o.add(trlc::cli::runOptions(run)).positional(recipeArgument(c.recipe)).unknown(suggestOption);
  if (std::string err = o.parse(argc, argv, 2); !err.empty())
    return usageError(err);
  if (c.recipe.empty())
    return usageError("train needs a recipe: trlc train RECIPE.toml");
  if (c.emit != CompileRequest::Emit::Artifact || printConfig)
    return usageError("--emit and --print-config belong to `trlc compile`");
  c.worldSize = run.nproc;
  trlc::compiler::CompileResult r = trlc::compiler::compile(c, std::cout, std::cerr);
  if (r.exitCode != 0)
    return r.exitCode == 2 ? usageError(r.usageError) : r.exitCode;
  run.artifact = r.artifact;
  return trlc::runArtifact(run);
}

int dataCommand(int argc, char **argv) {
  trlc::compiler::DataRequest d;
  Options o;
  o.value("--emit",
          [&d](const std::string &v) {
            if (v != "jsonl")
              return "unknown --emit value '" + v + "' for data; expected --emit=jsonl";
            d.jsonl = true;
            return std::string();
          })
      .flag("--stats", [&d] { d.stats = true; })
      .value("--limit",
             [&d](const std::string &v) {
               char *end = nullptr;
               d.limit = std::strtoll(v.c_str(), &end, 10);
               if (v.empty() || *end || d.limit < 0)
                 return "--limit needs a non-negative integer, got '" + v + "'";
               return std::string();
             })
      .value("--set",
             [&d](const std::string &v) {
               d.overrides.push_back(v);
               return std::string();
             })
      .positional(recipeArgument(d.recipe))
      .unknown(suggestOption);
  if (std::string err = o.parse(argc, argv, 2); !err.empty())
    return usageError(err);
  if (d.recipe.empty())
    return usageError("data needs a recipe: trlc data RECIPE.toml");
  if (!d.jsonl && !d.stats)
    d.jsonl = true;
  return trlc::compiler::dataCommand(d, std::cout, std::cerr);
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
  if (command == "compile")
    return compileCommand(argc, argv);
  if (command == "train")
    return trainCommand(argc, argv);
  if (command == "data")
    return dataCommand(argc, argv);
  std::string usage;
  if (command == "generate") {
    int rc = trlc::cli::generateCommand(argc, argv, usage);
    return usage.empty() ? rc : usageError(usage);
  }
  if (command == "merge") {
    int rc = trlc::cli::mergeCommand(argc, argv, usage);
    return usage.empty() ? rc : usageError(usage);
  }
  if (command == "inspect" || command == "run") {
    int rc = command == "run" ? trlc::cli::runCommand(argc, argv, usage)
                              : trlc::cli::inspectCommand(argc, argv, usage);
    return usage.empty() ? rc : usageError(usage);
  }
  std::string msg = "unknown command '" + command + "'";
  if (auto best = trlc::closestMatch(command, {"compile", "run", "train", "data", "inspect", "generate", "merge"}))
    msg += "; did you mean '" + *best + "'?";
  return usageError(msg);
}
