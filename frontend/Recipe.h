//===- Recipe.h - TOML training recipes: parse, validate, resolve -*- C++ -*-===//
//
// A recipe names a method (sft, dpo, kto, grpo), a model, data, training
// hyperparameters, memory options and outputs, with Hugging Face / TRL key
// names. `loadRecipe` parses the file, applies `--set` overrides, checks every
// key against the schema (Recipe.cpp), fills TRL's defaults and resolves the
// model configuration. Every error names the file, line and column.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_FRONTEND_RECIPE_H
#define TRLC_FRONTEND_RECIPE_H

#include "trlc/Expected.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trlc {

enum class Method { SFT, DPO, KTO, GRPO, RLOO, OnlineDPO, PPO, Reward };
/// The methods that generate their own completions while training.
inline bool isOnline(Method m) {
  return m == Method::GRPO || m == Method::RLOO || m == Method::OnlineDPO || m == Method::PPO;
}
const char *methodName(Method method);

/// Architecture families the graph builders know.
enum class ModelFamily { Llama, Qwen2, Qwen3, Mistral, GPT2 };
const char *familyName(ModelFamily family);

struct RopeScaling {
  double factor = 8.0;
  double lowFreqFactor = 1.0;
  double highFreqFactor = 4.0;
  int64_t originalMaxPositionEmbeddings = 8192;
};

/// A Hugging Face config.json, normalised across families.
struct ModelConfig {
  ModelFamily family = ModelFamily::Llama;
  int64_t hiddenSize = 0;
  int64_t intermediateSize = 0;
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t numKvHeads = 0;
  int64_t headDim = 0;
  int64_t vocabSize = 0;
  int64_t maxPositionEmbeddings = 0;
  double normEps = 1e-6;
  double ropeTheta = 10000.0;
  std::optional<RopeScaling> ropeScaling;
  bool tieWordEmbeddings = false;
  bool attentionBias = false;   // bias on q, k, v (and o for llama's flag)
  bool qkNorm = false;          // qwen3: RMSNorm on q and k per head
  std::string hiddenAct = "silu";
  double initializerRange = 0.02;
  std::optional<int64_t> bosTokenId, eosTokenId, padTokenId;

  /// Number of parameters of the model.
  int64_t numParameters() const;
};

struct Recipe {
  std::string file;  // the recipe's path, as given
  std::string stem;  // file name without directory and extension
  Method method = Method::SFT;

  struct Model {
    std::optional<std::string> path;  // Hugging Face model directory
    std::string dtype = "bf16";
    int64_t initSeed = 0;
    std::optional<std::string> tokenizer;
    ModelConfig config;
  } model;

  struct Data {
    std::vector<std::string> train;
    std::string trainWhere;  // "file:line:col" of [data] train, for messages
    std::vector<std::string> eval;
    std::string evalWhere;
    std::string format = "auto";
    std::string datasetTextField = "text";
    std::optional<int64_t> maxLength;
    std::optional<int64_t> maxPromptLength;
    std::optional<int64_t> maxCompletionLength;
    std::string truncationMode;
    bool packing = false;
    std::string packingStrategy = "bfd";
    bool paddingFree = false;
    std::optional<bool> completionOnlyLoss;
    bool assistantOnlyLoss = false;
    std::optional<std::string> chatTemplatePath;
    std::string onBadRow = "error";
  } data;

  struct Train {
    double learningRate = 2e-5;
    std::string lrSchedulerType = "linear";
    double warmupRatio = 0.0;
    int64_t warmupSteps = 0;
    int64_t perDeviceTrainBatchSize = 8;
    int64_t gradientAccumulationSteps = 1;
    double numTrainEpochs = 3.0;
    int64_t maxSteps = -1;
    double maxGradNorm = 1.0;
    double weightDecay = 0.0;
    double adamBeta1 = 0.9, adamBeta2 = 0.999, adamEpsilon = 1e-8;
    int64_t seed = 42;
    bool disableDropout = false;  // TRL's disable_dropout (default per method)
  } train;

  struct Memory {
    bool useLigerKernel = false;
    int64_t lossChunkSize = 0;  // 0: Liger's rule
    bool activationOffloading = false;
    bool gradientCheckpointing = true;  // TRL 1.x's default
    std::string recompute = "full";     // full (whole layers) | selective (cheap ops)
    std::optional<int64_t> budgetBytes;  // none = "auto"
    int64_t zeroStage = 0;
  } memory;

