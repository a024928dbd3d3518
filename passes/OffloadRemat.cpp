//===- OffloadRemat.cpp - trl-offload-remat: what the backward keeps ------===//
//
// After trl-autodiff, every forward value the backward pass reads (a saved
// activation) is kept on the device from its definition to its last
// backward use. This pass decides, per saved activation:
//
//  - recompute whole layers (`layers` option, [memory]
//    gradient_checkpointing with recompute = "full", Hugging Face's
//    gradient checkpointing): each decoder layer (the ops ModelBuilder tags
//    `trl.layer`, and what later passes derived from them) keeps only its
//    input and its output; its forward, products included, is cloned right
//    before the first backward use of anything else it saved, and the
//    backward reads the clones;
//  - recompute (`recompute` option, recompute = "selective"): a
//    cheap op (norms, RoPE, SwiGLU, GELU, residual add) whose operands the
//    backward keeps anyway is cloned right before its first backward use, so
//    its result dies after the forward;
//  - offload (`offload` option, [memory] activation_offloading, as TRL
//    does it): a saved activation of at least `min-bytes` bytes (1024) is
//    copied to host memory (`trl.offload`, #trl.space<host>) after its last
//    forward use and copied back (`trl.reload`) before its first backward
//    use. Parameters, inputs and the output head's activations (the lm_head
//    input and the logits, which the loss reads right back) stay.
//  - keep: everything else.
//
// Each decision copies or recomputes bit-identical values; the plan's
// device arena shrinks and, for offloads, a host pool appears.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

#include <cmath>

namespace mlir::trl {
#define GEN_PASS_DEF_TRLOFFLOADREMAT
#include "passes/Passes.h.inc"
} // namespace mlir::trl

using namespace mlir;
using namespace mlir::trl;

namespace {

/// @train_step's ops in block order, and where the backward starts (after
/// the loss).
struct Order {
  DenseMap<Operation *, unsigned> position;
  unsigned boundary = 0;
  Order(func::FuncOp fn, Operation *lossDef) {
    unsigned n = 0;
    for (Operation &op : fn.front())
      position[&op] = n++;
    boundary = position[lossDef];
  }
  bool isBackward(Operation *op) const { return position.lookup(op) > boundary; }
};

struct OffloadRemat : mlir::trl::impl::TrlOffloadRematBase<OffloadRemat> {
  using TrlOffloadRematBase::TrlOffloadRematBase;

  /// Peak product throughput of the backend profile (FLOP/s), for pricing
  /// recomputation.
  double profilePeakFlops() const { return profile == "cuda" ? 7.9e14 : 5.0e10; }

  /// Hugging Face gradient checkpointing: the forward ops of each decoder
  /// layer, by `trl.layer` tag (an untagged op whose operands come from one
  /// layer's ops belongs to it: trl-lora's adapters, ops later passes
  /// rebuilt), are cloned before the layer's first backward use; the
  /// backward reads the clones, except for the values another layer or
  /// the head reads in the forward (the layer's output: the next layer's
  /// checkpoint), which stay. Clones nothing reads are dropped.
  void checkpointLayers(func::FuncOp fn, Operation *lossDef, OpBuilder &b, int64_t &count,
                        double &seconds, double &flops) {
    Order order_(fn, lossDef);
    DenseMap<Operation *, unsigned> &position = order_.position;
    unsigned boundary = order_.boundary;
    auto isBackward = [&](Operation *op) { return order_.isBackward(op); };
    // Each forward op's layer ("": none).
    DenseMap<Operation *, StringAttr> layerOf;
    SmallVector<StringAttr> order;  // layers in forward order
    DenseMap<StringAttr, SmallVector<Operation *>> opsOf;
    for (Operation &op : fn.front()) {
      if (position[&op] > boundary)
        break;
      StringAttr layer = op.getAttrOfType<StringAttr>("trl.layer");
      if (!layer && !isa<ParamOp, FillOp>(op) && op.getNumOperands() > 0) {
        // Derived: every operand from this layer's ops, a parameter, a
        // constant or an argument.
        bool mixed = false;
        for (Value v : op.getOperands()) {
          Operation *def = v.getDefiningOp();
          if (!def || isa<ParamOp, FillOp>(def))
            continue;
          StringAttr l = layerOf.lookup(def);
          if (!l || l.empty() || (layer && l != layer))
            mixed = true;
          else
            layer = l;
        }
        if (mixed)
          layer = {};
      }
      if (!layer || layer.empty() || isa<ParamOp, FillOp>(op))
        continue;
      layerOf[&op] = layer;
      if (!opsOf.count(layer))
        order.push_back(layer);
      opsOf[layer].push_back(&op);
    }
    double peak = profilePeakFlops();
    for (StringAttr layer : order) {
      ArrayRef<Operation *> ops = opsOf[layer];
      DenseSet<Operation *> inLayer(ops.begin(), ops.end());
      // What the layer saved for the backward, but its outputs.
      SmallVector<Value> saved;
      for (Operation *op : ops)
        for (Value v : op->getResults()) {
          bool backward = false, output = false;
          for (Operation *u : v.getUsers())
            (isBackward(u) ? backward : output) |= isBackward(u) || !inLayer.contains(u);
          if (backward && !output)
            saved.push_back(v);
        }
      if (saved.empty())
        continue;
      Operation *first = nullptr;
      for (Value v : saved)
        for (Operation *u : v.getUsers())
          if (isBackward(u) && (!first || position[u] < position[first]))
            first = u;
      b.setInsertionPoint(first);
      IRMapping map;
      SmallVector<Operation *> clones;
      for (Operation *op : ops) {
        Operation *clone = b.clone(*op, map);
        clone->setAttr("trl.recomputed", b.getUnitAttr());
        position[clone] = position[first];
        clones.push_back(clone);
      }
      for (Value v : saved)
        v.replaceUsesWithIf(map.lookup(v), [&](OpOperand &use) {
          return isBackward(use.getOwner()) && !llvm::is_contained(clones, use.getOwner());
        });
      for (Operation *clone : llvm::reverse(clones)) {
        if (clone->use_empty()) {
          clone->erase();
          continue;
        }
        if (auto cost = dyn_cast<MemoryCostOpInterface>(clone)) {
          seconds += double(cost.getFlops()) / peak;
          flops += double(cost.getFlops());
        }
      }
      ++count;
    }
  }

