//===- MixedPrecision.cpp - trl-mixed-precision: bf16 activation storage --===//
//
// Mixed-precision training as autocast does it, decided before the step
// runs: parameters (the fp32 master weights), gradients, optimizer state,
// losses and the residual stream stay f32; the activations the matrix
// products and attention read and write (and the backward keeps) are
// stored in bf16, and so are the frozen reference's weights (DPO, KTO,
// GRPO's KL). Ops still compute in f32: they widen bf16 operands and
// round the bf16 results they store (see Trl_FloatTensor).
//
// The pass retypes values, it adds no ops: a value and every value that
// must have its element type (its reshapes and splits, the result of an op
// with SameOperandsAndResultType that reads it) form a group, and a group
// is stored in bf16 only when each member is a bf16 candidate. A residual
// add (trl.add is such an op) therefore keeps the linear output it reads in
// f32, as it is not a candidate; the value is transient anyway.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace mlir::trl {
#define GEN_PASS_DEF_TRLMIXEDPRECISION
#include "passes/Passes.h.inc"
} // namespace mlir::trl

using namespace mlir;
using namespace mlir::trl;

namespace {

/// Union-find over values.
class Groups {
public:
  Value leader(Value v) {
    auto it = parent.try_emplace(v, v).first;
    if (it->second == v)
      return v;
    Value root = leader(it->second);
    parent[v] = root;
    return root;
  }
  void join(Value a, Value b) {
    Value ra = leader(a), rb = leader(b);
    if (ra != rb)
      parent[rb] = ra;
  }
  /// Every value seen, by leader.
  DenseMap<Value, SmallVector<Value>> members() {
    DenseMap<Value, SmallVector<Value>> out;
    SmallVector<Value> all;
    for (auto &[v, p] : parent)
      all.push_back(v);
    for (Value v : all)
      out[leader(v)].push_back(v);
    return out;
  }

private:
  DenseMap<Value, Value> parent;
};

struct MixedPrecision
    : mlir::trl::impl::TrlMixedPrecisionBase<MixedPrecision> {
  void runOnOperation() override {
    auto fn = getOperation().lookupSymbol<func::FuncOp>("train_step");
    if (!fn)
      return;
    auto ret = cast<func::ReturnOp>(fn.front().getTerminator());
    auto outputName = fn.getResultAttrOfType<StringAttr>(0, "trl.output");
    Operation *lossOp = ret.getNumOperands() ? ret.getOperand(0).getDefiningOp()
                                             : nullptr;
    if (!outputName || outputName.getValue() != "loss" || !lossOp) {
      fn.emitOpError("trl-mixed-precision runs after trl-autodiff (no loss "
                     "result found)");
      return signalPassFailure();
    }
    convert(fn, lossOp);
    // Forward passes with the training step's numerics (trl.step_forward:
    // RLOO's old and reference log-probabilities) store the same values
    // in bf16.
    for (auto other : getOperation().getOps<func::FuncOp>())
      if (other->hasAttr("trl.step_forward"))
        convert(other, nullptr);
    // A frozen base (trl-lora) is one tensor every program reads: bf16 in
    // all of them.
    Type bf16 = BFloat16Type::get(&getContext());
    for (auto other : getOperation().getOps<func::FuncOp>())
      other.walk([&](ParamOp p) {
        auto t = cast<RankedTensorType>(p.getType());
        if (p.getSet() == "policy" && !p.getTrainable() && t.getElementType().isF32())
          p.getResult().setType(RankedTensorType::get(t.getShape(), bf16, t.getEncoding()));
      });
  }

  /// Retypes the activations of `fn`'s ops up to `stop` (all: null).
  void convert(func::FuncOp fn, Operation *lossOp) {
    // The forward: every op up to the loss (trl-autodiff appends the
    // backward after it). Its activations of these kinds are candidates.
    auto f32 = [](Value v) {
      auto t = dyn_cast<RankedTensorType>(v.getType());
      return t && t.getElementType().isF32();
    };
    DenseSet<Value> candidates;
    for (Operation &op : fn.front()) {
      if (isa<LinearOp, RmsNormOp, LayerNormOp, SwigluOp, GeluOp>(op) ||
          (isa<RopeOp>(op) && !cast<RopeOp>(op).getInverse())) {
        if (f32(op.getResult(0)))
          candidates.insert(op.getResult(0));
      } else if (auto a = dyn_cast<AttentionOp>(op)) {
        if (f32(a.getOut()))
          candidates.insert(a.getOut());
      } else if (isa<AddOp>(op)) {
        // A sum of two candidates (trl-lora's base + update) goes with them;
        // a residual add reads the f32 stream and stays f32 (grouped below).
        if (candidates.contains(op.getOperand(0)) && candidates.contains(op.getOperand(1)))
          candidates.insert(op.getResult(0));
      } else if (isa<ReshapeOp, SplitOp, DropoutOp>(op)) {
        // Views of a candidate, and its dropout, go with it (grouped below).
        if (candidates.contains(op.getOperand(0)))
          for (Value r : op.getResults())
            candidates.insert(r);
      }
      if (&op == lossOp)
        break;
    }

    // Values that must share an element type.
    Groups same;
    DenseSet<Value> pinned; // members that must stay f32
    for (Value v : candidates) {
      same.leader(v);
      for (OpOperand &use : v.getUses()) {
        Operation *user = use.getOwner();
        // Returned values, and what trl.masked_sum reads (f32 only: a
        // score head's output summed at the last token), stay f32.
        if (isa<func::ReturnOp, MaskedSumOp>(user)) {
          pinned.insert(v);
          continue;
        }
        if (auto d = dyn_cast<DropoutOp>(user)) {  // (not its i64 seed)
          same.join(v, d.getResult());
          continue;
        }
        bool tied = isa<ReshapeOp, SplitOp, ConcatOp>(user) ||
                    user->hasTrait<OpTrait::SameOperandsAndResultType>() ||
                    user->hasTrait<OpTrait::SameTypeOperands>();
        if (!tied)
          continue;
        for (Value other : user->getOperands())
          same.join(v, other);
        for (Value r : user->getResults())
          same.join(v, r);
      }
    }
    DenseSet<Value> leaders;
    for (auto &[leader, group] : same.members())
      if (llvm::all_of(group, [&](Value m) {
            return candidates.contains(m) && !pinned.contains(m);
          }))
        leaders.insert(leader);

    int64_t count = 0, bytes = 0;
    Type bf16 = BFloat16Type::get(&getContext());
    for (Value v : candidates) {
      if (!leaders.contains(same.leader(v)))
        continue;
      auto t = cast<RankedTensorType>(v.getType());
      bytes += tensorBytes(t) / 2;
      v.setType(RankedTensorType::get(t.getShape(), bf16, t.getEncoding()));
      ++count;
    }
    // The frozen reference is only read: its weights are stored in bf16
    // too (TRL loads the reference in the training dtype).
    for (Operation &op : fn.front()) {
      auto p = dyn_cast<ParamOp>(op);
      if (!p || p.getTrainable())
        continue;
      auto t = cast<RankedTensorType>(p.getType());
      if (!t.getElementType().isF32())
        continue;
      bytes += tensorBytes(t) / 2;
      p.getResult().setType(RankedTensorType::get(t.getShape(), bf16, t.getEncoding()));
      ++count;
    }
    Builder b(&getContext());
    fn->setAttr("trl.bf16_values", b.getI64IntegerAttr(count));
    fn->setAttr("trl.bf16_bytes_saved", b.getI64IntegerAttr(bytes));
  }
};

} // namespace