  struct Sft {
    std::string lossType = "nll";
  } sft;
  struct Dpo {
    double beta = 0.1;
    std::string lossType = "sigmoid";
    double labelSmoothing = 0.0;
    double rpoAlpha = 0.0;  // 0: no NLL term (TRL's None)
  } dpo;
  struct Kto {
    double beta = 0.1;
    std::string lossType = "kto";
    double desirableWeight = 1.0, undesirableWeight = 1.0;
  } kto;
  /// DPO and KTO's reference model ([dpo] / [kto] ref_model and
  /// precompute_ref_log_probs).
  struct Reference {
    std::optional<std::string> modelPath;  // none: the initial policy
    bool precompute = false;
  } reference;
  /// The online methods' settings: [grpo], or for RLOO the keys of
  /// [rloo] (loss_type "grpo" is unused there; the advantages are
  /// leave-one-out, the KL is in the reward), or for online DPO the
  /// sampling and reward keys of [online_dpo] (two generations per prompt).
  struct Grpo {
    int64_t numGenerations = 8;
    int64_t maxPromptLength = 512;
    int64_t maxCompletionLength = 512;
    double temperature = 1.0, topP = 1.0;
    double epsilon = 0.2, epsilonHigh = 0.2;
    double beta = 0.0;
    std::string lossType = "dapo";
    int64_t numIterations = 1;
    bool sequenceLevel = false;  // importance_sampling_level = "sequence" (GSPO)
    int64_t topK = 0;
    double minP = 0.0, repetitionPenalty = 1.0;
    /// "accuracy", "format", "length", "python:FILE:FUNCTION" (FILE made
    /// absolute) or "command:PROGRAM"; one weight each.
    std::vector<std::string> rewardFuncs;
    std::string rewardFuncsWhere;  // recipe:line:col
    /// The reward models ("model:DIR" entries of rewardFuncs, DIR made
    /// absolute), in order: each one's directory and config.
    std::vector<std::pair<std::string, ModelConfig>> rewardModels;
    std::vector<double> rewardWeights;
    std::string formatPattern;
    double rewardTimeout = 60.0;
    std::string scaleRewards = "group";
    bool maskTruncatedCompletions = false;
    bool normalizeAdvantages = false;  // RLOO
    /// Under ZeRO-3: the whole model gathered once per generation, or
    /// layer by layer at every decoding step.
    bool ds3GatherForGeneration = true;
  } grpo;
  /// Online DPO's own keys ([online_dpo]); its sampling and rewards are in
  /// `grpo`.
  struct OnlineDpo {
    /// beta per epoch: the last one for the epochs after the list.
    std::vector<double> betas{0.1};
    std::string lossType = "sigmoid";  // sigmoid | ipo
    std::optional<double> missingEosPenalty;
    /// A pairwise judge ("python:FILE:FUNCTION", FILE made absolute, or
    /// "command:PROGRAM") ranking the pairs instead of reward_funcs.
    std::optional<std::string> judge;
  } onlineDpo;
  /// PPO's own keys ([ppo]); its sampling and rewards are in `grpo`.
  struct Ppo {
    int64_t numPpoEpochs = 4;
    bool whitenRewards = false;
    double klCoef = 0.05;
    std::string klEstimator = "k1";  // k1 | k3
    double cliprange = 0.2, vfCoef = 0.1, cliprangeValue = 0.2, gamma = 1.0, lam = 0.95;
    std::optional<double> missingEosPenalty;
    /// The value model's directory ("": random, with the policy's config)
    /// and config: [ppo] value_model, else the first reward model, else
    /// the policy's model (its score head then starts random).
    std::string valueModelPath;
    ModelConfig valueModelConfig;
  } ppo;

  /// [peft]: LoRA adapters (PEFT's LoraConfig); `enabled` when the table
  /// is present. targetModules is resolved (PEFT's per-model default,
  /// "all-linear" expanded).
  struct Peft {
    bool enabled = false;
    int64_t r = 8;
    double loraAlpha = 8.0;
    std::vector<std::string> targetModules;
    bool useRslora = false;
    double loraDropout = 0;  // as configured (the step applies none with disable_dropout)
    bool initLoraWeights = true;
    std::string adapter;  // [peft] adapter: a PEFT adapter to continue (absolute), or ""
    std::vector<std::string> modulesToSave;  // trained whole, saved with the adapters
  } peft;

  struct Output {
    std::string outputDir;
    int64_t loggingSteps = 10;
    std::string saveStrategy = "steps";  // no | steps | epoch
    int64_t saveSteps = 500;
    bool saveOnlyModel = false;
    std::optional<int64_t> saveTotalLimit;
  } output;

  /// The fully resolved recipe (every key, defaults included) as TOML text.
  std::string resolvedToml;
  /// Settings that are allowed but probably not meant, as
  /// `file:line:col: warning: ...`; the compiler prints them.
  std::vector<std::string> warnings;
};

/// Loads, overrides, validates and resolves a recipe. `overrides` are
/// `section.key=value` strings from `--set`.
Expected<Recipe> loadRecipe(const std::string &path,
                            const std::vector<std::string> &overrides = {});

/// Checks that the files the recipe names exist (globs are expanded by the
/// data pipeline and not checked here).
std::optional<Error> checkInputFiles(const Recipe &recipe);

/// The same from TOML text (for tests); `path` is used in messages and to
/// resolve relative paths.
Expected<Recipe> parseRecipe(const std::string &text, const std::string &path,
                             const std::vector<std::string> &overrides = {});

} // namespace trlc

#endif // TRLC_FRONTEND_RECIPE_H
