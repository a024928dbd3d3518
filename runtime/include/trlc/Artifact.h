//===- Artifact.h - the compiled artifact: the compiler/runtime contract --===//
//
// A trlc artifact is a directory, conventionally named NAME.trlc:
//
//   manifest.json      what the artifact is (Manifest)
//   recipe.toml        the fully resolved recipe it was compiled from
//   memory_plan.json   the compiler's memory accounting of one step
//   plan.json          the executable plan (Plan)
//   data/              the token shards (trlc/Shards.h), their index and,
//                      with an eval set, the vocabulary (vocab.json)
//   ir/train_step.mlir the `trl` module after the pass pipeline
//
// Everything that crosses from the compiler to the runtime is one of the
// structs below, each with one writer (toJson) and one reader; every key
// written is read. Format version 7 (the runtime refuses any other).
//
// The artifact is untrusted input: the manifest carries the hash of
// plan.json and of every data file, plan.json the hash of the manifest's
// identity, so an edit to any one file is refused; and whatever the hashes
// say, every size, offset and call is checked before anything runs
// (trlc/Contract.h), and the paths it names stay inside the artifact.
//
// manifest.json (Manifest):
//   format            "trlc-artifact"
//   format_version    integer
//   recipe            path of the recipe as given to `trlc compile`
//   recipe_hash       FNV-1a 64-bit hash (hex) of recipe.toml; checked on load
//   method            "sft" | "dpo" | "kto" | "grpo" | "rloo" | "online_dpo" |
//                     "ppo" | "reward"
//   model_type        "llama" | "qwen2" | "qwen3" | "mistral" | "gpt2"; checked
//                     against the run's model_config
//   world_size        data-parallel processes the plan is made for (the one
//                     place it is recorded)
//   batch_size        rows per micro-batch
//   sequence_bound    static upper bound of every sequence dimension
//   parameters        trainable parameter count; checked against the plan
//   plan_hash         contentHash of plan.json's bytes
//   files             {path in the artifact: contentHash} of the token
//                     shards, vocab.json and columns.jsonl; checked as
//                     they are read
//
// plan.json (Plan) is what the runtime executes:
//   manifest_hash Manifest::identityHash() of the manifest it was made with
//   arena_bytes   size of the one device arena every tensor lives in
//   host_bytes    size of the host pool of offloaded activations (0: none)
//   tensors       [{offset, shape, dtype[, host][, view_of]}]: dtype f32 |
//                 bf16 | f64 | i64 | i32 | bool (bool is one byte; bf16
//                 activations are stored rounded, see DType); `host: true`
//                 places the tensor in the host pool; offsets are bytes into
//                 the arena (or the pool), 64-byte aligned; views (reshapes)
//                 share their source's bytes
//   params        [{name, set, trainable, hf_transposed, tensor, grad,
//                 exp_avg, exp_avg_sq}]: the parameter table; `set` is
//                 "policy" or "reference" (the frozen model); the optimizer
//                 state indices are -1 for frozen parameters
//   programs      {NAME: {inputs: {name: tensor}, outputs: {name: tensor},
//                 calls: [{kernel, in: [tensor or -1 for an absent optional
//                 operand], out: [tensor], attrs: {...}}]}}; kernels are
//                 those of trlc/Kernels.def, with its arities; programs are
//                 train_step (one micro-batch: forward, backward, gradient
//                 accumulation), optimizer_step (clip, schedule, AdamW, clear
//                 the accumulators) and, with [data] eval or an online
//                 method, prefill and decode (generation with a KV cache,
//                 trlc/Generate.h); their cache is state under "kv:" keys
//                 placed in the activation region; under ZeRO-3 with
//                 ds3_gather_for_generation, gather_model (all_gather of
//                 every group into state "gathered:GROUP", also in the
//                 activation region, which prefill and decode read);
//                 RLOO: old_token_logps and, with beta > 0,
//                 ref_token_logps (per-token log-probabilities of the
//                 generated rows, before the step)
//   run           RunInfo: what the training loop needs from the recipe
//   zero          ZeroLayout: the ZeRO-3 groups ({"stage": 0} when
//                 parameters are replicated)
// Tensors of different programs may share arena bytes: programs never run
// at the same time, and parameters, gradients and optimizer moments
// (persistent state) are never shared.
//
// The runtime never links MLIR: it reads these files only.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_ARTIFACT_H
#define TRLC_RUNTIME_ARTIFACT_H

#include "trlc/Expected.h"
#include "trlc/Kernels.h"
#include "trlc/Shards.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace trlc::artifact {

inline constexpr int kFormatVersion = 12;
inline constexpr const char *kFormatName = "trlc-artifact";
inline constexpr const char *kManifestFile = "manifest.json";
inline constexpr const char *kRecipeFile = "recipe.toml";
inline constexpr const char *kMemoryPlanFile = "memory_plan.json";
inline constexpr const char *kPlanFile = "plan.json";
inline constexpr const char *kIrDir = "ir";
inline constexpr const char *kStepIrFile = "train_step.mlir";

