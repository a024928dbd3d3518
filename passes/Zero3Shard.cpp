//===- Zero3Shard.cpp - trl-zero3-shard: ZeRO-3 over the data-parallel ranks ===//
//
// Parameters, gradients and AdamW moments of each layer live as one flat
// shard per rank; gathers rebuild a layer right before it is used and the
// planner frees it after. See Passes.td for the contract.
//
//===----------------------------------------------------------------------===//

#include "passes/OptimizerStep.h"
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

#include <map>
#include <set>

namespace mlir::trl {
#define GEN_PASS_DEF_TRLZERO3SHARD
#include "passes/Passes.h.inc"
} // namespace mlir::trl

using namespace mlir;
using namespace mlir::trl;

namespace {

struct Member {
  std::string name;
  RankedTensorType type;
  bool hfTransposed;
  int64_t offset;  // elements into the group's flat buffer
};

struct Group {
  std::string name;  // "model.layers.3", "model.layers.3/no_decay", ...
  bool decay;        // matrices; vectors (norms, biases) are not decayed
  std::vector<Member> members;
  int64_t numel = 0, shard = 0;
  std::string key() const { return zeroShardParamName(name); }
};

/// The group of a parameter: its name up to the first all-digit component
/// (the layer index), else its module (the name without the last part).
std::string groupPrefix(const std::string &name) {
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    std::string part = name.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!part.empty() && std::all_of(part.begin(), part.end(), ::isdigit))
      return name.substr(0, dot == std::string::npos ? name.size() : dot);
    if (dot == std::string::npos)
      break;
    start = dot + 1;
  }
  size_t last = name.rfind('.');
  return last == std::string::npos ? name : name.substr(0, last);
}

bool isSharded(ParamOp p) { return p.getSet() == "policy" && p.getTrainable(); }

struct Zero3Shard : mlir::trl::impl::TrlZero3ShardBase<Zero3Shard> {
  using TrlZero3ShardBase::TrlZero3ShardBase;

