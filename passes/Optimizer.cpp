//===- Optimizer.cpp - trl-optimizer: accumulation, clipping, AdamW -------===//

#include "passes/OptimizerStep.h"
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace mlir::trl {
#define GEN_PASS_DEF_TRLOPTIMIZER
#include "passes/Passes.h.inc"
} // namespace mlir::trl

using namespace mlir;
using namespace mlir::trl;

namespace {

struct Optimizer : mlir::trl::impl::TrlOptimizerBase<Optimizer> {
  using TrlOptimizerBase::TrlOptimizerBase;

  struct Trainable {
    StringAttr name;
    RankedTensorType type;
    bool hfTransposed;
  };

  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto step = module.lookupSymbol<func::FuncOp>("train_step");
    if (!step)
      return;
    if (module.lookupSymbol("optimizer_step")) {
      step.emitOpError("trl-optimizer ran twice (@optimizer_step exists)");
      return signalPassFailure();
    }
    auto kind = symbolizeLrSchedule(schedule);
    if (!kind) {
      module.emitError("trl-optimizer: unknown schedule '")
          << schedule << "' (constant, linear, cosine)";
      return signalPassFailure();
    }
    SmallVector<Trainable> params;
    if (failed(accumulate(step, params)))
      return signalPassFailure();
    buildOptimizerStep(module, params, *kind);
  }

  /// Gradients become accumulators: acc' = acc + g every micro-batch.
  LogicalResult accumulate(func::FuncOp fn, SmallVectorImpl<Trainable> &params) {
    DenseMap<StringAttr, ParamOp> paramOps;
    fn.walk([&](ParamOp p) { paramOps[p.getNameAttr()] = p; });
    auto ret = cast<func::ReturnOp>(fn.front().getTerminator());
    OpBuilder b(ret);
    SmallVector<Value> results(ret.getOperands());
    bool anyGrad = false;
    for (unsigned i = 0; i < fn.getNumResults(); ++i) {
      auto name = fn.getResultAttrOfType<StringAttr>(i, "trl.grad");
      if (!name)
        continue;
      anyGrad = true;
      ParamOp p = paramOps.lookup(name);
      auto type = cast<RankedTensorType>(results[i].getType());
      params.push_back({name, type, p && p.getHfTransposed()});
      unsigned arg = fn.getNumArguments();
      fn.insertArgument(arg, type, b.getDictionaryAttr({}), fn.getLoc());
      std::string state = ("grad:" + name.getValue()).str();
      fn.setArgAttr(arg, "trl.state", b.getStringAttr(state));
      Value acc = fn.getArgument(arg);
      // A weight gradient that only feeds this accumulator is added by its
      // matrix product (beta = 1) instead of a separate pass over memory.
      auto lg = results[i].getDefiningOp<LinearGradOp>();
      if (lg && results[i] == lg.getGradWeight() && !lg.getAccumulate() &&
          results[i].hasOneUse()) {
        lg.getAccumulateMutable().assign(acc);
      } else {
        results[i] = b.create<AddOp>(fn.getLoc(), acc, results[i]);
      }
      fn.removeResultAttr(i, b.getStringAttr("trl.grad"));
      fn.setResultAttr(i, "trl.state", b.getStringAttr(state));
    }
    if (!anyGrad)
      return fn.emitOpError("trl-optimizer needs gradients: run trl-autodiff "
                            "first");
    ret->setOperands(results);
    return success();
  }

  void buildOptimizerStep(ModuleOp module, ArrayRef<Trainable> params,
                          LrSchedule kind) {
    MLIRContext *ctx = module.getContext();
    OpBuilder b(ctx);
    Location loc = module.getLoc();
    b.setInsertionPointToEnd(module.getBody());
    auto f32 = RankedTensorType::get({}, b.getF32Type());
    OptimizerStepBuilder opt(b, loc);
    for (const Trainable &p : params)
      opt.addTensor(p.name.getValue().str(), p.type);
    b.setInsertionPointToStart(opt.entry);
    Value norm = b.create<GradNormOp>(loc, f32, opt.grads);
    Value lr = b.create<LrScheduleOp>(
        loc, f32, opt.step, LrScheduleAttr::get(ctx, kind),
        b.getF64FloatAttr(learningRate), b.getI64IntegerAttr(warmupSteps),
        b.getI64IntegerAttr(totalSteps));
    for (auto [i, p] : llvm::enumerate(params)) {
      Value w = b.create<ParamOp>(loc, p.type, p.name, b.getBoolAttr(true),
                                  b.getStringAttr("policy"),
                                  p.hfTransposed ? b.getUnitAttr() : UnitAttr());
      // Biases and norm weights (vectors) are not decayed.
      double decay = p.type.getRank() >= 2 ? weightDecay.getValue() : 0.0;
      opt.update(i, w, lr, norm, maxGradNorm, beta1, beta2, epsilon, decay);
    }
    opt.finish(norm, lr);
  }
};

} // namespace