struct Manifest {
  int formatVersion = kFormatVersion;
  std::string recipe;
  std::string recipeHash;
  std::string method;
  std::string modelType;
  int64_t worldSize = 1;
  int64_t batchSize = 0;
  int64_t sequenceBound = 0;
  int64_t parameters = 0;
  std::string planHash;
  std::map<std::string, std::string> files;

  nlohmann::json toJson() const;
  /// The hash of every field but plan_hash and files (plan.json records it).
  std::string identityHash() const;
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

/// The artifact's token shards (plan.json run.data): paths relative to the
/// artifact, and the dataset files they were made from with their content
/// hash, so a dataset edited after the compile is refused.
struct DataShards {
  std::string trainShard;
  std::string evalShard;  // "" without [data] eval
  /// The tokenizer's id -> text table (each token decoded alone, a JSON
  /// array) the evaluation prints with; "" without [data] eval.
  std::string vocab;
  /// GRPO: data/columns.jsonl, one JSON object per training row (its
  /// dataset fields besides a text prompt, for reward functions; a
  /// conversational prompt's messages are kept under "prompt"); "" else.
  std::string columns;
  std::vector<std::string> sources;
  std::string hash;

  nlohmann::json toJson() const;
};

/// The online methods' loop settings (plan.json run.grpo, null for the
/// others): the recipe's [grpo] or [rloo] sampling and reward keys (see
/// frontend/Recipe.h).
struct GrpoRun {
  int64_t numGenerations = 8, maxPromptLength = 0, maxCompletionLength = 0;
  double temperature = 1.0, topP = 1.0, minP = 0.0, repetitionPenalty = 1.0;
  int64_t topK = 0;
  std::vector<std::string> rewardFuncs;
  std::vector<double> rewardWeights;
  std::string formatPattern;
  double rewardTimeout = 60.0;
  std::string scaleRewards = "group";
  bool maskTruncatedCompletions = false;
  // The train_step's grpo_loss has the same (readArtifact compares them):
  double beta = 0.0, epsilonLow = 0.2, epsilonHigh = 0.2;
  std::string lossType = "dapo";  // its normaliser
  bool sequenceLevel = false;     // importance_sampling_level = "sequence"
  int64_t numIterations = 1;      // optimizer steps per generation batch
  bool normalizeAdvantages = false;  // RLOO
  /// Online DPO (method "online_dpo", two completions per prompt): beta
  /// per epoch (the last for later epochs; train_step's dpo_loss reads it
  /// from its `beta` input), the loss type, and the score taken off a
  /// completion without EOS (negative: none).
  std::vector<double> dpoBetas;
  std::string dpoLossType;
  double missingEosPenalty = -1;
  /// Online DPO's pairwise judge ("python:FILE:FUNCTION" or
  /// "command:PROGRAM"), which ranks the pairs instead of the rewards.
  std::string judge;

  /// PPO (method "ppo", one completion per prompt, numIterations =
  /// num_ppo_epochs): the rollout's settings. The value model's parameters
  /// are trained with the policy's, named "value_model.<checkpoint name>",
  /// loaded from `valueModel` ("": random) and saved under value_model/.
  struct Ppo {
    bool whitenRewards = false;
    double klCoef = 0.05;
    std::string klEstimator = "k1";
    double cliprange = 0.2, vfCoef = 0.1, cliprangeValue = 0.2, gamma = 1.0, lam = 0.95;
    double missingEosPenalty = -1;  // negative: none
    std::string valueModel;
    nlohmann::json valueConfig = nlohmann::json::object();  // saved as value_model/config.json
  };
  std::optional<Ppo> ppo;

  /// The reward models' directories ("model:DIR" of rewardFuncs, in order:
  /// model K is program reward_model_K over parameter set reward_model_K).
  std::vector<std::string> rewardModelDirs() const;

