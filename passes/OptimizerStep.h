//===- OptimizerStep.h - building @optimizer_step ---------------*- C++ -*-===//
//
// The function trl-optimizer builds and trl-zero3-shard rebuilds over
// shards: the `step` input; per trainable tensor KEY the states
// grad:KEY, exp_avg:KEY and exp_avg_sq:KEY; and as results the outputs
// grad_norm and learning_rate, then per tensor param:KEY, the moments and
// the cleared gradient.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_PASSES_OPTIMIZERSTEP_H
#define TRLC_PASSES_OPTIMIZERSTEP_H

#include "dialect/TrlDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace mlir::trl {

class OptimizerStepBuilder {
public:
  /// Creates an empty @optimizer_step at `b`'s insertion point.
  OptimizerStepBuilder(OpBuilder &b, Location loc) : b(b), loc(loc) {
    fn = b.create<func::FuncOp>(loc, "optimizer_step", b.getFunctionType({}, {}));
    entry = fn.addEntryBlock();
    step = addArg(RankedTensorType::get({}, b.getI64Type()), "trl.input", "step");
  }

  /// The three state arguments of a trainable tensor.
  void addTensor(const std::string &key, RankedTensorType type) {
    keys.push_back(key);
    grads.push_back(addArg(type, "trl.state", "grad:" + key));
    expAvg.push_back(addArg(type, "trl.state", "exp_avg:" + key));
    expAvgSq.push_back(addArg(type, "trl.state", "exp_avg_sq:" + key));
  }

  /// AdamW on tensor `i`, its gradient clipped by the global norm `norm`
  /// to `maxNorm` when that is positive; records the new parameter,
  /// moments and the cleared gradient as states.
  void update(size_t i, Value param, Value lr, Value norm, double maxNorm, double beta1,
              double beta2, double eps, double decay) {
    auto type = cast<RankedTensorType>(param.getType());
    auto upd = b.create<AdamWOp>(loc, type, type, type, param, grads[i], expAvg[i], expAvgSq[i],
                                 lr, step, maxNorm > 0 ? norm : Value(),
                                 b.getF64FloatAttr(beta1), b.getF64FloatAttr(beta2),
                                 b.getF64FloatAttr(eps), b.getF64FloatAttr(decay),
                                 b.getF64FloatAttr(maxNorm > 0 ? maxNorm : 0.0));
    addState(upd.getNewParam(), "param:" + keys[i]);
    addState(upd.getNewExpAvg(), "exp_avg:" + keys[i]);
    addState(upd.getNewExpAvgSq(), "exp_avg_sq:" + keys[i]);
    addState(b.create<FillOp>(loc, type, b.getF64FloatAttr(0.0)), "grad:" + keys[i]);
  }

  /// Returns the outputs and the states, and types the function.
  void finish(Value norm, Value lr) {
    SmallVector<Value> results{norm, lr};
    for (auto &[v, key] : states)
      results.push_back(v);
    b.create<func::ReturnOp>(loc, results);
    fn.setType(b.getFunctionType(entry->getArgumentTypes(), ValueRange(results).getTypes()));
    fn.setResultAttr(0, "trl.output", b.getStringAttr("grad_norm"));
    fn.setResultAttr(1, "trl.output", b.getStringAttr("learning_rate"));
    for (auto [i, s] : llvm::enumerate(states))
      fn.setResultAttr(i + 2, "trl.state", b.getStringAttr(s.second));
  }

  func::FuncOp fn;
  Block *entry;
  Value step;
  SmallVector<Value> grads, expAvg, expAvgSq;

private:
  Value addArg(Type type, StringRef attr, const std::string &value) {
    unsigned i = fn.getNumArguments();
    fn.insertArgument(i, type, b.getDictionaryAttr({}), loc);
    fn.setArgAttr(i, attr, b.getStringAttr(value));
    return fn.getArgument(i);
  }
  void addState(Value v, const std::string &key) { states.push_back({v, key}); }

  OpBuilder &b;
  Location loc;
  std::vector<std::string> keys;
  std::vector<std::pair<Value, std::string>> states;
};

} // namespace mlir::trl

#endif // TRLC_PASSES_OPTIMIZERSTEP_H