  void runOnOperation() override {
    auto fn = getOperation().lookupSymbol<func::FuncOp>("train_step");
    if (!fn || (!offload && !recompute && !layers && maxCost < 0))
      return;
    auto ret = cast<func::ReturnOp>(fn.front().getTerminator());
    bool anyGrad = false;
    for (unsigned i = 0; i < fn.getNumResults(); ++i)
      anyGrad |= static_cast<bool>(fn.getResultAttr(i, "trl.grad"));
    if (!anyGrad) {
      fn.emitOpError("trl-offload-remat runs after trl-autodiff (no gradients yet)");
      return signalPassFailure();
    }
    Operation *lossDef = ret.getOperand(0).getDefiningOp();
    if (!lossDef) {
      fn.emitOpError("trl-offload-remat: the loss is not computed in @train_step");
      return signalPassFailure();
    }
    OpBuilder b(&getContext());
    int64_t layerCount = 0;
    double layerSeconds = 0, recomputedFlops = 0, offloadedBytes = 0;
    if (layers)
      checkpointLayers(fn, lossDef, b, layerCount, layerSeconds, recomputedFlops);

    Order order_(fn, lossDef);
    DenseMap<Operation *, unsigned> &position = order_.position;
    unsigned boundary = order_.boundary;
    auto isBackward = [&](Operation *op) { return order_.isBackward(op); };

    // The output head: the loss's tensor operands and, through a plain
    // lm_head product, that product's input.
    DenseSet<Value> head;
    fn.walk([&](Operation *op) {
      if (!isa<CrossEntropyOp, LogProbsOp, FusedLinearCrossEntropyOp, FusedLinearLogProbsOp>(op))
        return;
      for (Value v : op->getOperands()) {
        head.insert(v);
        if (auto lin = v.getDefiningOp<LinearOp>())
          head.insert(lin.getX());
      }
    });

    // Saved activations, in forward order.
    SmallVector<Value> saved;
    for (Operation &op : fn.front()) {
      if (position[&op] > boundary)
        break;
      if (isa<ParamOp>(op))
        continue;
      for (Value v : op.getResults())
        if (llvm::any_of(v.getUsers(), isBackward))
          saved.push_back(v);
    }
    auto neededInBackward = [&](Value v) {
      if (isa<BlockArgument>(v) || v.getDefiningOp<ParamOp>())
        return true;
      return llvm::any_of(v.getUsers(), isBackward);
    };
    auto firstBackwardUser = [&](Value v) {
      Operation *first = nullptr;
      for (Operation *u : v.getUsers())
        if (isBackward(u) && (!first || position[u] < position[first]))
          first = u;
      return first;
    };
    auto replaceBackwardUses = [&](Value v, Value with) {
      v.replaceUsesWithIf(with, [&](OpOperand &use) { return isBackward(use.getOwner()); });
    };

    // The backend profile the cost model prices decisions with.
    double peakFlops, linkBytes, latency;
    if (profile == "cuda") {
      peakFlops = 7.9e14;  // H100 dense bf16 products, measured
      linkBytes = 5.0e10;  // PCIe 5 x16, pinned
      latency = 1e-5;      // per copy on the copy stream
    } else if (profile == "cpu") {
      peakFlops = 5.0e10;  // two cores, vectorised
      linkBytes = 1.0e10;  // memcpy
      latency = 1e-6;
    } else {
      getOperation().emitError("trl-offload-remat: unknown profile '") << profile
          << "' (cpu or cuda)";
      return signalPassFailure();
    }
    auto recomputable = [&](Value v) {
      Operation *def = v.getDefiningOp();
      return isa<RmsNormOp, LayerNormOp, RopeOp, SwigluOp, GeluOp, AddOp>(def) &&
             !head.contains(v) && def->getNumResults() == 1 &&
             llvm::all_of(def->getOperands(), neededInBackward);
    };
    auto recomputeSeconds = [&](Value v) {
      auto cost = dyn_cast<MemoryCostOpInterface>(v.getDefiningOp());
      return (cost ? double(cost.getFlops()) : 0.0) / peakFlops + latency;
    };
    auto offloadSeconds = [&](int64_t bytes) { return 2 * (latency + double(bytes) / linkBytes); };

    int64_t recomputed = 0, offloaded = 0;
    double overhead = layerSeconds;
    DenseSet<Value> done;
    // With a cost bound (the compiler's budget search), each saved
    // activation gets its cheaper decision when that costs at most
    // `max-cost` seconds per byte it frees; the flags force theirs.
    DenseSet<Value> autoRecompute, autoOffload;
    if (maxCost >= 0)
      for (Value v : saved) {
        auto type = dyn_cast<RankedTensorType>(v.getType());
        if (!type || head.contains(v) || v.getDefiningOp<ReshapeOp>() || isHostTensor(type))
          continue;
        int64_t bytes = tensorBytes(type);
        double r = recomputable(v) ? recomputeSeconds(v) : INFINITY;
        double o = bytes >= minBytes ? offloadSeconds(bytes) : INFINITY;
        double best = std::min(r, o);
        if (best / double(std::max<int64_t>(bytes, 1)) > maxCost)
          continue;
        (r <= o ? autoRecompute : autoOffload).insert(v);
      }
    if (recompute || !autoRecompute.empty()) {
      for (Value v : saved) {
        if (!(recompute || autoRecompute.contains(v)) || !recomputable(v))
          continue;
        Operation *def = v.getDefiningOp();
        overhead += recomputeSeconds(v);
        if (auto cost = dyn_cast<MemoryCostOpInterface>(v.getDefiningOp()))
          recomputedFlops += double(cost.getFlops());
        Operation *first = firstBackwardUser(v);
        b.setInsertionPoint(first);
        Operation *clone = b.clone(*def);
        clone->setAttr("trl.recomputed", b.getUnitAttr());
        position[clone] = position[first];  // counts as backward
        replaceBackwardUses(v, clone->getResult(0));
        done.insert(v);
        ++recomputed;
      }
    }
    if (offload || !autoOffload.empty()) {
      for (Value v : saved) {
        if (done.contains(v) || head.contains(v) || v.getDefiningOp<ReshapeOp>())
          continue;
        if (!offload && !autoOffload.contains(v))
          continue;
        auto type = dyn_cast<RankedTensorType>(v.getType());
        if (!type || isHostTensor(type) || tensorBytes(type) < minBytes)
          continue;
        overhead += offloadSeconds(tensorBytes(type));
        offloadedBytes += double(tensorBytes(type));
        // After the last forward use (or the definition), before the first
        // backward one.
        Operation *lastForward = v.getDefiningOp();
        for (Operation *u : v.getUsers())
          if (!isBackward(u) && position[u] > position[lastForward])
            lastForward = u;
        Operation *first = firstBackwardUser(v);
        auto hostType = RankedTensorType::get(type.getShape(), type.getElementType(),
                                              MemorySpaceAttr::get(&getContext(), MemorySpace::host));
        b.setInsertionPointAfter(lastForward);
        auto off = b.create<OffloadOp>(v.getLoc(), hostType, v);
        position[off] = position[lastForward];
        b.setInsertionPoint(first);
        auto back = b.create<ReloadOp>(v.getLoc(), type, off.getResult());
        position[back] = position[first];
        replaceBackwardUses(v, back.getResult());
        ++offloaded;
      }
    }
    if (layers)
      fn->setAttr("trl.recomputed_layers", b.getI64IntegerAttr(layerCount));
    fn->setAttr("trl.recomputed_values", b.getI64IntegerAttr(recomputed));
    fn->setAttr("trl.offloaded_values", b.getI64IntegerAttr(offloaded));
    fn->setAttr("trl.remat_overhead_s", b.getF64FloatAttr(overhead));
    // What the decisions cost per step on any profile: FLOPs recomputed,
    // bytes copied each way.
    fn->setAttr("trl.recomputed_flops", b.getF64FloatAttr(recomputedFlops));
    fn->setAttr("trl.offloaded_bytes", b.getF64FloatAttr(offloadedBytes));
  }
};

} // namespace