  nlohmann::json toJson() const;
};

/// What the training loop needs from the recipe (plan.json "run"); the
/// batch geometry and the world size are the manifest's.
struct RunInfo {
  int64_t gradientAccumulationSteps = 1;
  int64_t totalSteps = 0;  // optimizer steps of the whole run
  double numTrainEpochs = 0;
  int64_t seed = 0;        // the data order
  int64_t initSeed = 0;    // random initialisation without [model] path
  double initializerRange = 0.02;
  std::string modelPath;   // "" : random initialisation
  /// DPO/KTO's reference model ([dpo] ref_model); "": the initial policy.
  std::string refModelPath;
  std::string tokenizer;   // copied into checkpoints; eval decodes with it
  /// The Hugging Face config.json saved with every checkpoint; eval reads
  /// its eos/bos token ids and vocab_size.
  nlohmann::json modelConfig = nlohmann::json::object();
  int64_t padTokenId = 0;
  std::string outputDir;
  int64_t loggingSteps = 10;
  /// Checkpoints: "steps" (every saveSteps and the last step), "epoch"
  /// (every stepsPerEpoch and the last step) or "no"; with saveOnlyModel
  /// they hold the model only (no optimizer state: not resumable).
  std::string saveStrategy = "steps";
  int64_t saveSteps = 500;
  int64_t stepsPerEpoch = 1;
  bool saveOnlyModel = false;
  int64_t saveTotalLimit = -1;  // -1: keep every checkpoint
  DataShards data;
  std::optional<GrpoRun> grpo;
  /// [peft] (trl-lora): the adapters' settings (plan.json run.peft, null
  /// without LoRA), for their initialisation and adapter_config.json. The
  /// adapters are the policy's `*.lora_A.weight` / `*.lora_B.weight`
  /// parameters; every other policy parameter is the frozen base, read
  /// from model_path.
  struct Peft {
    int64_t r = 8;
    double loraAlpha = 8.0;
    std::vector<std::string> targetModules;
    bool useRslora = false;
    bool initLoraWeights = true;
    /// A PEFT adapter directory whose adapters the run starts from ("":
    /// PEFT's initialisation).
    std::string adapter;
    /// Modules trained whole (PEFT's modules_to_save): their parameters
    /// train and are saved with the adapters.
    std::vector<std::string> modulesToSave;
    /// lora_dropout as configured (adapter_config.json); the step's
    /// trl.dropout ops carry what applies.
    double loraDropout = 0;
  };
  std::optional<Peft> peft;

  nlohmann::json toJson() const;
};

/// Whether a parameter is one of trl-lora's adapters (`*.lora_A.weight`,
/// `*.lora_B.weight`).
bool isLoraAdapter(const std::string &name);

/// ZeRO-3 (trl-zero3-shard): each group of parameters is one flat buffer,
/// `shard` elements per rank; parameter `param` of the plan is this rank's
/// shard of it (with its gradient and moments), and `members` say where
/// each model tensor lies in the flat buffer.
struct ZeroGroup {
  struct Member {
    std::string name;
    int64_t offset = 0;  // elements into the flat buffer
    std::vector<int64_t> shape;
    bool hfTransposed = false;
    int64_t numel() const;
  };
  std::string name;
  int64_t numel = 0;  // members and the padding that aligns them
  int64_t shard = 0;  // elements per rank (the flat buffer is world x shard)
  int param = -1;     // index into Plan::params
  std::vector<Member> members;
};

struct ZeroLayout {
  int64_t stage = 0;  // 0: replicated (gradients all-reduced), 3: sharded
  std::vector<ZeroGroup> groups;

  nlohmann::json toJson() const;
};

struct Plan {
  std::string manifestHash;
  int64_t arenaBytes = 0;
  int64_t hostBytes = 0;  // the pinned host pool offloaded activations live in
  std::vector<TensorDesc> tensors;
  std::vector<ParamDesc> params;
  std::map<std::string, Program> programs;
  RunInfo run;
  ZeroLayout zero;

  nlohmann::json toJson() const;
};

/// An artifact as the runtime sees it: its directory, manifest and plan,
/// checked against each other.
struct Artifact {
  std::string dir;
  Manifest manifest;
  Plan plan;
};

/// Reads `dir`/plan.json, checking every tensor against the arena and every
/// call against its kernel and tensor indices. On failure returns false and
/// sets `error` to a message naming the file and the fix.
bool readPlan(const std::string &dir, Plan &plan, std::string &error);

/// Reads and validates `dir`/manifest.json. On failure returns false and
/// sets `error` to a message naming the file and the fix.
bool readManifest(const std::string &dir, Manifest &manifest,
                  std::string &error);

/// Reads the manifest and the plan and checks them against each other and
/// recipe.toml (recipe hash, model type, parameter count).
Expected<Artifact> readArtifact(const std::string &dir);

/// The rows of one of the artifact's token shards (`shard`: its path in
/// the artifact); refuses a dataset edited since the compile (its source
/// files are there and their hash differs), a shard whose bytes differ
/// from the manifest's hash, and rows whose token ids, masks or labels
/// the model cannot take.
Expected<std::vector<TokenRow>> readTokenShard(const Artifact &artifact,
                                               const std::string &shard);

/// FNV-1a 64-bit hash of `text` as 16 hex digits.
std::string contentHash(const std::string &text);

/// `path` is a plain relative path inside the artifact (no "..", not
/// absolute).
bool insideArtifact(const std::string &path);

/// The model's vocabulary size: the rows of its embedding parameter (0
/// when the plan has none).
int64_t vocabSize(const Plan &plan);

} // namespace trlc::artifact

#endif // TRLC_RUNTIME_ARTIFACT_H
