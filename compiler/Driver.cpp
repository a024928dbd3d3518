//===- Driver.cpp - trlc compile, stage by stage --------------------------===//

#include "compiler/Driver.h"
#include "trlc/Files.h"

#include <iostream>
#include "codegen/ArtifactWriter.h"
#include "codegen/Lowering.h"
#include "codegen/MemorySummary.h"
#include "compiler/BudgetSearch.h"
#include "compiler/DataStage.h"
#include "compiler/Schedule.h"
#include "frontend/GraphBuilder.h"
#include "frontend/Suggest.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/raw_os_ostream.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <ostream>

namespace fs = std::filesystem;

namespace trlc::compiler {

namespace {

using Emit = CompileRequest::Emit;

class Session {
public:
  Session(const CompileRequest &request, std::ostream &out, std::ostream &err)
      : request(request), out(out), err(err) {}
  CompileResult run();

private:
  /// Settings the recipe asks for that this version refuses or does not
  /// apply: false after an error.
  bool checkRecipe();
  /// The data plan's length statistics on the module (`trl.data`), for
  /// the truncation and packing passes.
  void recordData(mlir::ModuleOp module);
  /// The pipeline's passes, for --print-ir-after; "" or the usage error.
  std::string checkPrintIrAfter(const mlir::trl::PipelineOptions &options);
  void enableIrPrinting(mlir::PassManager &pm);
  /// Writes what each memory pass changed into memory_plan.json.
  void recordPassEffects(const mlir::trl::PipelineOptions &options);

  CompileResult fail(int code, const std::string &message) {
    err << message << "\n";
    result.exitCode = code;
    return result;
  }
  CompileResult internalError(const char *stage) {
    return fail(3, "trlc: internal error while " + std::string(stage) + " for " +
                       request.recipe + " (please report it with the recipe):\n" + diagnostics);
  }

  const CompileRequest &request;
  std::ostream &out, &err;
  CompileResult result;
  std::optional<Recipe> recipe;
  PreparedData data;
  StepShape shape;
  mlir::MLIRContext context;
  std::string diagnostics;  // any MLIR diagnostic: a compiler bug, not a recipe error
};

CompileResult Session::run() {
  // 1. The recipe, as loaded: nothing edits it afterwards.
  auto loaded = loadRecipe(request.recipe, request.overrides);
  if (!loaded)
    return fail(1, loaded.error().message);
  recipe = std::move(*loaded);
  if (request.emit == Emit::Config) {
    out << recipe->resolvedToml;
    return result;
  }
  if (!checkRecipe())
    return result;
  result.artifact = request.output.empty() ? recipe->stem + ".trlc" : request.output;

  // 2. The data plan: token shards, and the facts later stages need.
  auto prepared = prepareData(*recipe, result.artifact);
  if (!prepared)
    return fail(1, prepared.error().message);
  data = std::move(*prepared);

  // 3. The step's shape and the run's schedule.
  shape = stepShape(*recipe, data.facts, request.worldSize);
  auto schedule = trainingSchedule(*recipe, shape, data.facts.rows, request.worldSize);
  if (!schedule)
    return fail(1, schedule.error().message);
  mlir::trl::PipelineOptions options = pipelineOptions(*recipe, *schedule, request.worldSize);
  options.forwardOnly = request.emit == Emit::Forward;

  // 4. The module: the model and the method's loss.
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &d) {
    diagnostics += d.str() + "\n";
    return mlir::success();
  });
  mlir::OwningOpRef<mlir::ModuleOp> module = buildTrainStep(context, *recipe, shape);
  recordData(*module);
  if (mlir::failed(mlir::verify(*module)))
    return internalError("building the training step");
  if (std::string usage = checkPrintIrAfter(options); !usage.empty()) {
    result.exitCode = 2;
    result.usageError = usage;
    return result;
  }

  // 5. The pipeline up to the activation schedule: layout, fused loss,
  // autodiff, precision.
  mlir::PassManager front(&context);
  mlir::trl::buildTrlPipeline(front, options, mlir::trl::PipelinePart::UntilRemat);
  enableIrPrinting(front);
  if (mlir::failed(front.run(*module)))
    return internalError("running the pass pipeline");

  // 6. [memory] budget: the cheapest activation schedule that fits.
  if (recipe->memory.budgetBytes && !options.forwardOnly) {
    std::string decision;
    std::string budget = formatBytes(*recipe->memory.budgetBytes);
    if (auto e = fitBudget(StepPricer(*module, options), *recipe->memory.budgetBytes, options,
                           decision))
      return fail(1, recipe->file + ": error: [memory] budget " + budget + ": " + *e);
    err << recipe->file << ": note: [memory] budget " << budget << ": " << decision << "\n";
  }

  // 7. The rest of the pipeline: schedule, optimizer, sharding, memory plan.
  mlir::PassManager back(&context);
  mlir::trl::buildTrlPipeline(back, options, mlir::trl::PipelinePart::FromRemat);
  enableIrPrinting(back);
  if (mlir::failed(back.run(*module)))
    return internalError("running the pass pipeline");
  if (request.emit == Emit::Mlir || request.emit == Emit::Forward) {
    llvm::raw_os_ostream os(out);
    module->print(os);
    os << "\n";
    return result;
  }

  // 8. Lowering: the executable plan, and what the training loop needs.
  auto plan = lowerToPlan(*module);
  if (!plan)
    return fail(3, "trlc: " + plan.error().message + " (please report it with the recipe " +
                       request.recipe + ")");
  plan->run = runInfo(*recipe, *schedule);
  plan->run.data = data.shards;
  if (request.emit == Emit::Plan) {
    out << plan->toJson().dump(1) << "\n";
    return result;
  }

