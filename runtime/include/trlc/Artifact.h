//===- Artifact.h - the compiled artifact: the compiler/runtime contract --===//
//
// A trlc artifact is a directory, conventionally named NAME.trlc:
//
//   manifest.json      what the artifact is (this header's format version)
//   recipe.toml        the fully resolved recipe it was compiled from
//   memory_plan.json   the compiler's memory accounting of one step
//   ir/train_step.mlir the `trl` module after the pass pipeline
//
// manifest.json fields (format version 1):
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
// The runtime never links MLIR: it reads these files only.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_ARTIFACT_H
#define TRLC_RUNTIME_ARTIFACT_H

#include <cstdint>
#include <string>

namespace trlc::artifact {

inline constexpr int kFormatVersion = 1;
inline constexpr const char *kFormatName = "trlc-artifact";
inline constexpr const char *kManifestFile = "manifest.json";
inline constexpr const char *kRecipeFile = "recipe.toml";
inline constexpr const char *kMemoryPlanFile = "memory_plan.json";
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

/// Reads and validates `dir`/manifest.json. On failure returns false and
/// sets `error` to a message naming the file and the fix.
bool readManifest(const std::string &dir, Manifest &manifest,
                  std::string &error);

/// FNV-1a 64-bit hash of `text` as 16 hex digits.
std::string contentHash(const std::string &text);

} // namespace trlc::artifact

#endif // TRLC_RUNTIME_ARTIFACT_H
