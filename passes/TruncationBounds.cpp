//===- TruncationBounds.cpp - trl-truncation-bounds -----------------------===//
//
// Every buffer of a step is sized by static shapes, so every sequence
// dimension needs an upper bound. The graph builder sizes them by the
// recipe (max_length, max_prompt_length + max_completion_length), tightened
// by the compiler to the data plan's longest row when that is shorter. This
// pass checks and records the bounds:
//  - every tensor in the module has a static shape;
//  - every `trl.seq_bound` (the bound and its source, which the graph
//    builder puts on each batch argument) names the argument's sequence
//    dimension;
//  - the data plan's longest row (the larger of `data-max` and the
//    module's `trl.data` max_length) fits that bound: a row the step cannot hold is an error
//    here, not a truncation at run time;
// and records the step's bound on the module (`trl.sequence_bound`).
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace mlir::trl {
#define GEN_PASS_DEF_TRLTRUNCATIONBOUNDS
#include "passes/Passes.h.inc"
} // namespace mlir::trl

using namespace mlir;
using namespace mlir::trl;

namespace {

struct TruncationBounds : mlir::trl::impl::TrlTruncationBoundsBase<TruncationBounds> {
  using TrlTruncationBoundsBase::TrlTruncationBoundsBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    int64_t longest = dataMax;
    if (auto data = module->getAttrOfType<DictionaryAttr>("trl.data"))
      if (auto m = data.getAs<IntegerAttr>("max_length"))
        longest = std::max<int64_t>(longest, m.getInt());

    // Static shapes everywhere.
    bool ok = true;
    module.walk([&](Operation *op) {
      for (Type t : op->getResultTypes())
        if (auto r = dyn_cast<RankedTensorType>(t); r && !r.hasStaticShape()) {
          op->emitOpError("has a dynamic dimension in ") << r
              << "; trl steps are sized statically (give the sequence a bound)";
          ok = false;
        }
    });
    if (!ok)
      return signalPassFailure();

    SeqBoundAttr stepBound;
    for (auto fn : module.getOps<func::FuncOp>()) {
      for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
        auto bound = fn.getArgAttrOfType<SeqBoundAttr>(i, "trl.seq_bound");
        auto type = dyn_cast<RankedTensorType>(fn.getArgument(i).getType());
        if (!bound)
          continue;
        if (!type || type.getRank() < 2 || type.getDimSize(1) != bound.getMax()) {
          fn.emitOpError("argument ") << i << "'s trl.seq_bound " << bound.getMax()
                                      << " is not its sequence dimension";
          return signalPassFailure();
        }
        if (longest > bound.getMax()) {
          fn.emitOpError("the data plan has rows of ")
              << longest << " tokens but the sequence bound is " << bound.getMax() << " (from "
              << bound.getSource() << "); the rows would not fit the step";
          return signalPassFailure();
        }
        if (!stepBound || bound.getMax() > stepBound.getMax())
          stepBound = bound;
      }
    }
    if (stepBound)
      module->setAttr("trl.sequence_bound", stepBound);
  }
};

} // namespace
