//===- BudgetSearch.cpp - pricing schedules of one step -------------------===//

#include "compiler/BudgetSearch.h"
#include "codegen/Lowering.h"
#include "frontend/GraphBuilder.h"
#include "trlc/Kernels.h"
#include "trlc/MemoryReport.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"

#include <cmath>
#include <cstdio>

namespace trlc::compiler {

namespace {

/// Runs `part` of the pipeline on `module` and plans it.
Planned plan(mlir::ModuleOp module, const mlir::trl::PipelineOptions &options,
             mlir::trl::PipelinePart part) {
  Planned out;
  mlir::ScopedDiagnosticHandler quiet(module.getContext(),
                                      [](mlir::Diagnostic &) { return mlir::success(); });
  mlir::PassManager pm(module.getContext());
  mlir::trl::buildTrlPipeline(pm, options, part);
  if (mlir::failed(pm.run(module)))
    return out;
  if (auto fn = module.lookupSymbol<mlir::func::FuncOp>("train_step")) {
    if (auto a = fn->getAttrOfType<mlir::IntegerAttr>("trl.recomputed_values"))
      out.recomputed = a.getInt();
    if (auto a = fn->getAttrOfType<mlir::IntegerAttr>("trl.offloaded_values"))
      out.offloaded = a.getInt();
    if (auto a = fn->getAttrOfType<mlir::FloatAttr>("trl.remat_overhead_s"))
      out.overheadSeconds = a.getValueAsDouble();
  }
  auto lowered = lowerToPlan(module);
  if (!lowered)
    return out;
  out.bytes = lowered->arenaBytes + planScratchBytes(*lowered, {ScratchTarget::Cpu, 1});
  return out;
}

/// A fresh build of the whole step with `options`.
Planned planFresh(const Recipe &r, const StepShape &shape,
                  const mlir::trl::PipelineOptions &options) {
  mlir::MLIRContext context;
  auto module = buildTrainStep(context, r, shape);
  return plan(*module, options, mlir::trl::PipelinePart::Whole);
}

} // namespace

Planned StepPricer::price(double rematMaxCost) const {
  mlir::OwningOpRef<mlir::ModuleOp> copy = front.clone();
  mlir::trl::PipelineOptions o = options;
  o.forwardOnly = false;
  o.rematMaxCost = rematMaxCost;
  return plan(*copy, o, mlir::trl::PipelinePart::FromRemat);
}

std::optional<std::string> fitBudget(const StepPricer &pricer, int64_t budget,
                                     mlir::trl::PipelineOptions &options,
                                     std::string &decision) {
  auto describe = [](const Planned &p) {
    char overhead[64];
    std::snprintf(overhead, sizeof overhead, "%.3g ms", 1e3 * p.overheadSeconds);
    return std::to_string(p.recomputed) + " activations recomputed, " +
           std::to_string(p.offloaded) + " offloaded, about " + overhead +
           " added per step on the cpu profile; planned " + formatBytes(p.bytes);
  };
  Planned asIs = pricer.price(options.rematMaxCost);
  if (asIs.bytes >= 0 && asIs.bytes <= budget) {
    decision = "fits as the recipe asks (" + formatBytes(asIs.bytes) + ")";
    return std::nullopt;
  }
  Planned most = pricer.price(1e9);  // every decision the model can take
  if (most.bytes < 0 || most.bytes > budget)
    return "the step needs at least " + formatBytes(most.bytes) + " (" +
           std::to_string(most.bytes) + " bytes) of device memory even with every saved "
           "activation recomputed or offloaded; raise [memory] budget to at least that, or "
           "shrink per_device_train_batch_size or max_length";
  double lo = 1e-15, hi = 1e-3;  // s per byte; hi: effectively everything
  Planned best = most;
  for (int i = 0; i < 24; ++i) {
    double mid = std::sqrt(lo * hi);
    Planned p = pricer.price(mid);
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

nlohmann::json passEffects(const Recipe &r, const StepShape &shape,
                           mlir::trl::PipelineOptions options) {
  nlohmann::json out = nlohmann::json::array();
  bool packing = options.packing, fuse = options.fuseLoss, recompute = options.recompute,
       offload = options.offload, mixed = options.mixedPrecision;
  if (!packing && !fuse && !recompute && !offload && !mixed)
    return out;
  options.packing = options.fuseLoss = options.recompute = options.offload = false;
  options.mixedPrecision = false;
  options.forwardOnly = false;
  auto row = [&](const char *pass) {
    out.push_back({{"pass", pass}, {"device_bytes", planFresh(r, shape, options).bytes}});
  };
  row("none");
  if (packing) {
    options.packing = true;
    row("trl-packing-layout");
  }
  if (fuse) {
    options.fuseLoss = true;
    row("trl-fuse-loss");
  }
  if (mixed) {
    options.mixedPrecision = true;
    row("trl-mixed-precision");
  }
  if (recompute) {
    options.recompute = true;
    row("trl-offload-remat (recompute)");
  }
  if (offload) {
    options.offload = true;
    row("trl-offload-remat (offload)");
  }
  return out;
}

} // namespace trlc::compiler
