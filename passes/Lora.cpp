//===- Lora.cpp - trl-lora: PEFT's LoRA adapters over the targeted linears ===//
//
// y = x W^T (+ b) becomes y + (scale * x A^T) B^T for each targeted linear,
// with A [r, in] and B [out, r] new trainable parameters named as PEFT
// names them (`<module>.lora_A.weight`, `<module>.lora_B.weight`; the
// runtime initialises A Kaiming-uniform and B to zeros, PEFT's default).
// The scale multiplies as a division by its inverse (trl.div by a 0-d
// trl.fill). Then every other policy parameter is frozen, and the frozen
// reference reads those same frozen weights: the base with the adapters
// off. With lora_dropout, the adapters of @train_step read trl.dropout(x),
// seeded by a `dropout_seed` batch input.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

#include "llvm/ADT/StringSet.h"

#include <cmath>

namespace mlir::trl {
#define GEN_PASS_DEF_TRLLORA
#include "passes/Passes.h.inc"
} // namespace mlir::trl

using namespace mlir;
using namespace mlir::trl;

namespace {

bool isLoraName(StringRef name) {
  return name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight");
}

struct Lora : mlir::trl::impl::TrlLoraBase<Lora> {
  using TrlLoraBase::TrlLoraBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (rank < 1) {
      module.emitError("trl-lora: rank must be at least 1");
      return signalPassFailure();
    }
    llvm::StringSet<> wanted, seen;
    SmallVector<StringRef> parts;
    StringRef(targets).split(parts, ',', -1, false);
    for (StringRef t : parts)
      wanted.insert(t.trim());
    if (wanted.empty()) {
      module.emitError("trl-lora: no target modules");
      return signalPassFailure();
    }
    if (!(dropout >= 0 && dropout < 1)) {
      module.emitError("trl-lora: dropout must be in [0, 1)");
      return signalPassFailure();
    }
    SmallVector<StringRef> keepParts;
    StringRef(keep).split(keepParts, ',', -1, false);
    auto kept = [&](StringRef name) {
      return llvm::any_of(keepParts, [&](StringRef k) { return name.starts_with(k.trim()); });
    };
    double scale = alpha / (rslora ? std::sqrt(double(rank)) : double(rank));
    OpBuilder b(module.getContext());
    Type f32 = b.getF32Type();

    // 1. Adapters on the targeted linears of every program.
    SmallVector<LinearOp> linears;
    module.walk([&](LinearOp op) { linears.push_back(op); });
    Value seed;  // @train_step's dropout_seed, made at the first adapter
    int64_t streams = 0;
    for (LinearOp lin : linears) {
      auto w = lin.getWeight().getDefiningOp<ParamOp>();
      if (!w || w.getSet() != "policy" || kept(w.getName()))
        continue;
      StringRef name = w.getName();
      if (!name.consume_back(".weight"))
        continue;
      StringRef module_ = name.rsplit('.').second.empty() ? name : name.rsplit('.').second;
      if (!wanted.contains(module_))
        continue;
      seen.insert(module_);
      auto wt = cast<RankedTensorType>(w.getType());
      auto yt = cast<RankedTensorType>(lin.getType());
      int64_t outF = wt.getDimSize(0), inF = wt.getDimSize(1);
      b.setInsertionPointAfter(lin);
      Location loc = lin.getLoc();
      auto param = [&](const char *suffix, ArrayRef<int64_t> shape) {
        return b.create<ParamOp>(loc, RankedTensorType::get(shape, f32),
                                 b.getStringAttr((name + suffix).str()), b.getBoolAttr(true),
                                 b.getStringAttr("policy"), UnitAttr());
      };
      Value a = param(".lora_A.weight", {rank, inF});
      Value bw = param(".lora_B.weight", {outF, rank});
      SmallVector<int64_t> mid(yt.getShape().drop_back());
      mid.push_back(rank);
      // The scale applies to the rank-r activation, the smallest: B(A(x) /
      // (1 / scale)); the out-sized update then only feeds the add.
      auto midType = RankedTensorType::get(mid, f32);
      Value x = lin.getX();
      auto fn = lin->getParentOfType<func::FuncOp>();
      if (dropout > 0 && fn && fn.getSymName() == "train_step") {
        if (!seed) {
          unsigned index = fn.getNumArguments();
          fn.insertArgument(index, RankedTensorType::get({}, b.getI64Type()),
                            b.getDictionaryAttr({}), fn.getLoc());
          fn.setArgAttr(index, "trl.input", b.getStringAttr("dropout_seed"));
          seed = fn.getArgument(index);
        }
        x = b.create<DropoutOp>(loc, x.getType(), x, seed, b.getF64FloatAttr(dropout),
                                b.getI64IntegerAttr(streams++));
      }
      Value h = b.create<LinearOp>(loc, midType, x, a, Value());
      Value inv = b.create<FillOp>(loc, RankedTensorType::get({}, f32),
                                   b.getF64FloatAttr(1.0 / scale));
      Value scaled = b.create<DivOp>(loc, midType, h, inv);
      Value d = b.create<LinearOp>(loc, yt, scaled, bw, Value());
      Value sum = b.create<AddOp>(loc, lin.getResult(), d);
      lin.getResult().replaceAllUsesExcept(sum, sum.getDefiningOp());
    }
    for (auto &t : wanted)
      if (!seen.contains(t.getKey())) {
        module.emitError() << "trl-lora: target module \"" << t.getKey()
                           << "\" names no linear layer of the model";
        return signalPassFailure();
      }

    // 2. The base is frozen: every policy parameter but the adapters and
    // the modules trained whole (modules_to_save: a component of the name).
    llvm::StringSet<> whole;
    SmallVector<StringRef> saveParts;
    StringRef(save).split(saveParts, ',', -1, false);
    for (StringRef m : saveParts)
      whole.insert(m.trim());
    auto trainedWhole = [&](StringRef name) {
      SmallVector<StringRef> parts;
      name.split(parts, '.');
      return llvm::any_of(parts, [&](StringRef c) { return whole.contains(c); });
    };
    module.walk([&](ParamOp p) {
      if (p.getSet() == "policy" && p.getTrainable() && !isLoraName(p.getName()) &&
          !trainedWhole(p.getName()) && !kept(p.getName()))
        p.setTrainableAttr(b.getBoolAttr(false));
    });

    // 3. The reference reads the frozen base: no copy of its own (but of
    // the modules trained whole, whose original PEFT keeps too).
    SmallVector<ParamOp> refs;
    module.walk([&](ParamOp p) {
      if (p.getSet() == "reference" && !trainedWhole(p.getName()))
        refs.push_back(p);
    });
    for (ParamOp r : refs) {
      b.setInsertionPoint(r);
      auto base = b.create<ParamOp>(r.getLoc(), r.getType(), r.getNameAttr(),
                                    b.getBoolAttr(false), b.getStringAttr("policy"),
                                    r.getHfTransposedAttr());
      r.getResult().replaceAllUsesWith(base.getResult());
      r.erase();
    }
  }
};

} // namespace
