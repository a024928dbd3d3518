//===- MemorySummary.cpp - memory accounting of a step module -------------===//

#include "codegen/MemorySummary.h"
#include "dialect/TrlDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/raw_ostream.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <set>

using namespace mlir;

namespace trlc {

namespace {
int64_t bytesAt(Type type, int64_t floatBytes) {
  auto t = dyn_cast<RankedTensorType>(type);
  if (!t || !t.hasStaticShape())
    return 0;
  if (isa<FloatType>(t.getElementType()))
    return t.getNumElements() * floatBytes;
  return trl::tensorBytes(t);
}
} // namespace

MemorySummary summarizeMemory(ModuleOp module, int64_t floatBytes) {
  MemorySummary s;
  s.floatBytes = floatBytes;
  std::set<std::pair<std::string, std::string>> seen;  // (set, name)
  llvm::StringMap<int64_t> zeroElements;  // ZeRO-3 group -> its members' elements
  if (auto zero = module->getAttrOfType<DictionaryAttr>("trl.zero"))
    if (auto groups = zero.getAs<ArrayAttr>("groups"))
      for (Attribute g : groups) {
        auto group = cast<DictionaryAttr>(g);
        int64_t n = 0;
        for (Attribute m : group.getAs<ArrayAttr>("members")) {
          int64_t e = 1;
          for (int64_t d : cast<DictionaryAttr>(m).getAs<DenseI64ArrayAttr>("shape").asArrayRef())
            e *= d;
          n += e;
        }
        zeroElements[group.getAs<StringAttr>("name").getValue()] = n;
      }
  module.walk([&](Operation *op) {
    if (auto param = dyn_cast<trl::ParamOp>(op)) {
      if (!seen.insert({param.getSet().str(), param.getName().str()}).second)
        return;
      int64_t n = trl::tensorElements(param.getType());
      // A ZeRO-3 shard: the summary counts the model, not this rank's part.
      if (param.getName().starts_with("zero3:"))
        n = zeroElements.lookup(param.getName().drop_front(6));
      if (param.getTrainable())
        s.trainableParameters += n;
      else
        s.frozenParameters += n;
      return;
    }
    auto cost = dyn_cast<trl::MemoryCostOpInterface>(op);
    if (!cost)
      return;
    s.forwardFlops += cost.getFlops();
    s.workspaceBytes = std::max(s.workspaceBytes, cost.getWorkspaceBytes());
    for (Value r : op->getResults()) {
      int64_t bytes = bytesAt(r.getType(), floatBytes);
      s.activationBytes += bytes;
      if (bytes > s.largestActivationBytes) {
        s.largestActivationBytes = bytes;
        std::string text;
        llvm::raw_string_ostream os(text);
        os << op->getName() << " " << r.getType();
        s.largestActivationOp = os.str();
      }
    }
  });
  s.parameterBytes = s.trainableParameters * floatBytes;
  s.frozenBytes = s.frozenParameters * floatBytes;
  s.gradientBytes = s.trainableParameters * floatBytes;
  // AdamW keeps m and v in fp32; with 16-bit weights an fp32 master copy too.
  s.optimizerBytes = s.trainableParameters * (floatBytes < 4 ? 12 : 8);
  return s;
}


std::string formatMemorySummary(const MemorySummary &cpu,
                                const MemorySummary &cuda) {
  std::string out;
  char line[160];
  auto row = [&](const char *name, int64_t a, int64_t b) {
    std::snprintf(line, sizeof(line), "  %-34s %14s %14s\n", name,
                  formatBytes(a).c_str(), formatBytes(b).c_str());
    out += line;
  };
  std::snprintf(line, sizeof(line),
                "memory summary (one step; activations before any memory pass)\n"
                "  trainable parameters: %lld   frozen (reference): %lld\n",
                static_cast<long long>(cpu.trainableParameters),
                static_cast<long long>(cpu.frozenParameters));
  out += line;
  std::snprintf(line, sizeof(line), "  %-34s %14s %14s\n", "",
                "cpu (fp32)", "cuda (bf16)");
  out += line;
  row("parameters", cpu.parameterBytes, cuda.parameterBytes);
  if (cpu.frozenParameters)
    row("reference model (frozen)", cpu.frozenBytes, cuda.frozenBytes);
  row("gradients", cpu.gradientBytes, cuda.gradientBytes);
  row("optimizer state (AdamW)", cpu.optimizerBytes, cuda.optimizerBytes);
  row("activations (all kept, no reuse)", cpu.activationBytes,
      cuda.activationBytes);
  row("largest op workspace", cpu.workspaceBytes, cuda.workspaceBytes);
  row("total (upper bound)", cpu.totalBytes(), cuda.totalBytes());
  out += "  largest activation: " + cpu.largestActivationOp + " (" +
         formatBytes(cpu.largestActivationBytes) + " fp32)\n";
  std::snprintf(line, sizeof(line), "  forward FLOPs per micro-batch: %.3g\n",
                static_cast<double>(cpu.forwardFlops));
  out += line;
  return out;
}

std::string memorySummaryJson(const MemorySummary &cpu,
                              const MemorySummary &cuda) {
  auto one = [](const MemorySummary &s) {
    return nlohmann::json{
        {"float_bytes", s.floatBytes},
        {"parameters_bytes", s.parameterBytes},
        {"frozen_parameters_bytes", s.frozenBytes},
        {"gradients_bytes", s.gradientBytes},
        {"optimizer_state_bytes", s.optimizerBytes},
        {"activations_bytes", s.activationBytes},
        {"workspace_bytes", s.workspaceBytes},
        {"total_bytes", s.totalBytes()},
        {"largest_activation", s.largestActivationOp},
        {"largest_activation_bytes", s.largestActivationBytes}};
  };
  nlohmann::json j{
      {"kind", "summary"},
      {"note", "activations counted with every forward intermediate kept; "
               "the liveness-based plan is exact"},
      {"trainable_parameters", cpu.trainableParameters},
      {"frozen_parameters", cpu.frozenParameters},
      {"forward_flops", cpu.forwardFlops},
      {"cpu", one(cpu)},
      {"cuda", one(cuda)}};
  return j.dump(2) + "\n";
}

} // namespace trlc
