//===- Optimizer.cpp - trl-optimizer: accumulation, clipping, AdamW -------===//

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
    auto stepType = RankedTensorType::get({}, b.getI64Type());
    auto f32 = RankedTensorType::get({}, b.getF32Type());
    auto fn = b.create<func::FuncOp>(loc, "optimizer_step",
                                     b.getFunctionType({}, {}));
    Block *entry = fn.addEntryBlock();
    auto addArg = [&](Type type, StringRef attr, const std::string &value) {
      unsigned i = fn.getNumArguments();
      fn.insertArgument(i, type, b.getDictionaryAttr({}), loc);
      fn.setArgAttr(i, attr, b.getStringAttr(value));
      return fn.getArgument(i);
    };
    Value step = addArg(stepType, "trl.input", "step");
    SmallVector<Value> g, m, v;
    for (const Trainable &p : params) {
      std::string n = p.name.getValue().str();
      g.push_back(addArg(p.type, "trl.state", "grad:" + n));
      m.push_back(addArg(p.type, "trl.state", "exp_avg:" + n));
      v.push_back(addArg(p.type, "trl.state", "exp_avg_sq:" + n));
    }
    b.setInsertionPointToStart(entry);
    Value norm = b.create<GradNormOp>(loc, f32, g);
    if (maxGradNorm > 0)
      for (Value &gi : g)
        gi = b.create<ClipGradOp>(loc, gi.getType(), gi, norm,
                                  b.getF64FloatAttr(maxGradNorm));
    Value lr = b.create<LrScheduleOp>(
        loc, f32, step, LrScheduleAttr::get(ctx, kind),
        b.getF64FloatAttr(learningRate), b.getI64IntegerAttr(warmupSteps),
        b.getI64IntegerAttr(totalSteps));

    SmallVector<Value> results{norm, lr};
    SmallVector<std::pair<unsigned, std::string>> states;
    auto addState = [&](Value value, const std::string &state) {
      states.push_back({static_cast<unsigned>(results.size()), state});
      results.push_back(value);
    };
    for (auto [i, p] : llvm::enumerate(params)) {
      std::string n = p.name.getValue().str();
      Value w = b.create<ParamOp>(loc, p.type, p.name, b.getBoolAttr(true),
                                  b.getStringAttr("policy"),
                                  p.hfTransposed ? b.getUnitAttr() : UnitAttr());
      // Biases and norm weights (vectors) are not decayed.
      double decay = p.type.getRank() >= 2 ? weightDecay.getValue() : 0.0;
      auto upd = b.create<AdamWOp>(
          loc, p.type, p.type, p.type, w, g[i], m[i], v[i], lr, step,
          b.getF64FloatAttr(beta1), b.getF64FloatAttr(beta2),
          b.getF64FloatAttr(epsilon), b.getF64FloatAttr(decay));
      addState(upd.getNewParam(), "param:" + n);
      addState(upd.getNewExpAvg(), "exp_avg:" + n);
      addState(upd.getNewExpAvgSq(), "exp_avg_sq:" + n);
      addState(b.create<FillOp>(loc, p.type, b.getF64FloatAttr(0.0)),
               "grad:" + n);
    }
    b.create<func::ReturnOp>(loc, results);
    fn.setType(b.getFunctionType(entry->getArgumentTypes(),
                                 ValueRange(results).getTypes()));
    fn.setResultAttr(0, "trl.output", b.getStringAttr("grad_norm"));
    fn.setResultAttr(1, "trl.output", b.getStringAttr("learning_rate"));
    for (auto &[i, s] : states)
      fn.setResultAttr(i, "trl.state", b.getStringAttr(s));
  }
};

} // namespace
