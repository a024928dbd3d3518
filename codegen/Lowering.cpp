//===- Lowering.cpp - trl module to the runtime's executable plan ---------===//

#include "codegen/Lowering.h"
#include "dialect/TrlDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::trl;

namespace trlc {
namespace {

constexpr int64_t kAlign = 64;

int64_t alignUp(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::optional<artifact::DType> dtypeOf(Type t) {
  using artifact::DType;
  Type e = cast<RankedTensorType>(t).getElementType();
  if (e.isF32()) return DType::F32;
  if (e.isF64()) return DType::F64;
  if (e.isInteger(64)) return DType::I64;
  if (e.isInteger(32)) return DType::I32;
  if (e.isInteger(1)) return DType::Bool;
  return std::nullopt;
}

/// An attribute as plain JSON: numbers, booleans, strings; enum attributes
/// by their keyword; the RoPE scaling attribute as an object.
nlohmann::json attrToJson(Attribute a) {
  if (auto b = dyn_cast<BoolAttr>(a)) return b.getValue();
  if (auto i = dyn_cast<IntegerAttr>(a)) return i.getValue().getSExtValue();
  if (auto f = dyn_cast<FloatAttr>(a)) return f.getValueAsDouble();
  if (auto s = dyn_cast<StringAttr>(a)) return s.getValue().str();
  if (isa<UnitAttr>(a)) return true;
  if (auto r = dyn_cast<RopeScalingAttr>(a))
    return {{"factor", r.getFactor().getValueAsDouble()},
            {"low_freq_factor", r.getLowFreqFactor().getValueAsDouble()},
            {"high_freq_factor", r.getHighFreqFactor().getValueAsDouble()},
            {"original_max_position_embeddings",
             r.getOriginalMaxPositionEmbeddings()}};
  // Enum attributes print as #trl.NAME<keyword>.
  std::string text;
  llvm::raw_string_ostream os(text);
  a.print(os);
  os.flush();
  auto lt = text.find('<'), gt = text.rfind('>');
  if (lt != std::string::npos && gt != std::string::npos && gt > lt)
    return text.substr(lt + 1, gt - lt - 1);
  return text;
}

class Lowerer {
public:
  Expected<artifact::Plan> run(ModuleOp module);

private:
  int newTensor(Type type, int64_t offset = -1) {
    artifact::TensorDesc d;
    auto rt = cast<RankedTensorType>(type);
    d.shape.assign(rt.getShape().begin(), rt.getShape().end());
    d.dtype = *dtypeOf(type);
    d.offset = offset;
    plan.tensors.push_back(d);
    root.push_back(static_cast<int>(plan.tensors.size()) - 1);
    return static_cast<int>(plan.tensors.size()) - 1;
  }

  /// Persistent state tensor for a key such as "grad:NAME".
  int state(const std::string &key, Type type) {
    auto it = states.find(key);
    if (it != states.end())
      return it->second;
    int t = newTensor(type, stateBytes);
    stateBytes += alignUp(plan.tensors[t].bytes());
    states[key] = t;
    return t;
  }

  artifact::ParamDesc &param(ParamOp op) {
    std::string key = op.getSet().str() + ":" + op.getName().str();
    auto it = paramIndex.find(key);
    if (it != paramIndex.end())
      return plan.params[it->second];
    artifact::ParamDesc d;
    d.name = op.getName().str();
    d.set = op.getSet().str();
    d.trainable = op.getTrainable();
    d.hfTransposed = op.getHfTransposed();
    d.tensor = state("param@" + key, op.getType());
    paramIndex[key] = plan.params.size();
    plan.params.push_back(d);
    return plan.params.back();
  }

  std::optional<Error> lowerFunction(func::FuncOp fn);
  void placeActivations(artifact::Program &prog, const std::vector<int> &programTensors,
                        int64_t &regionBytes,
                        std::vector<std::pair<int, int64_t>> &offsets);

  artifact::Plan plan;
  std::vector<int> root;  // view -> the tensor that owns the bytes
  std::map<std::string, int> states;
  std::map<std::string, size_t> paramIndex;
  int64_t stateBytes = 0;
  int64_t activationBytes = 0;  // max over programs
  std::vector<std::pair<int, int64_t>> pendingOffsets;  // (tensor, region offset)
  int64_t hostBytes = 0;  // the host pool, max over programs
  std::vector<std::pair<int, int64_t>> pendingHostOffsets;
};

std::optional<Error> Lowerer::lowerFunction(func::FuncOp fn) {
  artifact::Program prog;
  DenseMap<Value, int> tensorOf;
  std::vector<int> programTensors;  // activations owned by this program
  std::vector<int> hostTensors;     // offloaded activations (host pool)
  auto activation = [&](Type type) {
    int t = newTensor(type);
    if (isHostTensor(type)) {
      plan.tensors[t].host = true;
      hostTensors.push_back(t);
    } else {
      programTensors.push_back(t);
    }
    return t;
  };
  auto internal = [&](Operation *op, const std::string &msg) {
    std::string text;
    llvm::raw_string_ostream os(text);
    os << "internal error: cannot lower '" << op->getName() << "' in @"
       << fn.getSymName() << ": " << msg;
    return Error{os.str()};
  };

  // Results returned as persistent state: where possible the op that
  // computes them writes the state tensor in place.
  auto ret = cast<func::ReturnOp>(fn.front().getTerminator());
  std::map<std::string, Value> stateValue;  // state key -> value before the update
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
    BlockArgument arg = fn.getArgument(i);
    if (auto s = fn.getArgAttrOfType<StringAttr>(i, "trl.state")) {
      tensorOf[arg] = state(s.str(), arg.getType());
      stateValue[s.str()] = arg;
    } else if (auto n = fn.getArgAttrOfType<StringAttr>(i, "trl.input")) {
      int t = activation(arg.getType());
      tensorOf[arg] = t;
      prog.inputs[n.str()] = t;
    } else {
      return internal(fn, "argument " + std::to_string(i) +
                              " is neither a trl.input nor trl.state");
    }
  }
  fn.walk([&](ParamOp p) {
    if (p.getSet() == "policy")
      stateValue["param:" + p.getName().str()] = p.getResult();
  });
  DenseMap<Operation *, unsigned> position;
  unsigned pos = 0;
  for (Operation &op : fn.front())
    position[&op] = pos++;
  DenseMap<Value, int> inPlace;  // value -> state tensor it is written into
  DenseMap<Value, int> returnCount;
  for (Value v : ret.getOperands())
    ++returnCount[v];
  for (unsigned i = 0; i < ret.getNumOperands(); ++i) {
    auto s = fn.getResultAttrOfType<StringAttr>(i, "trl.state");
    if (!s)
      continue;
    Value v = ret.getOperand(i);
    Operation *def = v.getDefiningOp();
    if (!def || returnCount[v] != 1 || !isa<AddOp, AdamWOp, FillOp>(def)) {
      // linear_grad accumulating into this state updates it in place too.
      auto lg = dyn_cast_or_null<LinearGradOp>(def);
      if (!lg || v != lg.getGradWeight() || !lg.getAccumulate() ||
          returnCount[v] != 1)
        continue;
    }
    Value before = stateValue.count(s.str()) ? stateValue[s.str()] : Value();
    bool laterUse = before && llvm::any_of(before.getUsers(), [&](Operation *u) {
      return u != ret && position[u] > position[def];
    });
    if (laterUse)
      continue;
    std::string key = s.str();
    if (key.rfind("param:", 0) == 0)
      key = "param@policy:" + key.substr(6);
    inPlace[v] = state(key, v.getType());
  }

  for (Operation &op : fn.front().without_terminator()) {
    if (auto p = dyn_cast<ParamOp>(op)) {
      tensorOf[p.getResult()] = param(p).tensor;
      continue;
    }
    if (auto f = dyn_cast<FillOp>(op)) {
      // A constant returned only into several states is filled there
      // directly (below); it needs no tensor of its own.
      bool onlyStates = returnCount.lookup(f.getResult()) > 1;
      for (OpOperand &use : f->getUses())
        onlyStates &= use.getOwner() == ret &&
                      fn.getResultAttr(use.getOperandNumber(), "trl.state");
      if (onlyStates) {
        tensorOf[f.getResult()] = -1;
        continue;
      }
    }
    if (auto r = dyn_cast<ReshapeOp>(op)) {
      // A view: same bytes, another shape.
      int src = tensorOf.lookup(r.getX());
      int t = newTensor(r.getType(), plan.tensors[src].offset);
      root[t] = root[src];
      tensorOf[r.getResult()] = t;
      continue;
    }
    for (Type t : op.getResultTypes())
      if (!isa<RankedTensorType>(t) || !dtypeOf(t))
        return internal(&op, "unsupported result type");
    artifact::KernelCall call;
    call.kernel = op.getName().stripDialect().str();
    if (isa<OffloadOp, ReloadOp>(op))
      call.kernel = "copy";  // the CPU has one memory space
    auto operand = [&](Value v) { return v ? tensorOf.lookup(v) : -1; };
    if (auto a = dyn_cast<AttentionOp>(op))
      call.in = {operand(a.getQ()), operand(a.getK()), operand(a.getV()),
                 operand(a.getMask()), operand(a.getCuSeqlens())};
    else if (auto a = dyn_cast<AttentionGradOp>(op))
      call.in = {operand(a.getGradOut()), operand(a.getQ()), operand(a.getK()),
                 operand(a.getV()), operand(a.getOut()), operand(a.getLse()),
                 operand(a.getMask()), operand(a.getCuSeqlens())};
    else
      for (Value v : op.getOperands())
        call.in.push_back(operand(v));
    for (Value r : op.getResults()) {
      int t = inPlace.count(r) ? inPlace.lookup(r) : activation(r.getType());
      tensorOf[r] = t;
      call.out.push_back(t);
    }
    for (NamedAttribute a : op.getAttrDictionary())
      if (a.getName() != "operandSegmentSizes" &&
          a.getName() != "resultSegmentSizes")
        call.attrs[a.getName().str()] = attrToJson(a.getValue());
    prog.calls.push_back(std::move(call));
  }

  // Outputs, and state results that could not be written in place.
  for (unsigned i = 0; i < ret.getNumOperands(); ++i) {
    Value v = ret.getOperand(i);
    int t = tensorOf.lookup(v);
    if (auto n = fn.getResultAttrOfType<StringAttr>(i, "trl.output")) {
      prog.outputs[n.str()] = t;
      continue;
    }
    auto s = fn.getResultAttrOfType<StringAttr>(i, "trl.state");
    if (!s)
      return internal(fn, "result " + std::to_string(i) +
                              " is neither a trl.output nor trl.state");
    std::string key = s.str();
    if (key.rfind("param:", 0) == 0)
      key = "param@policy:" + key.substr(6);
    int dst = state(key, v.getType());
    if (dst == t)
      continue;
    artifact::KernelCall update;
    if (auto fill = v.getDefiningOp<FillOp>()) {
      // A constant shared by several states (CSE merged the cleared
      // accumulators): fill each state instead of copying the constant.
      update.kernel = "fill";
      update.attrs["value"] = fill.getValue().convertToDouble();
    } else {
      update.kernel = "copy";
      update.in = {t};
    }
    update.out = {dst};
    prog.calls.push_back(std::move(update));
  }
  placeActivations(prog, programTensors, activationBytes, pendingOffsets);
  placeActivations(prog, hostTensors, hostBytes, pendingHostOffsets);
  plan.programs[fn.getSymName().str()] = std::move(prog);
  return std::nullopt;
}

/// Offsets of a program's activations relative to the activation region:
/// each tensor is live from the call that writes it (inputs: from the start)
/// to its last reader (outputs: to the end); tensors are placed largest
/// first at the lowest offset that overlaps no live-range-overlapping
/// tensor placed before.
void Lowerer::placeActivations(artifact::Program &prog, const std::vector<int> &tensors,
                               int64_t &regionBytes,
                               std::vector<std::pair<int, int64_t>> &offsets) {
  const int end = static_cast<int>(prog.calls.size());
  std::map<int, std::pair<int, int>> live;  // root -> [first, last]
  for (int t : tensors)
    live[t] = {end, -1};
  auto touch = [&](int t, int at) {
    auto it = live.find(root[t]);
    if (it == live.end())
      return;
    it->second.first = std::min(it->second.first, at);
    it->second.second = std::max(it->second.second, at);
  };
  for (auto &[name, t] : prog.inputs)
    touch(t, -1);
  for (int i = 0; i < end; ++i) {
    for (int t : prog.calls[i].in)
      if (t >= 0)
        touch(t, i);
    for (int t : prog.calls[i].out)
      touch(t, i);
  }
  for (auto &[name, t] : prog.outputs)
    touch(t, end);
  std::vector<int> order(tensors);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return plan.tensors[a].bytes() > plan.tensors[b].bytes();
  });
  struct Placed { int64_t offset, bytes; int first, last; };
  std::vector<Placed> placed;
  int64_t peak = 0;
  for (int t : order) {
    auto [first, last] = live[t];
    if (last < first)  // never touched: still give it bytes
      first = last = -1;
    int64_t bytes = alignUp(std::max<int64_t>(plan.tensors[t].bytes(), 1));
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (const Placed &p : placed)
      if (p.first <= last && first <= p.last)
        busy.push_back({p.offset, p.offset + p.bytes});
    std::sort(busy.begin(), busy.end());
    int64_t offset = 0;
    for (auto [lo, hi] : busy) {
      if (offset + bytes <= lo)
        break;
      offset = std::max(offset, hi);
    }
    placed.push_back({offset, bytes, first, last});
    offsets.push_back({t, offset});
    peak = std::max(peak, offset + bytes);
  }
  regionBytes = std::max(regionBytes, peak);
}