  // 9. The artifact: manifest, recipe, IR, memory accounting, plan, shards.
  MemorySummary summary = summarizeMemory(*module);
  summary.workspaceBytes = planScratchBytes(*plan, {ScratchTarget::Cpu, 1});
  artifact::Manifest manifest;
  manifest.recipe = recipe->file;
  manifest.method = methodName(recipe->method);
  manifest.modelType = familyName(recipe->model.config.family);
  manifest.worldSize = request.worldSize;
  manifest.batchSize = shape.batch;
  manifest.sequenceBound = shape.sequenceBound;
  if (auto e = claimArtifactDir(result.artifact))
    return fail(1, e->message);
  if (auto e = data.write(result.artifact))
    return fail(1, e->message);
  if (auto e = writeArtifact(result.artifact, manifest, recipe->resolvedToml, *module, summary,
                             *plan))
    return fail(1, e->message);
  recordPassEffects(options);
  out << data.summary;
  out << "compiled " << request.recipe << " (" << methodName(recipe->method) << ", "
      << familyName(recipe->model.config.family) << ") -> " << result.artifact << "\n"
      << formatMemorySummary(summary);
  return result;
}

bool Session::checkRecipe() {
  const Recipe &r = *recipe;
  if (r.memory.zeroStage == 1 || r.memory.zeroStage == 2) {
    fail(1, r.file + ": error: [memory] zero_stage = " + std::to_string(r.memory.zeroStage) +
                " is not implemented; use 3 (parameters, gradients and optimizer state "
                "sharded) or 0 (replicated, gradients all-reduced)");
    return false;
  }
  for (const std::string &w : r.warnings)
    err << w << "\n";
  if (auto e = checkInputFiles(r)) {
    fail(1, e->message);
    return false;
  }
  return true;
}

void Session::recordData(mlir::ModuleOp module) {
  mlir::Builder b(&context);
  llvm::SmallVector<mlir::NamedAttribute> hist;
  for (auto [bucket, n] : data.facts.lengthHistogram)
    hist.push_back(b.getNamedAttr("le_" + std::to_string(bucket), b.getI64IntegerAttr(n)));
  module->setAttr(
      "trl.data",
      b.getDictionaryAttr({
          b.getNamedAttr("rows", b.getI64IntegerAttr(data.facts.rows)),
          b.getNamedAttr("tokens", b.getI64IntegerAttr(data.facts.tokens)),
          b.getNamedAttr("max_length", b.getI64IntegerAttr(data.facts.longest)),
          b.getNamedAttr("length_histogram", b.getDictionaryAttr(hist)),
          b.getNamedAttr("hash", b.getStringAttr(data.facts.hash))}));
}

std::string Session::checkPrintIrAfter(const mlir::trl::PipelineOptions &options) {
  if (request.printIrAfter.empty())
    return "";
  // The passes the compile may run: with a budget, trl-offload-remat may
  // join them.
  mlir::trl::PipelineOptions o = options;
  if (recipe->memory.budgetBytes)
    o.rematMaxCost = std::max(o.rematMaxCost, 0.0);
  mlir::PassManager pm(&context);
  mlir::trl::buildTrlPipeline(pm, o);
  std::vector<std::string> known;
  for (mlir::Pass &p : pm.getPasses())
    if (std::find(known.begin(), known.end(), p.getArgument().str()) == known.end())
      known.push_back(p.getArgument().str());
  for (const std::string &name : request.printIrAfter) {
    if (std::find(known.begin(), known.end(), name) != known.end())
      continue;
    std::string list;
    for (const std::string &k : known)
      list += (list.empty() ? "" : ", ") + k;
    std::string msg = "--print-ir-after=" + name + ": no such pass in the pipeline (passes: " +
                      list + ")";
    if (auto best = closestMatch(name, known))
      msg += "; did you mean '" + *best + "'?";
    return msg;
  }
  return "";
}

void Session::enableIrPrinting(mlir::PassManager &pm) {
  if (!request.printIrAfterAll && request.printIrAfter.empty())
    return;
  context.disableMultithreading();
  auto names = request.printIrAfter;
  bool all = request.printIrAfterAll;
  pm.enableIRPrinting(
      /*shouldPrintBeforePass=*/[](mlir::Pass *, mlir::Operation *) { return false; },
      /*shouldPrintAfterPass=*/
      [names, all](mlir::Pass *pass, mlir::Operation *) {
        return all ||
               std::find(names.begin(), names.end(), pass->getArgument().str()) != names.end();
      },
      /*printModuleScope=*/true, /*printAfterOnlyOnChange=*/false);
}

void Session::recordPassEffects(const mlir::trl::PipelineOptions &options) {
  fs::path file = fs::path(result.artifact) / artifact::kMemoryPlanFile;
  nlohmann::json memoryPlan = nlohmann::json::object();
  if (pathExists(file))
    memoryPlan = nlohmann::json::parse(std::ifstream(file), nullptr, false);
  if (memoryPlan.is_discarded() || !memoryPlan.is_object())
    memoryPlan = nlohmann::json::object();
  memoryPlan["passes"] = passEffects(*recipe, shape, options);
  if (auto e = writeFileAtomic(file.string(), memoryPlan.dump(2) + "\n"))
    std::cerr << *e << "\n";
}

} // namespace

CompileResult compile(const CompileRequest &request, std::ostream &out, std::ostream &err) {
  return Session(request, out, err).run();
}

} // namespace trlc::compiler
