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

MemorySummary summarizeMemory(ModuleOp module) {
  MemorySummary s;
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
      if (StringRef group = trl::zeroShardGroup(param.getName()); !group.empty())
        n = zeroElements.lookup(group);
      if (param.getTrainable()) {
        s.trainableParameters += n;
      } else {
        s.frozenParameters += n;
        s.frozenBase |= param.getSet() == "policy";
        // Stored as trl-mixed-precision typed it (bf16 under dtype bf16).
        s.frozenBytes += n * trl::tensorBytes(param.getType()) /
                         std::max<int64_t>(trl::tensorElements(param.getType()), 1);
      }
      return;
    }
    auto cost = dyn_cast<trl::MemoryCostOpInterface>(op);
    if (!cost)
      return;
    s.forwardFlops += cost.getFlops();
    for (Value r : op->getResults()) {
      int64_t bytes = trl::tensorBytes(r.getType());
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
  // Weights, gradients and AdamW's m and v are fp32.
  s.parameterBytes = s.trainableParameters * 4;
  s.gradientBytes = s.trainableParameters * 4;
  s.optimizerBytes = s.trainableParameters * 8;
  return s;
}


std::string formatMemorySummary(const MemorySummary &s) {
  std::string out;
  char line[160];
  auto row = [&](const char *name, int64_t bytes) {
    std::snprintf(line, sizeof(line), "  %-34s %14s\n", name,
                  formatBytes(bytes).c_str());
    out += line;
  };
  std::snprintf(line, sizeof(line),
                "memory summary (one step, every activation kept; trlc "
                "inspect shows the exact plan)\n"
                "  trainable parameters: %lld   frozen (%s): %lld\n",
                static_cast<long long>(s.trainableParameters),
                s.frozenBase ? "LoRA base" : "reference",
                static_cast<long long>(s.frozenParameters));
  out += line;
  row("parameters", s.parameterBytes);
  if (s.frozenParameters)
    row(s.frozenBase ? "base model (frozen, LoRA)" : "reference model (frozen)", s.frozenBytes);
  row("gradients", s.gradientBytes);
  row("optimizer state (AdamW)", s.optimizerBytes);
  row("activations (all kept, no reuse)", s.activationBytes);
  row("largest op workspace", s.workspaceBytes);
  row("total (upper bound)", s.totalBytes());
  out += "  largest activation: " + s.largestActivationOp + " (" +
         formatBytes(s.largestActivationBytes) + ")\n";
  std::snprintf(line, sizeof(line), "  forward FLOPs per micro-batch: %.3g\n",
                static_cast<double>(s.forwardFlops));
  out += line;
  return out;
}

std::string memorySummaryJson(const MemorySummary &s) {
  nlohmann::json j{
      {"kind", "summary"},
      {"note", "activations counted with every intermediate kept; "
               "the liveness-based plan is exact"},
      {"trainable_parameters", s.trainableParameters},
      {"frozen_parameters", s.frozenParameters},
      {"forward_flops", s.forwardFlops},
      {"parameters_bytes", s.parameterBytes},
      {"frozen_parameters_bytes", s.frozenBytes},
      {"gradients_bytes", s.gradientBytes},
      {"optimizer_state_bytes", s.optimizerBytes},
      {"activations_bytes", s.activationBytes},
      {"workspace_bytes", s.workspaceBytes},
      {"total_bytes", s.totalBytes()},
      {"largest_activation", s.largestActivationOp},
      {"largest_activation_bytes", s.largestActivationBytes}};
  return j.dump(2) + "\n";
}

} // namespace trlc