Expected<artifact::Plan> Lowerer::run(ModuleOp module) {
  for (auto fn : module.getOps<func::FuncOp>())
    if (auto err = lowerFunction(fn))
      return *err;
  // Activations follow the state; views take their owner's offset.
  for (auto [t, offset] : pendingOffsets)
    plan.tensors[t].offset = stateBytes + offset;
  for (auto [t, offset] : pendingHostOffsets)
    plan.tensors[t].offset = offset;
  for (size_t t = 0; t < plan.tensors.size(); ++t)
    if (root[t] != static_cast<int>(t))
      plan.tensors[t].offset = plan.tensors[root[t]].offset;
  for (artifact::ParamDesc &p : plan.params) {
    if (!p.trainable)
      continue;
    auto find = [&](const std::string &prefix) {
      auto it = states.find(prefix + p.name);
      return it == states.end() ? -1 : it->second;
    };
    p.grad = find("grad:");
    p.expAvg = find("exp_avg:");
    p.expAvgSq = find("exp_avg_sq:");
  }
  plan.arenaBytes = stateBytes + activationBytes;
  plan.hostBytes = hostBytes;
  return plan;
}

} // namespace

Expected<artifact::Plan> lowerToPlan(ModuleOp module) {
  return Lowerer().run(module);
}

} // namespace trlc