  std::vector<Group> groups;
  std::map<std::string, std::pair<size_t, size_t>> where;  // param -> (group, member)

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (stage == 0)
      return;
    if (stage != 3) {
      module.emitError("trl-zero3-shard: ZeRO stage ") << stage.getValue()
          << " is not implemented (use 0 or 3)";
      return signalPassFailure();
    }
    if (worldSize < 1) {
      module.emitError("trl-zero3-shard: world-size must be at least 1");
      return signalPassFailure();
    }
    auto step = module.lookupSymbol<func::FuncOp>("train_step");
    auto opt = module.lookupSymbol<func::FuncOp>("optimizer_step");
    if (!step || !opt) {
      module.emitError("trl-zero3-shard needs @train_step and @optimizer_step "
                       "(run trl-optimizer first)");
      return signalPassFailure();
    }
    if (module->hasAttr("trl.zero")) {
      module.emitError("trl-zero3-shard ran twice (the module has trl.zero)");
      return signalPassFailure();
    }
    formGroups(step);
    if (groups.empty())
      return;
    SmallVector<func::FuncOp> generation;
    for (auto fn : llvm::to_vector(module.getOps<func::FuncOp>())) {
      if (fn == opt)
        continue;
      if (gatherForGeneration && fn->hasAttr("trl.generation"))
        generation.push_back(fn);
      else if (failed(gatherParams(fn, fn == step)))
        return signalPassFailure();
    }
    if (!generation.empty() && failed(readGathered(module, generation)))
      return signalPassFailure();
    if (failed(scatterGradients(step)) || failed(rebuildOptimizer(module, opt)))
      return signalPassFailure();
    recordLayout(module);
  }

  void formGroups(func::FuncOp step) {
    std::map<std::string, size_t> index;
    step.walk([&](ParamOp p) {
      if (!isSharded(p) || where.count(p.getName().str()))
        return;
      auto type = cast<RankedTensorType>(p.getType());
      bool decay = type.getRank() >= 2;
      std::string name = groupPrefix(p.getName().str()) + (decay ? "" : "/no_decay");
      auto [it, fresh] = index.insert({name, groups.size()});
      if (fresh)
        groups.push_back({name, decay, {}});
      Group &g = groups[it->second];
      where[p.getName().str()] = {it->second, g.members.size()};
      // Members start on 64-byte boundaries (16 elements): every view is
      // as aligned as a buffer of its own.
      int64_t offset = (g.numel + 15) / 16 * 16;
      g.members.push_back({p.getName().str(), type, p.getHfTransposed(), offset});
      g.numel = offset + type.getNumElements();
    });
    for (Group &g : groups)
      g.shard = (g.numel + worldSize - 1) / worldSize;
  }

  RankedTensorType shardType(const Group &g) {
    return RankedTensorType::get({g.shard}, g.members.front().type.getElementType());
  }

  /// Replaces the parameter reads of `fn` with gathers and views: one
  /// gather per group and phase (forward; backward, after the loss).
  LogicalResult gatherParams(func::FuncOp fn, bool isStep) {
    Block &block = fn.front();
    DenseMap<Operation *, int> pos;
    int n = 0;
    for (Operation &op : block)
      pos[&op] = n++;
    int boundary = n;
    if (isStep) {
      auto ret = cast<func::ReturnOp>(block.getTerminator());
      for (unsigned i = 0; i < fn.getNumResults(); ++i) {
        auto out = fn.getResultAttrOfType<StringAttr>(i, "trl.output");
        if (out && out.getValue() == "loss")
          if (Operation *def = ret.getOperand(i).getDefiningOp())
            boundary = pos[def];
      }
    }
    // Uses per (group, phase), in program order.
    struct Cluster {
      size_t group;
      int phase;
      int first = INT_MAX;
      std::vector<OpOperand *> uses;
    };
    std::map<std::pair<size_t, int>, Cluster> clusters;
    SmallVector<ParamOp> reads;
    for (Operation &op : block) {
      auto p = dyn_cast<ParamOp>(op);
      if (!p || p.getSet() != "policy" || !where.count(p.getName().str()))
        continue;
      reads.push_back(p);
      size_t g = where[p.getName().str()].first;
      for (OpOperand &use : p->getUses()) {
        Operation *owner = block.findAncestorOpInBlock(*use.getOwner());
        if (!owner)
          return fn.emitOpError("trl-zero3-shard: a use of parameter ")
                 << p.getName() << " is outside the function body";
        int phase = pos[owner] > boundary ? 1 : 0;
        Cluster &c = clusters[{g, phase}];
        c.group = g;
        c.phase = phase;
        c.first = std::min(c.first, pos[owner]);
        c.uses.push_back(&use);
      }
    }
    if (reads.empty())
      return success();
    std::vector<Operation *> opAt(n);
    for (Operation &op : block)
      opAt[pos[&op]] = &op;

    OpBuilder b(fn.getContext());
    b.setInsertionPointToStart(&block);
    std::map<size_t, Value> shardOf;
    for (auto &[key, c] : clusters)
      if (!shardOf.count(c.group)) {
        const Group &g = groups[c.group];
        shardOf[c.group] = b.create<ParamOp>(fn.getLoc(), shardType(g), b.getStringAttr(g.key()),
                                             b.getBoolAttr(true), b.getStringAttr("policy"),
                                             UnitAttr());
      }
    for (int phase = 0; phase < 2; ++phase) {
      std::vector<Cluster *> order;
      for (auto &[key, c] : clusters)
        if (c.phase == phase)
          order.push_back(&c);
      std::stable_sort(order.begin(), order.end(),
                       [](Cluster *a, Cluster *c) { return a->first < c->first; });
      for (size_t k = 0; k < order.size(); ++k) {
        Cluster &c = *order[k];
        const Group &g = groups[c.group];
        // Prefetch: issued before the previous group's first use.
        int at = prefetch && k > 0 ? order[k - 1]->first : c.first;
        b.setInsertionPoint(opAt[at]);
        auto fullType = RankedTensorType::get({g.shard * worldSize}, shardType(g).getElementType());
        auto gather = b.create<AllGatherOp>(fn.getLoc(), fullType, shardOf[c.group],
                                            b.getI64IntegerAttr(worldSize));
        gather->setAttr("group", b.getStringAttr(g.name));
        // Also keeps CSE from merging the backward gather into the forward one.
        gather->setAttr("phase", b.getStringAttr(phase ? "backward" : "forward"));
        if (prefetch && k > 0)
          gather->setAttr("prefetch", b.getUnitAttr());
        std::map<std::string, Value> view;
        for (OpOperand *use : c.uses) {
          auto p = cast<ParamOp>(use->get().getDefiningOp());
          std::string name = p.getName().str();
          if (!view.count(name)) {
            const Member &m = g.members[where[name].second];
            view[name] = b.create<FlatViewOp>(fn.getLoc(), m.type, gather.getResult(),
                                              b.getI64IntegerAttr(m.offset));
          }
          use->set(view[name]);
        }
      }
    }
    for (ParamOp p : reads)
      if (p->use_empty())
        p.erase();
    // A read this pass did not see (inside a region) would train a stale
    // replicated copy: refuse instead.
    WalkResult left = fn.walk([&](ParamOp p) {
      if (p.getSet() == "policy" && where.count(p.getName().str()))
        return WalkResult::interrupt();
      return WalkResult::advance();
    });
    if (left.wasInterrupted())
      return fn.emitOpError("trl-zero3-shard: a parameter read inside a region is not "
                            "supported");
    return success();
  }

  /// ds3_gather_for_generation: @gather_model gathers every group the
  /// generation programs read into state "gathered:GROUP", once per
  /// generation; they read views of it.
  LogicalResult readGathered(ModuleOp module, MutableArrayRef<func::FuncOp> fns) {
    OpBuilder b(module.getContext());
    std::set<size_t> used;
    for (func::FuncOp fn : fns) {
      SmallVector<ParamOp> reads;
      WalkResult nested = fn.walk([&](ParamOp p) {
        if (p.getSet() != "policy" || !where.count(p.getName().str()))
          return WalkResult::advance();
        if (p->getBlock() != &fn.front())
          return WalkResult::interrupt();
        reads.push_back(p);
        return WalkResult::advance();
      });
      if (nested.wasInterrupted())
        return fn.emitOpError("trl-zero3-shard: a parameter read inside a region is not "
                              "supported");
      std::map<size_t, Value> full;
      for (ParamOp p : reads) {
        auto [gi, mi] = where[p.getName().str()];
        const Group &g = groups[gi];
        if (!full.count(gi)) {
          unsigned arg = fn.getNumArguments();
          fn.insertArgument(arg, gatheredType(g), b.getDictionaryAttr({}), fn.getLoc());
          fn.setArgAttr(arg, "trl.state", b.getStringAttr(gatheredKey(g)));
          full[gi] = fn.getArgument(arg);
          used.insert(gi);
        }
        const Member &m = g.members[mi];
        b.setInsertionPoint(p);
        Value view = b.create<FlatViewOp>(p.getLoc(), m.type, full[gi],
                                          b.getI64IntegerAttr(m.offset));
        p.getResult().replaceAllUsesWith(view);
        p.erase();
      }
    }
    if (used.empty())
      return success();
    if (module.lookupSymbol("gather_model"))
      return module.emitError("trl-zero3-shard: the module already has @gather_model");
    Location loc = fns.front()->getLoc();
    b.setInsertionPointToEnd(module.getBody());
    auto fn = b.create<func::FuncOp>(loc, "gather_model", b.getFunctionType({}, {}));
    Block *entry = fn.addEntryBlock();
    b.setInsertionPointToStart(entry);
    SmallVector<Value> results;
    for (size_t gi : used) {
      const Group &g = groups[gi];
      Value shard = b.create<ParamOp>(loc, shardType(g), b.getStringAttr(g.key()),
                                      b.getBoolAttr(true), b.getStringAttr("policy"), UnitAttr());
      auto gather = b.create<AllGatherOp>(loc, gatheredType(g), shard,
                                          b.getI64IntegerAttr(worldSize));
      gather->setAttr("group", b.getStringAttr(g.name));
      gather->setAttr("phase", b.getStringAttr("generation"));
      results.push_back(gather.getResult());
    }
    b.create<func::ReturnOp>(loc, results);
    fn.setType(b.getFunctionType({}, ValueRange(results).getTypes()));
    unsigned i = 0;
    for (size_t gi : used)
      fn.setResultAttr(i++, "trl.state", b.getStringAttr(gatheredKey(groups[gi])));
    fn->setAttr("trl.generation", b.getUnitAttr());
    return success();
  }

  RankedTensorType gatheredType(const Group &g) {
    return RankedTensorType::get({g.shard * worldSize}, shardType(g).getElementType());
  }
  static std::string gatheredKey(const Group &g) { return "gathered:" + g.name; }

  /// Every micro-batch: pack a group's gradients, reduce-scatter them and
  /// add this rank's part to the shard accumulator.
  LogicalResult scatterGradients(func::FuncOp fn) {
    Block &block = fn.front();
    auto ret = cast<func::ReturnOp>(block.getTerminator());
    std::vector<std::vector<Value>> raw(groups.size());
    for (size_t gi = 0; gi < groups.size(); ++gi)
      raw[gi].resize(groups[gi].members.size());
    llvm::BitVector dropResult(fn.getNumResults()), dropArg(fn.getNumArguments());
    SmallVector<Operation *> dead;
    for (unsigned i = 0; i < fn.getNumResults(); ++i) {
      auto s = fn.getResultAttrOfType<StringAttr>(i, "trl.state");
      if (!s || !s.getValue().starts_with("grad:"))
        continue;
      std::string name = s.getValue().substr(5).str();
      auto it = where.find(name);
      if (it == where.end())
        continue;
      Value v = ret.getOperand(i);
      Value g;
      if (auto add = v.getDefiningOp<AddOp>(); add && isa<BlockArgument>(add.getLhs())) {
        g = add.getRhs();
        dead.push_back(add);
      } else if (auto lg = v.getDefiningOp<LinearGradOp>(); lg && lg.getAccumulate()) {
        lg.getAccumulateMutable().clear();
        g = v;
      } else {
        return fn.emitOpError("trl-zero3-shard: cannot find the micro-batch gradient of ")
               << name;
      }
      raw[it->second.first][it->second.second] = g;
      dropResult.set(i);
    }
    for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
      auto s = fn.getArgAttrOfType<StringAttr>(i, "trl.state");
      if (s && s.getValue().starts_with("grad:") && where.count(s.getValue().substr(5).str()))
        dropArg.set(i);
    }

    OpBuilder b(fn.getContext());
    SmallVector<Value> results;
    SmallVector<DictionaryAttr> attrs;
    for (unsigned i = 0; i < fn.getNumResults(); ++i)
      if (!dropResult.test(i)) {
        results.push_back(ret.getOperand(i));
        attrs.push_back(fn.getResultAttrDict(i));
      }
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      const Group &g = groups[gi];
      Operation *last = nullptr;
      for (size_t m = 0; m < g.members.size(); ++m) {
        Value v = raw[gi][m];
        if (!v)
          return fn.emitOpError("trl-zero3-shard: parameter ")
                 << g.members[m].name << " has no gradient";
        Operation *def = v.getDefiningOp();
        if (def && (!last || last->isBeforeInBlock(def)))
          last = def;
      }
      if (last)
        b.setInsertionPointAfter(last);
      else
        b.setInsertionPointToStart(&block);
      Type elem = g.members.front().type.getElementType();
      SmallVector<int64_t> offsets;
      for (const Member &m : g.members)
        offsets.push_back(m.offset);
      auto flat = b.create<PackFlatOp>(
          fn.getLoc(), RankedTensorType::get({g.shard * worldSize}, elem), raw[gi],
          b.getDenseI64ArrayAttr(offsets));
      auto part = b.create<ReduceScatterOp>(fn.getLoc(), shardType(g), flat.getResult(),
                                            b.getI64IntegerAttr(worldSize),
                                            ReduceKindAttr::get(b.getContext(), ReduceKind::sum));
      part->setAttr("group", b.getStringAttr(g.name));
      unsigned arg = fn.getNumArguments();
      fn.insertArgument(arg, shardType(g), b.getDictionaryAttr({}), fn.getLoc());
      fn.setArgAttr(arg, "trl.state", b.getStringAttr("grad:" + g.key()));
      dropArg.resize(arg + 1);
      Value acc = b.create<AddOp>(fn.getLoc(), fn.getArgument(arg), part.getResult());
      results.push_back(acc);
      attrs.push_back(b.getDictionaryAttr(
          b.getNamedAttr("trl.state", b.getStringAttr("grad:" + g.key()))));
    }
    ret->setOperands(results);
    for (Operation *op : dead)
      if (op->use_empty())
        op->erase();
    fn.setType(b.getFunctionType(fn.getArgumentTypes(), ValueRange(results).getTypes()));
    fn.setAllResultAttrs(attrs);
    fn.eraseArguments(dropArg);
    return success();
  }

  /// @optimizer_step over the shards: the global norm sums every rank's
  /// squares; each rank updates only its part.
  LogicalResult rebuildOptimizer(ModuleOp module, func::FuncOp old) {
    LrScheduleOp lrOld;
    double decay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, maxNorm = 0;
    old.walk([&](Operation *op) {
      if (auto l = dyn_cast<LrScheduleOp>(op))
        lrOld = l;
      if (auto a = dyn_cast<AdamWOp>(op)) {
        decay = std::max(decay, a.getWeightDecay().convertToDouble());
        beta1 = a.getBeta1().convertToDouble();
        beta2 = a.getBeta2().convertToDouble();
        eps = a.getEps().convertToDouble();
        maxNorm = a.getMaxGradNorm().convertToDouble();
      }
    });
    if (!lrOld)
      return old.emitOpError("trl-zero3-shard: no learning-rate schedule to keep");
    OpBuilder b(module.getContext());
    Location loc = old.getLoc();
    b.setInsertionPoint(old);
    OptimizerStepBuilder opt(b, loc);
    for (const Group &grp : groups)
      opt.addTensor(grp.key(), shardType(grp));
    b.setInsertionPointToStart(opt.entry);
    auto f32 = RankedTensorType::get({}, b.getF32Type());
    auto squares = b.create<GradNormOp>(loc, f32, opt.grads, b.getUnitAttr());
    auto total = b.create<AllReduceOp>(loc, f32, squares.getResult(),
                                       b.getI64IntegerAttr(worldSize),
                                       ReduceKindAttr::get(b.getContext(), ReduceKind::sum));
    Value norm = b.create<SqrtOp>(loc, total.getResult());
    Value lr = b.create<LrScheduleOp>(loc, f32, opt.step, lrOld.getScheduleAttr(),
                                      lrOld.getBaseLrAttr(), lrOld.getWarmupStepsAttr(),
                                      lrOld.getTotalStepsAttr());
    for (auto [i, grp] : llvm::enumerate(groups)) {
      Value w = b.create<ParamOp>(loc, shardType(grp), b.getStringAttr(grp.key()),
                                  b.getBoolAttr(true), b.getStringAttr("policy"), UnitAttr());
      opt.update(i, w, lr, norm, maxNorm, beta1, beta2, eps, grp.decay ? decay : 0.0);
    }
    opt.finish(norm, lr);
    old.erase();
    return success();
  }

  /// `trl.zero`: what the runtime needs to load, save and consolidate.
  void recordLayout(ModuleOp module) {
    Builder b(module.getContext());
    SmallVector<Attribute> list;
    for (const Group &g : groups) {
      SmallVector<Attribute> members;
      for (const Member &m : g.members)
        members.push_back(b.getDictionaryAttr({
            b.getNamedAttr("name", b.getStringAttr(m.name)),
            b.getNamedAttr("offset", b.getI64IntegerAttr(m.offset)),
            b.getNamedAttr("shape", b.getDenseI64ArrayAttr(m.type.getShape())),
            b.getNamedAttr("hf_transposed", b.getBoolAttr(m.hfTransposed)),
        }));
      list.push_back(b.getDictionaryAttr({
          b.getNamedAttr("name", b.getStringAttr(g.name)),
          b.getNamedAttr("numel", b.getI64IntegerAttr(g.numel)),
          b.getNamedAttr("shard", b.getI64IntegerAttr(g.shard)),
          b.getNamedAttr("members", b.getArrayAttr(members)),
      }));
    }
    module->setAttr("trl.zero", b.getDictionaryAttr({
                                    b.getNamedAttr("stage", b.getI64IntegerAttr(stage)),
                                    b.getNamedAttr("world_size", b.getI64IntegerAttr(worldSize)),
                                    b.getNamedAttr("groups", b.getArrayAttr(list)),
                                }));
  }
};

} // namespace
