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
  if (e.isBF16()) return DType::BF16;
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
  if (auto d = dyn_cast<DenseI64ArrayAttr>(a)) return std::vector<int64_t>(d.asArrayRef());
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
    viewBytes.push_back(0);
    return static_cast<int>(plan.tensors.size()) - 1;
  }

  /// Persistent state tensor for a key such as "grad:NAME".
  int state(const std::string &key, Type type) {
    auto it = states.find(key);
    if (it != states.end())
      return it->second;
    if (key.rfind("kv:", 0) == 0 || key.rfind("gathered:", 0) == 0) {
      // Generation's KV cache and its gathered model (ZeRO-3's
      // @gather_model): persistent between generation's programs only, so
      // they share the activation region with training (below).
      int t = newTensor(type);
      pendingCache.push_back({t, cacheBytes});
      cacheBytes += alignUp(plan.tensors[t].bytes());
      states[key] = t;
      return t;
    }
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

  artifact::Plan plan;
  std::vector<int> root;  // view -> the tensor that owns the bytes
  std::vector<int64_t> viewBytes;  // view -> its bytes into the owner
  std::map<std::string, int> states;
  std::map<std::string, size_t> paramIndex;
  int64_t stateBytes = 0;
  int64_t activationBytes = 0;  // max over programs
  std::vector<std::pair<int, int64_t>> pendingOffsets;  // (tensor, region offset)
  // Generation's programs: the KV cache at the start of the activation
  // region, their activations after it.
  int64_t cacheBytes = 0, generationBytes = 0;
  std::vector<std::pair<int, int64_t>> pendingCache, pendingGeneration;
  int64_t hostBytes = 0;  // the host pool, max over programs
  std::vector<std::pair<int, int64_t>> pendingHostOffsets;
};

