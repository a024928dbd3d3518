//===- BudgetSearch.h - pricing schedules of one step -----------*- C++ -*-===//
//
// `[memory] budget` asks for the cheapest schedule whose planned device
// bytes fit. trl-offload-remat's cost model prices, on the CPU profile,
// recomputing or offloading each saved activation per byte it frees; the
// search bisects (in log space) the smallest cost bound whose schedule
// fits, with and without whole-layer recomputation (layer checkpointing,
// whose checkpoints the bound may then offload), and keeps the fitting
// schedule that adds the least time per step on the CUDA profile. Candidates differ only from trl-offload-remat on, so each is the
// second half of the pipeline run on a copy of one module that has been
// through the first half (StepPricer), not a fresh build.
//
// `trlc inspect --memory` also shows what each memory pass the recipe
// turns on changed (passEffects): those differ in the first half, so each
// is priced from a fresh build.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_COMPILER_BUDGETSEARCH_H
#define TRLC_COMPILER_BUDGETSEARCH_H

#include "frontend/Recipe.h"
#include "frontend/StepShape.h"
#include "passes/Pipeline.h"

#include "mlir/IR/BuiltinOps.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace trlc::compiler {

/// A planned step: its device bytes (arena + the CPU kernels' largest
/// scratch, trlc/Kernels.h) and what trl-offload-remat decided; bytes -1
/// when a stage fails.
struct Planned {
  int64_t bytes = -1;
  int64_t recomputed = 0, offloaded = 0, layers = 0;
  double overheadSeconds = 0;  // trl-offload-remat's estimate, CPU profile
  double recomputedFlops = 0, offloadedBytes = 0;
  bool recomputeLayers = false;
  double rematMaxCost = -1;
  /// The added time per step on the CUDA profile (trl-offload-remat's:
  /// products at 7.9e14 FLOP/s, copies at 5e10 B/s each way, 10 us each).
  double cudaSeconds() const {
    return recomputedFlops / 7.9e14 + 2 * (offloadedBytes / 5e10 + offloaded * 1e-5) +
           recomputed * 1e-5;
  }
};

/// Prices candidate schedules of a module that has been through
/// PipelinePart::UntilRemat with `options`.
class StepPricer {
public:
  StepPricer(mlir::ModuleOp front, const mlir::trl::PipelineOptions &options)
      : front(front), options(options) {}
  /// The step planned with trl-offload-remat's cost bound `rematMaxCost`
  /// (-1: the recipe's own settings only), recomputing whole layers when
  /// `layers` (or the recipe does).
  Planned price(double rematMaxCost, bool layers = false) const;

private:
  mutable mlir::ModuleOp front;  // cloned, never changed
  mlir::trl::PipelineOptions options;
};

/// The budget search: sets options.rematMaxCost (and recomputeLayers) to
/// the cheapest schedule that fits `budget` and `decision` to what it chose; returns the message when
/// nothing fits, naming the smallest budget that would.
std::optional<std::string> fitBudget(const StepPricer &pricer, int64_t budget,
                                     mlir::trl::PipelineOptions &options,
                                     std::string &decision);

/// The planned device bytes with none, then each, of the memory passes
/// `options` turns on, in pipeline order (memory_plan.json "passes").
nlohmann::json passEffects(const Recipe &recipe, const StepShape &shape,
                           mlir::trl::PipelineOptions options);

} // namespace trlc::compiler

#endif // TRLC_COMPILER_BUDGETSEARCH_H
