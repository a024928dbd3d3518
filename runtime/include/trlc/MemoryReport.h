//===- MemoryReport.h - what a plan keeps in device memory ------*- C++ -*-===//
//
// `trlc inspect --memory`: from an artifact's plan alone (no MLIR), the
// bytes of every tensor by category, the live bytes after every kernel call
// of the training step and the optimizer step (persistent state throughout,
// activations from the call that writes them to the last call that reads
// them, program inputs from the start of their program), the call where
// the live bytes peak and the tensors live there, and the arena and
// kernel scratch the runtime allocates.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_MEMORYREPORT_H
#define TRLC_RUNTIME_MEMORYREPORT_H

#include "trlc/Artifact.h"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace trlc {

enum class MemCategory {
  Parameters, Frozen, Gradients, Optimizer,
  ValueModel,  // PPO's value model: its weights, gradients and AdamW moments
  Inputs, Activations, Workspace,
  Communication,  // gathered parameters, packed gradients (ZeRO)
  Host,  // offloaded activations, in the host pool (not device memory)
  Count
};
const char *categoryName(MemCategory c);
/// Human-readable bytes: "1.50 GiB".
std::string formatBytes(int64_t bytes);

struct LiveTensor {
  int tensor;
  std::string what;  // "param model.norm.weight", "input labels", "swiglu output" ...
  MemCategory category;
  int64_t bytes;
};

struct MemoryReport {
  int64_t arenaBytes = 0;       // what the runtime allocates for tensors
  int64_t scratchBytes = 0;     // the largest kernel scratch (workspace)
  int64_t hostBytes = 0;        // the host pool of offloaded activations
  int64_t categoryBytes[int(MemCategory::Count)] = {};  // whole-plan totals
  /// One point per kernel call of train_step then optimizer_step: bytes
  /// live after it, by category.
  struct Point {
    std::string program, kernel;
    int64_t bytes[int(MemCategory::Count)] = {};
    int64_t total() const;        // device bytes (the host pool excluded)
  };
  std::vector<Point> timeline;
  size_t peakIndex = 0;
  std::vector<LiveTensor> liveAtPeak;  // largest first
  /// Data parallelism (plan.json "zero", the manifest's world_size): the numbers
  /// above are per rank.
  int64_t worldSize = 1, zeroStage = 0;
  int64_t modelStateBytes = 0;           // parameters + gradients + optimizer, this rank
  int64_t unshardedModelStateBytes = 0;  // the same on one process
  /// Collective payload per optimizer step (micro-batches x train_step +
  /// optimizer_step), by kernel; gradients all-reduced by the runtime
  /// (stage 0) count as "all_reduce".
  std::map<std::string, int64_t> commBytesPerStep;
  /// precompute_ref_log_probs: the reference ran once before training
  /// (@ref_logps); the step holds none of its weights.
  bool precomputedReference = false;
  /// Generation (prefill, decode): rows x slots of its KV cache, the
  /// cache's bytes (in the activation region: it shares training's bytes),
  /// under ZeRO-3 the model gathered for it (ds3_gather_for_generation:
  /// @gather_model, beside the cache) and the communication of one
  /// generation (@gather_model's and prefill's gathers) and of each
  /// decoding step, and each program's peak (persistent state, workspace,
  /// cache, gathered model and its live activations).
  struct Generation {
    int64_t rows = 0, slots = 0, kvCacheBytes = 0;
    bool gatherModel = false;  // @gather_model: the whole model at once
    int64_t gatheredBytes = 0;
    int64_t commBytesPerGeneration = 0;  // before the first decoding step
    int64_t commBytesPerToken = 0;
    int64_t maxNewTokens = 0;  // GRPO's max_completion_length (0: not known)
    std::map<std::string, int64_t> peakBytes;
  };
  std::optional<Generation> generation;
  int64_t peakBytes() const { return timeline.empty() ? 0 : timeline[peakIndex].total(); }
};

/// `scratch` is the largest scratch of any call (trlc/Kernels.h), and
/// `worldSize` the manifest's.
MemoryReport memoryReport(const artifact::Plan &plan, int64_t scratch, int64_t worldSize);

nlohmann::json memoryReportJson(const MemoryReport &r);
std::string memoryReportText(const MemoryReport &r);
/// A stacked-area SVG of live bytes over the step, by category.
std::string memoryTimelineSvg(const MemoryReport &r, const std::string &title);

} // namespace trlc

#endif // TRLC_RUNTIME_MEMORYREPORT_H
