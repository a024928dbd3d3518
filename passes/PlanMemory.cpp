//===- PlanMemory.cpp - trl-plan-memory: every buffer's place -------------===//
//
// The last pass: decides where every value of every step function lives,
// over the final linear schedule (block order; the state updates the
// runtime appends read the returned values at the end).
//  - A result returned as persistent state (`trl.state` of the function's
//    results) is written in place into that state when the op may (add,
//    adamw, fill, cache_write, all_gather, a linear_grad accumulating into
//    it) and nothing later reads the old state: `trl.in_place = ["KEY" |
//    ""]` on the op.
//  - A fill returned only into states needs no buffer (`trl.no_buffer`).
//  - Views (`trl.reshape`, `trl.flat_view`) share their source's buffer.
//  - An elementwise op (add, div, swiglu, gelu, their gradients, dropout)
//    writes a result into the buffer of an operand of the same size that
//    nothing reads after it (the runtime's contract allows exactly these
//    in place): the gradient chains of the backward reuse one buffer.
//  - Every other value (batch inputs included) is an activation, live
//    from its definition (inputs: the start) to its last use (returned
//    values: the end). Activations are placed largest first at the lowest
//    `alignment`-aligned offset that overlaps no placed activation with an
//    overlapping lifetime (best fit with lifetime-aware reuse), device and
//    host (#trl.space<host>, offloaded) values in separate regions:
//    `trl.offsets` on each op (one per result, -1: no buffer of its own),
//    `trl.offset` on each input argument, and `trl.activation_bytes` /
//    `trl.host_bytes` on the function.
// Lowering turns these into the plan's arena and host pool as they are.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

#include <map>

namespace mlir::trl {
#define GEN_PASS_DEF_TRLPLANMEMORY
#include "passes/Passes.h.inc"
} // namespace mlir::trl

using namespace mlir;
using namespace mlir::trl;

namespace {

struct PlanMemory : mlir::trl::impl::TrlPlanMemoryBase<PlanMemory> {
  using TrlPlanMemoryBase::TrlPlanMemoryBase;

  void runOnOperation() override {
    if (alignment <= 0 || (alignment & (alignment - 1))) {
      getOperation().emitError("trl-plan-memory: alignment must be a power of two");
      return signalPassFailure();
    }
    for (auto fn : getOperation().getOps<func::FuncOp>())
      plan(fn);
  }

  int64_t alignUp(int64_t n) const { return (n + alignment - 1) / alignment * alignment; }

