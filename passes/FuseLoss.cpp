//===- FuseLoss.cpp - trl-fuse-loss: lm_head + loss in row chunks ---------===//
//
// `trl.cross_entropy(trl.linear(h, W), labels)` and
// `trl.log_probs(trl.linear(h, W), labels)`, where the logits feed nothing
// else, become `trl.fused_linear_cross_entropy` / `trl.fused_linear_log_probs`:
// the [T, V] logits never exist, each chunk of rows is multiplied, reduced
// and (in the backward) differentiated into the hidden-state and lm_head
// gradients with fp32 accumulation. The chunk size is the pass option, or
// Liger-Kernel's rule when it is 0: next_power_of_2(ceil(T / ceil(V / H))),
// recorded as the op's `chunk_size`.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace mlir::trl {
#define GEN_PASS_DEF_TRLFUSELOSS
#include "passes/Passes.h.inc"
} // namespace mlir::trl

using namespace mlir;
using namespace mlir::trl;

namespace {

int64_t nextPowerOfTwo(int64_t x) {
  int64_t p = 1;
  while (p < x)
    p *= 2;
  return p;
}

struct FuseLoss : mlir::trl::impl::TrlFuseLossBase<FuseLoss> {
  using TrlFuseLossBase::TrlFuseLossBase;

  /// Liger's chunk: T rows of hidden size H against V classes.
  static int64_t ligerChunk(int64_t rows, int64_t vocab, int64_t hidden) {
    int64_t inc = (vocab + hidden - 1) / hidden;
    return nextPowerOfTwo((rows + inc - 1) / inc);
  }

  void runOnOperation() override {
    if (chunkSize < 0) {
      getOperation().emitError("trl-fuse-loss: chunk-size must be >= 0 (0: Liger's rule)");
      return signalPassFailure();
    }
    SmallVector<Operation *> losses;
    getOperation().walk([&](Operation *op) {
      if (isa<CrossEntropyOp, LogProbsOp>(op))
        losses.push_back(op);
    });
    for (Operation *op : losses) {
      Value logits = op->getOperand(0), labels = op->getOperand(1);
      auto lin = logits.getDefiningOp<LinearOp>();
      // Only a bias-free head whose logits nothing else reads.
      if (!lin || lin.getBias() || !logits.hasOneUse())
        continue;
      auto hidden = cast<RankedTensorType>(lin.getX().getType());
      auto weight = cast<RankedTensorType>(lin.getWeight().getType());
      int64_t rows = hidden.getNumElements() / hidden.getShape().back();
      int64_t chunk = chunkSize > 0
                          ? std::min<int64_t>(chunkSize, rows)
                          : ligerChunk(rows, weight.getDimSize(0), weight.getDimSize(1));
      OpBuilder b(op);
      auto chunkAttr = b.getI64IntegerAttr(chunk);
      auto ignore = op->getAttrOfType<IntegerAttr>("ignore_index");
      Value fused;
      if (auto ce = dyn_cast<CrossEntropyOp>(op))
        fused = b.create<FusedLinearCrossEntropyOp>(op->getLoc(), ce.getType(), lin.getX(),
                                                    lin.getWeight(), labels, ignore, chunkAttr);
      else
        fused = b.create<FusedLinearLogProbsOp>(op->getLoc(), op->getResult(0).getType(),
                                                lin.getX(), lin.getWeight(), labels, ignore,
                                                chunkAttr);
      op->getResult(0).replaceAllUsesWith(fused);
      op->erase();
      lin.erase();
    }
  }
};

} // namespace
