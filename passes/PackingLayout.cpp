//===- PackingLayout.cpp - trl-packing-layout: padded to varlen attention -===//
//
// Packed rows hold several documents back to back. The step keeps its
// [B, S] token tensors (embeddings, norms, projections and the loss are
// per token and need no change; position ids already restart at each
// document), and every padded attention becomes varlen attention over the
// B*S tokens flattened, with block-diagonal causal masking by `cu_seqlens`
// (a new `trl.input = "cu_seqlens"` argument of B*S+1 int32 offsets; the
// runtime fills it from the rows' seq_lengths, the padding at the end of a
// row being a document of its own, unused entries repeating the total).
// No token attends across a document boundary. The programs that read
// training rows are rewritten: @train_step and, with precomputed reference
// log-probabilities, @ref_logps (each gets its own cu_seqlens); generation
// (@prefill, @decode) reads unpacked prompts.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace mlir::trl {
#define GEN_PASS_DEF_TRLPACKINGLAYOUT
#include "passes/Passes.h.inc"
} // namespace mlir::trl

using namespace mlir;
using namespace mlir::trl;

namespace {

struct PackingLayout : mlir::trl::impl::TrlPackingLayoutBase<PackingLayout> {
  void runOnOperation() override {
    for (const char *name : {"train_step", "ref_logps"})
      if (auto fn = getOperation().lookupSymbol<func::FuncOp>(name))
        if (failed(rewrite(fn)))
          return signalPassFailure();
  }

  LogicalResult rewrite(func::FuncOp fn) {
    SmallVector<AttentionOp> padded;
    fn.walk([&](AttentionOp op) {
      if (op.getLayout() == AttentionLayout::padded)
        padded.push_back(op);
    });
    if (padded.empty())
      return success();
    auto qType = cast<RankedTensorType>(padded.front().getQ().getType());
    int64_t batch = qType.getDimSize(0), seq = qType.getDimSize(1);
    int64_t tokens = batch * seq;
    // The longest document: the function's #trl.packing seq_length when
    // it says so (padding-free rows hold documents of at most max_length),
    // else the row.
    int64_t longest = seq;
    if (auto packing = fn->getAttrOfType<PackingAttr>("trl.packing"))
      if (packing.getSeqLength() > 0)
        longest = std::min(longest, packing.getSeqLength());

    // The cu_seqlens argument, once per step.
    MLIRContext *ctx = &getContext();
    OpBuilder b(ctx);
    auto cuType = RankedTensorType::get({tokens + 1}, b.getI32Type());
    unsigned index = fn.getNumArguments();
    fn.insertArgument(index, cuType, b.getDictionaryAttr({}), fn.getLoc());
    fn.setArgAttr(index, "trl.input", b.getStringAttr("cu_seqlens"));
    Value cu = fn.getArgument(index);

    for (AttentionOp op : padded) {
      auto q = cast<RankedTensorType>(op.getQ().getType());
      auto k = cast<RankedTensorType>(op.getK().getType());
      if (q.getDimSize(0) != batch || q.getDimSize(1) != seq) {
        op.emitOpError("trl-packing-layout: attentions of one step must share "
                       "the batch shape");
        return failure();
      }
      if (!op.getLse().use_empty()) {
        op.emitOpError("trl-packing-layout runs before trl-autodiff (the "
                       "log-sum-exp is already used)");
        return failure();
      }
      b.setInsertionPoint(op);
      Location loc = op.getLoc();
      auto flat = [&](Value v, RankedTensorType t) -> Value {
        auto type = RankedTensorType::get({tokens, t.getDimSize(2), t.getDimSize(3)},
                                          t.getElementType());
        return b.create<ReshapeOp>(loc, type, v);
      };
      Value fq = flat(op.getQ(), q), fk = flat(op.getK(), k), fv = flat(op.getV(), k);
      auto lseType = RankedTensorType::get(
          {q.getDimSize(2), tokens},
          cast<RankedTensorType>(op.getLse().getType()).getElementType());
      auto varlen = b.create<AttentionOp>(
          loc, fq.getType(), lseType, fq, fk, fv, /*mask=*/Value(), cu,
          AttentionLayoutAttr::get(ctx, AttentionLayout::varlen), op.getCausalAttr(),
          op.getScaleAttr(), b.getI64IntegerAttr(longest));
      Value out = b.create<ReshapeOp>(loc, q, varlen.getOut());
      op.getOut().replaceAllUsesWith(out);
      op.erase();
    }
    return success();
  }
};

} // namespace