std::optional<Error> Lowerer::lowerFunction(func::FuncOp fn) {
  artifact::Program prog;
  DenseMap<Value, int> tensorOf;
  // Activations sit where trl-plan-memory put them: device ones after the
  // persistent state (known once every function is lowered), host ones in
  // the host pool.
  bool generation = fn->hasAttr("trl.generation");
  auto activation = [&](Type type, int64_t regionOffset) {
    int t = newTensor(type);
    if (isHostTensor(type)) {
      plan.tensors[t].host = true;
      pendingHostOffsets.push_back({t, regionOffset});
    } else {
      (generation ? pendingGeneration : pendingOffsets).push_back({t, regionOffset});
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

  auto activationBytesAttr = fn->getAttrOfType<IntegerAttr>("trl.activation_bytes");
  auto hostBytesAttr = fn->getAttrOfType<IntegerAttr>("trl.host_bytes");
  if (!activationBytesAttr || !hostBytesAttr)
    return internal(fn, "no memory plan (run trl-plan-memory first)");
  int64_t &regionBytes = generation ? generationBytes : activationBytes;
  regionBytes = std::max(regionBytes, activationBytesAttr.getInt());
  hostBytes = std::max(hostBytes, hostBytesAttr.getInt());

  auto ret = cast<func::ReturnOp>(fn.front().getTerminator());
  std::map<std::string, Value> stateValue;  // state key -> value before the update
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
    BlockArgument arg = fn.getArgument(i);
    if (auto s = fn.getArgAttrOfType<StringAttr>(i, "trl.state")) {
      tensorOf[arg] = state(s.str(), arg.getType());
      stateValue[s.str()] = arg;
    } else if (auto n = fn.getArgAttrOfType<StringAttr>(i, "trl.input")) {
      auto offset = fn.getArgAttrOfType<IntegerAttr>(i, "trl.offset");
      if (!offset || offset.getInt() < 0)
        return internal(fn, "input " + n.str() + " has no planned offset");
      int t = activation(arg.getType(), offset.getInt());
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
  for (Operation &op : fn.front().without_terminator()) {
    if (auto p = dyn_cast<ParamOp>(op)) {
      tensorOf[p.getResult()] = param(p).tensor;
      continue;
    }
    if (op.hasAttr("trl.no_buffer")) {
      // A constant returned only into several states is filled there
      // directly (below); it needs no tensor of its own.
      tensorOf[op.getResult(0)] = -1;
      continue;
    }
    if (isa<ReshapeOp, FlatViewOp>(op)) {
      // A view: same bytes (from an offset into a flat buffer), another shape.
      int src = tensorOf.lookup(op.getOperand(0));
      int t = newTensor(op.getResult(0).getType(), plan.tensors[src].offset);
      root[t] = root[src];
      viewBytes[t] = viewBytes[src];
      if (auto v = dyn_cast<FlatViewOp>(op))
        viewBytes[t] += v.getOffset() * artifact::dtypeBytes(plan.tensors[src].dtype);
      tensorOf[op.getResult(0)] = t;
      continue;
    }
    for (Type t : op.getResultTypes())
      if (!isa<RankedTensorType>(t) || !dtypeOf(t))
        return internal(&op, "unsupported result type");
    artifact::KernelCall call;
    if (isa<OffloadOp, ReloadOp>(op)) {
      // A copy between the arena and the host pool: the backend runs it on
      // its copy stream (the CPU has one memory space).
      call.kernel = trlc::Kernel::Copy;
    } else if (auto kernel = trlc::kernelByName(op.getName().stripDialect().str())) {
      call.kernel = *kernel;
    } else {
      return internal(&op, "no kernel of runtime/include/trlc/Kernels.def runs it");
    }
    auto operand = [&](Value v) { return v ? tensorOf.lookup(v) : -1; };
    if (auto a = dyn_cast<AttentionOp>(op))
      call.in = {operand(a.getQ()), operand(a.getK()), operand(a.getV()),
                 operand(a.getMask()), operand(a.getCuSeqlens())};
    else if (auto a = dyn_cast<AttentionGradOp>(op))
      call.in = {operand(a.getGradOut()), operand(a.getQ()), operand(a.getK()),
                 operand(a.getV()), operand(a.getOut()), operand(a.getLse()),
                 operand(a.getMask()), operand(a.getCuSeqlens())};
    else if (auto a = dyn_cast<DpoLossOp>(op))
      call.in = {operand(a.getPolicyChosen()), operand(a.getPolicyRejected()),
                 operand(a.getRefChosen()),    operand(a.getRefRejected()),
                 operand(a.getWeights()),      operand(a.getNllWeight())};
    else if (auto a = dyn_cast<DpoLossGradOp>(op))
      call.in = {operand(a.getGrad()),        operand(a.getPolicyChosen()),
                 operand(a.getPolicyRejected()), operand(a.getRefChosen()),
                 operand(a.getRefRejected()), operand(a.getWeights()),
                 operand(a.getNllWeight())};
    else
      for (Value v : op.getOperands())
        call.in.push_back(operand(v));
    // dpo_loss(_grad): the optional nll weight keeps its slot when a beta
    // value follows it; absent both, the call ends at the weights.
    if (auto a = dyn_cast<DpoLossOp>(op); a && a.getBetaValue())
      call.in.push_back(operand(a.getBetaValue()));
    else if (auto a = dyn_cast<DpoLossGradOp>(op); a && a.getBetaValue())
      call.in.push_back(operand(a.getBetaValue()));
    else if ((isa<DpoLossOp>(op) || isa<DpoLossGradOp>(op)) && call.in.back() < 0)
      call.in.pop_back();
    auto offsets = op.getAttrOfType<DenseI64ArrayAttr>("trl.offsets");
    auto inPlace = op.getAttrOfType<ArrayAttr>("trl.in_place");
    if (!offsets || offsets.size() != static_cast<int64_t>(op.getNumResults()))
      return internal(&op, "no planned offsets (run trl-plan-memory first)");
    for (auto [k, r] : llvm::enumerate(op.getResults())) {
      std::string key = inPlace ? cast<StringAttr>(inPlace[k]).str() : "";
      int t;
      if (!key.empty()) {
        if (key.rfind("param:", 0) == 0)
          key = "param@policy:" + key.substr(6);
        t = state(key, r.getType());
      } else if (offsets[k] >= 0) {
        t = activation(r.getType(), offsets[k]);
      } else {
        return internal(&op, "result " + std::to_string(k) + " has no buffer");
      }
      tensorOf[r] = t;
      call.out.push_back(t);
    }
    for (NamedAttribute a : op.getAttrDictionary())
      if (a.getName() != "operandSegmentSizes" &&
          a.getName() != "resultSegmentSizes" &&
          !a.getName().strref().starts_with("trl."))
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
      update.kernel = trlc::Kernel::Fill;
      update.attrs["value"] = fill.getValue().convertToDouble();
    } else {
      update.kernel = trlc::Kernel::Copy;
      update.in = {t};
    }
    update.out = {dst};
    prog.calls.push_back(std::move(update));
  }
  plan.programs[fn.getSymName().str()] = std::move(prog);
  return std::nullopt;
}

Expected<artifact::Plan> Lowerer::run(ModuleOp module) {
  for (auto fn : module.getOps<func::FuncOp>())
    if (auto err = lowerFunction(fn))
      return *err;
  // Activations follow the state; views take their owner's offset.
  for (auto [t, offset] : pendingOffsets)
    plan.tensors[t].offset = stateBytes + offset;
  for (auto [t, offset] : pendingCache)
    plan.tensors[t].offset = stateBytes + offset;
  for (auto [t, offset] : pendingGeneration)
    plan.tensors[t].offset = stateBytes + alignUp(cacheBytes) + offset;
  if (cacheBytes + generationBytes > 0)
    activationBytes = std::max(activationBytes, alignUp(cacheBytes) + generationBytes);
  for (auto [t, offset] : pendingHostOffsets)
    plan.tensors[t].offset = offset;
  for (size_t t = 0; t < plan.tensors.size(); ++t)
    if (root[t] != static_cast<int>(t))
    {
      plan.tensors[t].offset = plan.tensors[root[t]].offset + viewBytes[t];
      plan.tensors[t].viewOf = root[t];
    }
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
  if (auto zero = module->getAttrOfType<DictionaryAttr>("trl.zero")) {
    plan.zero.stage = zero.getAs<IntegerAttr>("stage").getInt();
    for (Attribute g : zero.getAs<ArrayAttr>("groups")) {
      auto group = cast<DictionaryAttr>(g);
      artifact::ZeroGroup z;
      z.name = group.getAs<StringAttr>("name").str();
      z.numel = group.getAs<IntegerAttr>("numel").getInt();
      z.shard = group.getAs<IntegerAttr>("shard").getInt();
      auto it = paramIndex.find("policy:" + zeroShardParamName(z.name));
      if (it == paramIndex.end())
        return Error{"internal error: ZeRO-3 group '" + z.name + "' has no shard parameter"};
      z.param = static_cast<int>(it->second);
      for (Attribute m : group.getAs<ArrayAttr>("members")) {
        auto member = cast<DictionaryAttr>(m);
        auto shape = member.getAs<DenseI64ArrayAttr>("shape").asArrayRef();
        z.members.push_back({member.getAs<StringAttr>("name").str(),
                             member.getAs<IntegerAttr>("offset").getInt(),
                             {shape.begin(), shape.end()},
                             member.getAs<BoolAttr>("hf_transposed").getValue()});
      }
      plan.zero.groups.push_back(std::move(z));
    }
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
