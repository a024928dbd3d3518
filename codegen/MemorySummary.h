//===- MemorySummary.h - memory accounting of a step module -----*- C++ -*-===//
//
// A first-order account of one training step's device memory, read off the
// `trl` module through the MemoryCostOpInterface: model state (weights,
// gradients, AdamW state) and the activations of the forward pass if every
// intermediate were kept. The exact, liveness-based plan replaces the
// activation figure once the memory planner runs.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_CODEGEN_MEMORYSUMMARY_H
#define TRLC_CODEGEN_MEMORYSUMMARY_H

#include "trlc/MemoryReport.h"  // formatBytes

#include "mlir/IR/BuiltinOps.h"

#include <cstdint>
#include <string>

namespace trlc {

struct MemorySummary {
  int64_t trainableParameters = 0;
  int64_t frozenParameters = 0;    // reference model, or LoRA's base
  bool frozenBase = false;         // the frozen ones are the policy's (trl-lora)
  int64_t parameterBytes = 0;      // trainable weights (fp32 master)
  int64_t frozenBytes = 0;
  int64_t gradientBytes = 0;
  int64_t optimizerBytes = 0;      // AdamW m, v
  int64_t activationBytes = 0;     // every forward intermediate kept
  int64_t largestActivationBytes = 0;
  std::string largestActivationOp; // op name and type of that tensor
  int64_t workspaceBytes = 0;      // largest kernel scratch (trlc/Kernels.h, cpu)
  int64_t forwardFlops = 0;

  int64_t totalBytes() const {
    return parameterBytes + frozenBytes + gradientBytes + optimizerBytes +
           activationBytes + workspaceBytes;
  }
};

/// Accounts the module's `train_step` at the element types it stores
/// (bf16 activations after trl-mixed-precision); the same on every backend.
/// The workspace is the lowered plan's, which the caller fills in.
MemorySummary summarizeMemory(mlir::ModuleOp module);

/// The account as a table.
std::string formatMemorySummary(const MemorySummary &s);

/// The same as JSON (memory_plan.json).
std::string memorySummaryJson(const MemorySummary &s);

} // namespace trlc

#endif // TRLC_CODEGEN_MEMORYSUMMARY_H
