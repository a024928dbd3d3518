//===- Autodiff.cpp - trl-autodiff: reverse mode over trl ops -------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseSet.h"

namespace mlir::trl {
#define GEN_PASS_DEF_TRLAUTODIFF
#include "passes/Passes.h.inc"
} // namespace mlir::trl

using namespace mlir;
using namespace mlir::trl;

namespace {

struct Autodiff : mlir::trl::impl::TrlAutodiffBase<Autodiff> {
  void runOnOperation() override {
    auto fn = getOperation().lookupSymbol<func::FuncOp>("train_step");
    if (!fn)
      return;
    if (failed(differentiate(fn)))
      signalPassFailure();
  }

  LogicalResult differentiate(func::FuncOp fn) {
    Block &block = fn.front();
    auto ret = cast<func::ReturnOp>(block.getTerminator());
    // The loss, then named metrics (trl.output) the gradients follow.
    unsigned outputs = ret.getNumOperands();
    for (unsigned i = 0; i < fn.getNumResults(); ++i)
      if (fn.getResultAttr(i, "trl.grad"))
        return fn.emitOpError("trl-autodiff expects @train_step to return its loss and "
                              "metrics only (was it differentiated already?)");
    if (outputs == 0)
      return fn.emitOpError("trl-autodiff expects @train_step to return its loss");
    for (unsigned i = 1; i < outputs; ++i)
      if (!fn.getResultAttrOfType<StringAttr>(i, "trl.output"))
        return fn.emitOpError("result ") << i << " of @train_step is neither the loss nor "
                                            "a named (trl.output) metric";
    Value loss = ret.getOperand(0);
    auto lossType = dyn_cast<RankedTensorType>(loss.getType());
    if (!lossType || lossType.getRank() != 0)
      return fn.emitOpError("trl-autodiff expects a 0-d loss");

    // Activity: values that depend on a trainable parameter.
    DenseSet<Value> active;
    SmallVector<Operation *> ops;
    for (Operation &op : block.without_terminator()) {
      ops.push_back(&op);
      bool isActive = false;
      if (auto p = dyn_cast<ParamOp>(op))
        isActive = p.getTrainable();
      else
        isActive = llvm::any_of(op.getOperands(),
                                [&](Value v) { return active.contains(v); });
      if (isActive)
        active.insert(op.getResults().begin(), op.getResults().end());
    }
    if (!active.contains(loss))
      return fn.emitOpError("the loss does not depend on any trainable "
                            "parameter");

    OpBuilder b(ret);
    DenseMap<Value, Value> grads;
    auto accumulate = [&](Value v, Value g) {
      auto [it, inserted] = grads.try_emplace(v, g);
      if (!inserted)
        it->second = b.create<AddOp>(g.getLoc(), it->second, g);
    };
    grads[loss] = b.create<FillOp>(loss.getLoc(), lossType,
                                   b.getF64FloatAttr(1.0));

    for (Operation *op : llvm::reverse(ops)) {
      if (isa<ParamOp>(op))
        continue;
      SmallVector<Value> resultGrads;
      bool any = false;
      for (Value r : op->getResults()) {
        resultGrads.push_back(grads.lookup(r));
        any |= static_cast<bool>(resultGrads.back());
      }
      if (!any || !llvm::any_of(op->getOperands(), [&](Value v) {
            return active.contains(v);
          }))
        continue;
      auto vjp = dyn_cast<VJPOpInterface>(op);
      if (!vjp)
        return op->emitOpError("has no vector-Jacobian product; trl-autodiff "
                               "cannot differentiate through it");
      SmallVector<Value> operandGrads;
      if (failed(vjp.buildVJP(b, resultGrads, operandGrads)))
        return failure();
      if (operandGrads.size() != op->getNumOperands())
        return op->emitOpError("VJP returned ")
               << operandGrads.size() << " cotangents for "
               << op->getNumOperands() << " operands";
      for (auto [operand, g] : llvm::zip(op->getOperands(), operandGrads))
        if (g && active.contains(operand))
          accumulate(operand, g);
    }

    // Results: the loss, the metrics, then one gradient per trainable
    // parameter, in the order the parameters are read.
    SmallVector<Value> results(ret.getOperands());
    SmallVector<Attribute> metricNames;
    for (unsigned i = 1; i < outputs; ++i)
      metricNames.push_back(fn.getResultAttr(i, "trl.output"));
    SmallVector<StringAttr> names;
    for (Operation *op : ops) {
      auto p = dyn_cast<ParamOp>(op);
      if (!p || !p.getTrainable())
        continue;
      Value g = grads.lookup(p.getResult());
      if (!g) // read but not on the loss's path: its gradient is zero
        g = b.create<FillOp>(p.getLoc(), p.getType(), b.getF64FloatAttr(0.0));
      results.push_back(g);
      names.push_back(p.getNameAttr());
    }
    ret->setOperands(results);
    fn.setType(FunctionType::get(fn.getContext(), fn.getArgumentTypes(),
                                 ValueRange(results).getTypes()));
    fn.setResultAttr(0, "trl.output", b.getStringAttr("loss"));
    for (auto [i, name] : llvm::enumerate(metricNames))
      fn.setResultAttr(i + 1, "trl.output", name);
    for (auto [i, name] : llvm::enumerate(names))
      fn.setResultAttr(i + outputs, "trl.grad", name);
    return success();
  }
};

} // namespace
