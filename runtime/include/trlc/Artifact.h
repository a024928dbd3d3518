//===- Artifact.h - the compiled artifact: the compiler/runtime contract --===//
//
// A trlc artifact is a directory, conventionally named NAME.trlc:
//
//   manifest.json      what the artifact is (this header's format version)
//   recipe.toml        the fully resolved recipe it was compiled from
//   memory_plan.json   the compiler's memory accounting of one step
//   plan.json          the executable plan (below)
//   ir/train_step.mlir the `trl` module after the pass pipeline
//
// manifest.json fields (format version 3):
//   format            "trlc-artifact"
//   format_version    integer; the runtime refuses any other version
//   recipe            path of the recipe as given to `trlc compile`
//   recipe_hash       FNV-1a 64-bit hash (hex) of recipe.toml
//   method            "sft" | "dpo" | "kto" | "grpo"
//   model_type        "llama" | "qwen2" | "qwen3" | "mistral" | "gpt2"
//   world_size        number of processes the plan is sharded for
//   batch_size        rows per micro-batch
//   sequence_bound    static upper bound of every sequence dimension
//   parameters        trainable parameter count
//
// plan.json (format version 3) is what the runtime executes:
//   arena_bytes   size of the one device arena every tensor lives in
//   host_bytes    size of the host pool of offloaded activations (0: none)
//   tensors       [{offset, shape, dtype[, host]}]: dtype f32 | bf16 | f64 |
//                 i64 | i32 | bool (bool is one byte; bf16 activations are
//                 stored rounded, see DType); `host: true` places the
//                 tensor in the host pool; offsets are bytes into the arena
//                 (or the pool),
//                 64-byte aligned; views (reshapes) share their source's
//                 offset
//   params        [{name, set, trainable, hf_transposed, tensor, grad,
//                 exp_avg, exp_avg_sq}]: the parameter table; `set` is
//                 "policy" or "reference" (the frozen model); the optimizer
//                 state indices are -1 for frozen parameters
//   programs      {NAME: {inputs: {name: tensor}, outputs: {name: tensor},
//                 calls: [{kernel, in: [tensor or -1 for an absent optional
//                 operand], out: [tensor], attrs: {...}}]}}; programs are
//                 train_step (one micro-batch: forward, backward, gradient
//                 accumulation), optimizer_step (clip, schedule, AdamW, clear
//                 the accumulators) and, with [data] eval, predict (logits)
//   run           what the training loop needs from the recipe: method,
//                 batch_size, seq_len, gradient_accumulation_steps,
//                 total_steps, num_train_epochs, max_steps, seed, init_seed,
//                 initializer_range, truncation_mode, completion_only_loss,
//                 pad_token_id, model_path, tokenizer, model_config
//                 (config.json to save with checkpoints), train and eval
//                 files, output_dir, logging_steps, save_steps,
//                 save_total_limit
// Tensors of different programs may share arena bytes: programs never run
// at the same time, and parameters, gradients and optimizer moments
// (persistent state) are never shared.
//
// The runtime never links MLIR: it reads these files only.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_ARTIFACT_H
#define TRLC_RUNTIME_ARTIFACT_H

#include "trlc/Kernels.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace trlc::artifact {

inline constexpr int kFormatVersion = 3;
inline constexpr const char *kFormatName = "trlc-artifact";
inline constexpr const char *kManifestFile = "manifest.json";
inline constexpr const char *kRecipeFile = "recipe.toml";
inline constexpr const char *kMemoryPlanFile = "memory_plan.json";
inline constexpr const char *kPlanFile = "plan.json";
inline constexpr const char *kIrDir = "ir";
inline constexpr const char *kStepIrFile = "train_step.mlir";

struct Manifest {
  int formatVersion = 0;
  std::string recipe;
  std::string recipeHash;
  std::string method;
  std::string modelType;
  int64_t worldSize = 1;
  int64_t batchSize = 0;
  int64_t sequenceBound = 0;
  int64_t parameters = 0;
};

/// BF16 is a storage precision: kernels widen bf16 operands to f32,
/// compute in f32 and round what they store as bf16 to nearest even.
enum class DType { F32, BF16, F64, I64, I32, Bool };

/// Bytes of one element; the name used in plan.json.
int64_t dtypeBytes(DType dtype);
const char *dtypeName(DType dtype);

struct TensorDesc {
  int64_t offset = 0;   // in the device arena, or in the host pool when `host`
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  bool host = false;    // an offloaded activation (trl-offload-remat)
  int viewOf = -1;      // a view: the tensor whose bytes it shares
  int64_t numel() const;
  int64_t bytes() const { return numel() * dtypeBytes(dtype); }
};

struct ParamDesc {
  std::string name;
  std::string set = "policy";
  bool trainable = true;
  bool hfTransposed = false;
  int tensor = -1, grad = -1, expAvg = -1, expAvgSq = -1;
};

struct KernelCall {
  Kernel kernel = Kernel::Copy;
  std::vector<int> in;   // -1: an absent optional operand
  std::vector<int> out;
  nlohmann::json attrs = nlohmann::json::object();
};

struct Program {
  std::map<std::string, int> inputs, outputs;
  std::vector<KernelCall> calls;
};

struct Plan {
  int64_t arenaBytes = 0;
  int64_t hostBytes = 0;  // the pinned host pool offloaded activations live in
  std::vector<TensorDesc> tensors;
  std::vector<ParamDesc> params;
  std::map<std::string, Program> programs;
  nlohmann::json run = nlohmann::json::object();
  /// ZeRO-3 layout (trl-zero3-shard): {"stage", "world_size", "groups":
  /// [{"name", "numel", "shard", "members": [{"name", "offset", "shape",
  /// "hf_transposed"}]}]}; empty when parameters are replicated. The
  /// parameter "zero3:GROUP" is this rank's shard of a group's flat buffer.
  nlohmann::json zero = nlohmann::json::object();
};

nlohmann::json planToJson(const Plan &plan);

/// Reads `dir`/plan.json, checking every tensor against the arena and every
/// call's tensor indices. On failure returns false and sets `error`.
bool readPlan(const std::string &dir, Plan &plan, std::string &error);

/// Reads and validates `dir`/manifest.json. On failure returns false and
/// sets `error` to a message naming the file and the fix.
bool readManifest(const std::string &dir, Manifest &manifest,
                  std::string &error);

/// FNV-1a 64-bit hash of `text` as 16 hex digits.
std::string contentHash(const std::string &text);

} // namespace trlc::artifact

#endif // TRLC_RUNTIME_ARTIFACT_H
