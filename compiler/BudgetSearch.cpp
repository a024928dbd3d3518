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
    if (auto a = fn->getAttrOfType<mlir::IntegerAttr>("trl.recomputed_layers"))
      out.layers = a.getInt();
    if (auto a = fn->getAttrOfType<mlir::FloatAttr>("trl.recomputed_flops"))
      out.recomputedFlops = a.getValueAsDouble();
    if (auto a = fn->getAttrOfType<mlir::FloatAttr>("trl.offloaded_bytes"))
      out.offloadedBytes = a.getValueAsDouble();
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

Planned StepPricer::price(double rematMaxCost, bool layers) const {
  mlir::OwningOpRef<mlir::ModuleOp> copy = front.clone();
  mlir::trl::PipelineOptions o = options;
  o.forwardOnly = false;
  o.rematMaxCost = rematMaxCost;
  o.recomputeLayers = o.recomputeLayers || layers;
  Planned p = plan(*copy, o, mlir::trl::PipelinePart::FromRemat);
  p.recomputeLayers = o.recomputeLayers;
  p.rematMaxCost = rematMaxCost;
  return p;
}

std::optional<std::string> fitBudget(const StepPricer &pricer, int64_t budget,
                                     mlir::trl::PipelineOptions &options,
                                     std::string &decision) {
  auto ms = [](double s) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3g ms", 1e3 * s);
    return std::string(text);
  };
  auto describe = [&](const Planned &p) {
    std::string out;
    if (p.layers > 0) {
      char flops[48];
      double f = p.recomputedFlops;
      std::snprintf(flops, sizeof flops, "%.3g %s", f >= 1e12 ? f / 1e12 : f >= 1e9 ? f / 1e9 : f / 1e6,
                    f >= 1e12 ? "TFLOP" : f >= 1e9 ? "GFLOP" : "MFLOP");
      out += std::to_string(p.layers) + " layers recomputed whole in the backward (layer "
             "checkpointing, " + flops + " per step), ";
    }
    out += std::to_string(p.recomputed) + " activations recomputed, " +
           std::to_string(p.offloaded) + " offloaded";
    if (p.offloaded > 0)
      out += " (" + formatBytes(static_cast<int64_t>(p.offloadedBytes)) + " each way)";
    return out + "; about " + ms(p.cudaSeconds()) + " added per step on the cuda profile, " +
           ms(p.overheadSeconds) + " on the cpu profile; planned " + formatBytes(p.bytes);
  };
  auto fits = [&](const Planned &p) { return p.bytes >= 0 && p.bytes <= budget; };
  Planned asIs = pricer.price(options.rematMaxCost);
  if (fits(asIs)) {
    decision = "fits as the recipe asks (" + formatBytes(asIs.bytes) + ")";
    return std::nullopt;
  }
  // The cheapest fitting bound, with or without layer checkpointing.
  int64_t smallest = -1;
  auto search = [&](bool layers) -> std::optional<Planned> {
    Planned start = pricer.price(options.rematMaxCost, layers);
    if (fits(start))
      return start;
    Planned most = pricer.price(1e9, layers);  // every decision the model can take
    if (most.bytes >= 0 && (smallest < 0 || most.bytes < smallest))
      smallest = most.bytes;
    if (!fits(most))
      return std::nullopt;
    double lo = 1e-15, hi = 1e-3;  // s per byte; hi: effectively everything
    Planned best = most;
    for (int i = 0; i < 24; ++i) {
      double mid = std::sqrt(lo * hi);
      Planned p = pricer.price(mid, layers);
      if (fits(p)) {
        hi = mid;
        best = p;
      } else {
        lo = mid;
      }
    }
    return best;
  };
  std::optional<Planned> best = search(options.recomputeLayers);
  if (!options.recomputeLayers)
    if (std::optional<Planned> layered = search(true))
      if (!best || layered->cudaSeconds() < best->cudaSeconds())
        best = layered;
  if (!best)
    return "the step needs at least " + formatBytes(smallest) + " (" + std::to_string(smallest) +
           " bytes) of device memory even with every decoder layer recomputed and every saved "
           "activation recomputed or offloaded; raise [memory] budget to at least that, or "
           "shrink per_device_train_batch_size or max_length";
  options.rematMaxCost = best->rematMaxCost;
  options.recomputeLayers = best->recomputeLayers;
  decision = describe(*best);
  return std::nullopt;
}

nlohmann::json passEffects(const Recipe &r, const StepShape &shape,
                           mlir::trl::PipelineOptions options) {
  nlohmann::json out = nlohmann::json::array();
  bool packing = options.packing, fuse = options.fuseLoss, recompute = options.recompute,
       layers = options.recomputeLayers, offload = options.offload,
       mixed = options.mixedPrecision;
  if (!packing && !fuse && !recompute && !layers && !offload && !mixed)
    return out;
  options.packing = options.fuseLoss = options.recompute = options.offload = false;
  options.recomputeLayers = false;
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
  if (layers) {
    options.recomputeLayers = true;
    row("trl-offload-remat (layer checkpointing)");
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