  void plan(func::FuncOp fn) {
    OpBuilder b(&getContext());
    auto ret = cast<func::ReturnOp>(fn.front().getTerminator());
    DenseMap<Operation *, int> position;
    int pos = 0;
    for (Operation &op : fn.front())
      position[&op] = pos++;
    const int end = pos;  // the appended state updates

    // In-place state updates.
    std::map<std::string, Value> stateValue;  // key -> value before the update
    for (unsigned i = 0; i < fn.getNumArguments(); ++i)
      if (auto s = fn.getArgAttrOfType<StringAttr>(i, "trl.state"))
        stateValue[s.str()] = fn.getArgument(i);
    fn.walk([&](ParamOp p) {
      if (p.getSet() == "policy")
        stateValue["param:" + p.getName().str()] = p.getResult();
    });
    DenseMap<Value, int> returnCount;
    for (Value v : ret.getOperands())
      ++returnCount[v];
    DenseMap<Value, StringAttr> inPlace;
    for (unsigned i = 0; i < ret.getNumOperands(); ++i) {
      auto s = fn.getResultAttrOfType<StringAttr>(i, "trl.state");
      if (!s)
        continue;
      Value v = ret.getOperand(i);
      Operation *def = v.getDefiningOp();
      if (!def || returnCount[v] != 1)
        continue;
      if (!isa<AddOp, AdamWOp, FillOp, CacheWriteOp, AllGatherOp>(def)) {
        auto lg = dyn_cast<LinearGradOp>(def);
        if (!lg || v != lg.getGradWeight() || !lg.getAccumulate())
          continue;
      }
      Value before = stateValue.count(s.str()) ? stateValue[s.str()] : Value();
      bool laterUse = before && llvm::any_of(before.getUsers(), [&](Operation *u) {
        return u != ret && position[u] > position[def];
      });
      if (!laterUse)
        inPlace[v] = s;
    }

    // Buffers: one per activation value; views join their source's.
    DenseMap<Value, Value> rootOf;
    DenseMap<Value, int64_t> viewBytes;  // a view's bytes into its root
    auto root = [&](Value v) {
      auto it = rootOf.find(v);
      return it == rootOf.end() ? v : it->second;
    };
    struct Buffer {
      Value value;
      int64_t bytes;
      bool host;
      int first, last;
      int64_t offset = -1;
    };
    std::vector<Buffer> buffers;
    DenseMap<Value, size_t> bufferOf;
    auto addBuffer = [&](Value v, int first) {
      auto type = cast<RankedTensorType>(v.getType());
      bufferOf[v] = buffers.size();
      buffers.push_back({v, alignUp(std::max<int64_t>(tensorBytes(type), 1)), isHostTensor(type),
                         first, first});
    };
    for (unsigned i = 0; i < fn.getNumArguments(); ++i)
      if (fn.getArgAttr(i, "trl.input"))
        addBuffer(fn.getArgument(i), -1);
    DenseSet<Value> noBuffer;
    // Each value's own last use, for the in-place elementwise results.
    DenseMap<Value, int> lastUse;
    for (Operation &op : fn.front())
      for (Value v : op.getOperands())
        lastUse[v] = std::max(lastUse.lookup(v), &op == ret.getOperation() ? end : position[&op]);
    DenseMap<Value, int> rootLast;  // over the root's views and in-place results
    auto extend = [&](Value v) {
      Value r = root(v);
      rootLast[r] = std::max(rootLast.lookup(r), lastUse.lookup(v));
    };
    for (Operation &op : fn.front().without_terminator()) {
      if (isa<ParamOp>(op))
        continue;
      if (isa<AddOp, DivOp, SwigluOp, SwigluGradOp, GeluOp, GeluGradOp, DropoutOp>(op)) {
        DenseSet<Value> taken;
        for (Value r : op.getResults()) {
          if (inPlace.count(r) || !isa<RankedTensorType>(r.getType()))
            continue;
          int64_t bytes = alignUp(tensorBytes(cast<RankedTensorType>(r.getType())));
          for (Value in : op.getOperands()) {
            Value from = root(in);
            auto it = bufferOf.find(from);
            if (it == bufferOf.end() || taken.count(from) || isa<BlockArgument>(from) ||
                viewBytes.lookup(in) != 0 || buffers[it->second].bytes != bytes ||
                buffers[it->second].host != isHostTensor(cast<RankedTensorType>(r.getType())) ||
                rootLast.lookup(from) != position[&op])
              continue;
            taken.insert(from);
            rootOf[r] = from;
            extend(r);
            break;
          }
        }
        for (Value r : op.getResults())
          if (!inPlace.count(r) && !rootOf.count(r)) {
            addBuffer(r, position[&op]);
            extend(r);
          }
        continue;
      }
      if (auto r = dyn_cast<ReshapeOp>(op)) {
        rootOf[r.getResult()] = root(r.getX());
        viewBytes[r.getResult()] = viewBytes.lookup(r.getX());
        extend(r.getResult());
        continue;
      }
      if (auto v = dyn_cast<FlatViewOp>(op)) {
        rootOf[v.getResult()] = root(v.getX());
        viewBytes[v.getResult()] =
            viewBytes.lookup(v.getX()) +
            tensorBytes(RankedTensorType::get({v.getOffset()}, v.getType().getElementType()));
        extend(v.getResult());
        continue;
      }
      if (auto f = dyn_cast<FillOp>(op)) {
        bool onlyStates = returnCount.lookup(f.getResult()) > 1;
        for (OpOperand &use : f->getUses())
          onlyStates &= use.getOwner() == ret &&
                        fn.getResultAttr(use.getOperandNumber(), "trl.state");
        if (onlyStates) {
          noBuffer.insert(f.getResult());
          continue;
        }
      }
      for (Value r : op.getResults())
        if (!inPlace.count(r)) {
          addBuffer(r, position[&op]);
          extend(r);
        }
    }
    auto touch = [&](Value v, int at) {
      auto it = bufferOf.find(root(v));
      if (it == bufferOf.end())
        return;
      Buffer &buf = buffers[it->second];
      buf.first = std::min(buf.first, at);
      buf.last = std::max(buf.last, at);
    };
    for (Operation &op : fn.front())
      for (Value v : op.getOperands())
        touch(v, &op == ret.getOperation() ? end : position[&op]);

    // Largest first, lowest fitting offset, per region.
    int64_t regionBytes[2] = {0, 0};
    std::vector<size_t> order(buffers.size());
    for (size_t i = 0; i < order.size(); ++i)
      order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t c) { return buffers[a].bytes > buffers[c].bytes; });
    std::vector<size_t> placed;
    for (size_t i : order) {
      Buffer &buf = buffers[i];
      std::vector<std::pair<int64_t, int64_t>> busy;
      for (size_t j : placed) {
        const Buffer &p = buffers[j];
        if (p.host == buf.host && p.first <= buf.last && buf.first <= p.last)
          busy.push_back({p.offset, p.offset + p.bytes});
      }
      std::sort(busy.begin(), busy.end());
      int64_t offset = 0;
      for (auto [lo, hi] : busy) {
        if (offset + buf.bytes <= lo)
          break;
        offset = std::max(offset, hi);
      }
      buf.offset = offset;
      placed.push_back(i);
      regionBytes[buf.host] = std::max(regionBytes[buf.host], offset + buf.bytes);
    }

    // Record.
    auto offsetOf = [&](Value v) -> int64_t {
      if (noBuffer.count(v) || inPlace.count(v))
        return -1;
      auto it = bufferOf.find(root(v));
      return it == bufferOf.end() ? -1 : buffers[it->second].offset + viewBytes.lookup(v);
    };
    for (unsigned i = 0; i < fn.getNumArguments(); ++i)
      if (fn.getArgAttr(i, "trl.input"))
        fn.setArgAttr(i, "trl.offset", b.getI64IntegerAttr(offsetOf(fn.getArgument(i))));
    for (Operation &op : fn.front().without_terminator()) {
      if (isa<ParamOp>(op))
        continue;
      SmallVector<int64_t> offsets;
      SmallVector<Attribute> states;
      bool anyInPlace = false;
      for (Value r : op.getResults()) {
        offsets.push_back(offsetOf(r));
        StringAttr key = inPlace.lookup(r);
        anyInPlace |= bool(key);
        states.push_back(key ? key : b.getStringAttr(""));
      }
      op.setAttr("trl.offsets", b.getDenseI64ArrayAttr(offsets));
      if (anyInPlace)
        op.setAttr("trl.in_place", b.getArrayAttr(states));
      if (noBuffer.count(op.getNumResults() ? op.getResult(0) : Value()))
        op.setAttr("trl.no_buffer", b.getUnitAttr());
    }
    fn->setAttr("trl.activation_bytes", b.getI64IntegerAttr(regionBytes[0]));
    fn->setAttr("trl.host_bytes", b.getI64IntegerAttr(regionBytes[1]));
  }
};

} // namespace
