//===- Schedule.cpp - what the recipe and the data decide -----------------===//

#include "compiler/Schedule.h"
#include "frontend/ModelConfig.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace trlc::compiler {

StepShape stepShape(const Recipe &r, const DataFacts &data, int world) {
  StepShape s = recipeStepShape(r);
  s.worldSize = world;
  if (isOnline(r.method))
    return s;
  if (r.method != Method::SFT) {
    // DPO and KTO: the longest sequence of the data plan (rounded up to 8)
    // bounds each row; padding-free DPO puts a batch's pairs in one row.
    int64_t limit = s.sequenceBound, longest = std::max(data.longest, data.evalLongest);
    int64_t bound = std::min(limit, (longest + 7) / 8 * 8);
    if (longest > 0 && bound < limit) {
      s.sequenceBound = bound;
      s.boundSource = "data plan: longest sequence " + std::to_string(longest) +
                      " (bound " + std::to_string(limit) + ", from max_length)";
    }
    if (r.method == Method::DPO && r.data.paddingFree) {
      // No batch holds more tokens than the batch of the longest pairs.
      s.packedPairs = true;
      s.sequenceLimit = s.sequenceBound;
      s.sequenceBound *= 2 * s.batch;
      s.boundSource = "padding-free pairs: 2 x " + std::to_string(s.batch) + " sequences of " +
                      std::to_string(s.sequenceLimit) + " (" + s.boundSource + ")";
      int64_t most = (data.longestBatch + 7) / 8 * 8;
      if (data.longestBatch > 0 && most < s.sequenceBound) {
        s.sequenceBound = most;
        s.boundSource = "data plan: the " + std::to_string(s.batch) +
                        " longest pairs hold " + std::to_string(data.longestBatch) +
                        " tokens (padding-free pairs)";
      }
    }
    return s;
  }
  if (r.data.paddingFree && !r.data.packing) {
    // Padding-free: one row holds a whole batch, documents back to back.
    s.sequenceLimit = s.sequenceBound;
    s.sequenceBound *= s.batch;
    s.batch = 1;
  }
  int64_t limit = s.sequenceBound;
  int64_t longest = std::max(data.longest, data.evalLongest);
  int64_t bound = std::min(limit, (longest + 7) / 8 * 8);
  if (longest > 0 && bound < limit) {
    s.sequenceBound = bound;
    s.boundSource = "data plan: longest row " + std::to_string(longest) + " (bound " +
                    std::to_string(limit) + ", from max_length)";
  }
  return s;
}

Expected<Schedule> trainingSchedule(const Recipe &r, const StepShape &shape, int64_t rows,
                                    int world) {
  Schedule s;
  if (rows == 0)
    return Error{r.data.trainWhere +
                 ": error: no training example is left after the data plan "
                 "(see trlc data --stats)"};
  // GRPO's rows are prompts, num_generations completions each; online
  // DPO's batch counts prompts (pairs).
  int64_t global = isOnline(r.method) && r.method != Method::OnlineDPO
                       ? std::max<int64_t>(shape.batch / r.grpo.numGenerations, 1) * world
                       : shape.batch * world;
  int64_t batches = (rows + global - 1) / global;
  int64_t perEpoch = std::max<int64_t>(batches / r.train.gradientAccumulationSteps, 1);
  // GRPO trains num_iterations optimizer steps on each generation batch.
  if (isOnline(r.method))
    perEpoch *= r.grpo.numIterations;
  s.stepsPerEpoch = perEpoch;
  s.totalSteps = r.train.maxSteps > 0
                     ? r.train.maxSteps
                     : static_cast<int64_t>(std::ceil(r.train.numTrainEpochs * perEpoch));
  s.warmupSteps = r.train.warmupSteps > 0
                      ? r.train.warmupSteps
                      : static_cast<int64_t>(std::ceil(r.train.warmupRatio * s.totalSteps));
  return s;
}

mlir::trl::PipelineOptions pipelineOptions(const Recipe &r, const Schedule &s, int world) {
  mlir::trl::PipelineOptions o;
  o.packing = ((r.data.packing || r.data.paddingFree) && r.method == Method::SFT) ||
              (r.data.paddingFree && r.method == Method::DPO);
  o.fuseLoss = r.memory.useLigerKernel;
  if (r.peft.enabled) {
    for (const std::string &t : r.peft.targetModules)
      o.loraTargets += (o.loraTargets.empty() ? "" : ",") + t;
    o.loraRank = r.peft.r;
    o.loraAlpha = r.peft.loraAlpha;
    o.loraRslora = r.peft.useRslora;
    for (const std::string &m : r.peft.modulesToSave)
      o.loraSave += (o.loraSave.empty() ? "" : ",") + m;
    o.loraDropout = r.train.disableDropout ? 0 : r.peft.loraDropout;
    if (r.method == Method::PPO)
      o.loraKeep = "value_model.";  // the value model trains whole, as TRL's
  }
  o.lossChunkSize = r.memory.lossChunkSize;
  o.mixedPrecision = r.model.dtype == "bf16";
  o.offload = r.memory.activationOffloading;
  o.recompute = r.memory.gradientCheckpointing && r.memory.recompute == "selective";
  o.recomputeLayers = r.memory.gradientCheckpointing && r.memory.recompute == "full";
  o.zeroStage = r.memory.zeroStage;
  o.worldSize = world;
  o.gatherForGeneration = !isOnline(r.method) || r.grpo.ds3GatherForGeneration;
  o.maxGradNorm = r.train.maxGradNorm;
  o.learningRate = r.train.learningRate;
  o.schedule = r.train.lrSchedulerType;
  o.warmupSteps = s.warmupSteps;
  o.totalSteps = s.totalSteps;
  o.beta1 = r.train.adamBeta1;
  o.beta2 = r.train.adamBeta2;
  o.epsilon = r.train.adamEpsilon;
  o.weightDecay = r.train.weightDecay;
  return o;
}

namespace {
/// `c` as transformers saves its *ForSequenceClassification with one label
/// (a reward or value model): the class, id2label / label2id, and the
/// padding id it finds each sequence's last token by.
nlohmann::json sequenceClassifierConfig(const ModelConfig &c, int64_t pad) {
  nlohmann::json j = nlohmann::json::parse(configToHfJson(c));
  std::string arch = j["architectures"][0].get<std::string>();
  for (const char *head : {"ForCausalLM", "LMHeadModel"})
    if (size_t at = arch.find(head); at != std::string::npos)
      arch = arch.substr(0, at) + "ForSequenceClassification";
  j["architectures"] = {arch};
  j["id2label"] = {{"0", "LABEL_0"}};
  j["label2id"] = {{"LABEL_0", 0}};
  if (!j.contains("pad_token_id") || j["pad_token_id"].is_null())
    j["pad_token_id"] = pad;
  return j;
}
} // namespace

artifact::RunInfo runInfo(const Recipe &r, const Schedule &s) {
  namespace fs = std::filesystem;
  auto absolute = [](const std::string &path) {
    return fs::absolute(path).lexically_normal().string();
  };
  artifact::RunInfo run;
  run.gradientAccumulationSteps = r.train.gradientAccumulationSteps;
  run.totalSteps = s.totalSteps;
  run.numTrainEpochs = r.train.numTrainEpochs;
  run.seed = r.train.seed;
  run.initSeed = r.model.initSeed;
  run.initializerRange = r.model.config.initializerRange;
  run.modelPath = r.model.path ? absolute(*r.model.path) : std::string();
  if (r.reference.modelPath)
    run.refModelPath = absolute(*r.reference.modelPath);
  if (r.model.tokenizer)
    run.tokenizer = absolute(*r.model.tokenizer);
  else if (r.model.path)
    run.tokenizer = absolute(*r.model.path);
  run.padTokenId = r.model.config.padTokenId.value_or(r.model.config.eosTokenId.value_or(0));
  // A reward model saves as the sequence classifier it is.
  run.modelConfig = r.method == Method::Reward
                        ? sequenceClassifierConfig(r.model.config, run.padTokenId)
                        : nlohmann::json::parse(configToHfJson(r.model.config));
  run.outputDir = absolute(r.output.outputDir);
  run.loggingSteps = r.output.loggingSteps;
  run.saveStrategy = r.output.saveStrategy;
  run.saveSteps = r.output.saveSteps;
  run.saveOnlyModel = r.output.saveOnlyModel;
  run.stepsPerEpoch = s.stepsPerEpoch;
  run.saveTotalLimit = r.output.saveTotalLimit.value_or(-1);
  if (r.peft.enabled)
    run.peft = artifact::RunInfo::Peft{r.peft.r, r.peft.loraAlpha, r.peft.targetModules,
                                       r.peft.useRslora, r.peft.initLoraWeights, r.peft.adapter,
                                       r.peft.modulesToSave, r.peft.loraDropout};
  if (isOnline(r.method)) {
    artifact::GrpoRun g;
    g.numGenerations = r.grpo.numGenerations;
    g.maxPromptLength = r.grpo.maxPromptLength;
    g.maxCompletionLength = r.grpo.maxCompletionLength;
    g.temperature = r.grpo.temperature;
    g.topP = r.grpo.topP;
    g.topK = r.grpo.topK;
    g.minP = r.grpo.minP;
    g.repetitionPenalty = r.grpo.repetitionPenalty;
    g.rewardFuncs = r.grpo.rewardFuncs;
    g.rewardWeights = r.grpo.rewardWeights;
    g.formatPattern = r.grpo.formatPattern;
    g.rewardTimeout = r.grpo.rewardTimeout;
    g.scaleRewards = r.grpo.scaleRewards;
    g.maskTruncatedCompletions = r.grpo.maskTruncatedCompletions;
    g.beta = r.grpo.beta;
    g.lossType = r.grpo.lossType;
    g.epsilonLow = r.grpo.epsilon;
    g.epsilonHigh = r.grpo.epsilonHigh;
    g.sequenceLevel = r.grpo.sequenceLevel;
    g.numIterations = r.grpo.numIterations;
    g.normalizeAdvantages = r.grpo.normalizeAdvantages;
    if (r.method == Method::PPO) {
      artifact::GrpoRun::Ppo p;
      p.whitenRewards = r.ppo.whitenRewards;
      p.klCoef = r.ppo.klCoef;
      p.klEstimator = r.ppo.klEstimator;
      p.cliprange = r.ppo.cliprange;
      p.vfCoef = r.ppo.vfCoef;
      p.cliprangeValue = r.ppo.cliprangeValue;
      p.gamma = r.ppo.gamma;
      p.lam = r.ppo.lam;
      p.missingEosPenalty = r.ppo.missingEosPenalty.value_or(-1.0);
      p.valueModel = r.ppo.valueModelPath;
      p.valueConfig = sequenceClassifierConfig(r.ppo.valueModelConfig, run.padTokenId);
      g.ppo = p;
    }
    if (r.method == Method::OnlineDPO) {
      g.dpoBetas = r.onlineDpo.betas;
      g.dpoLossType = r.onlineDpo.lossType;
      g.missingEosPenalty = r.onlineDpo.missingEosPenalty.value_or(-1.0);
      g.judge = r.onlineDpo.judge.value_or("");
    }
    run.grpo = g;
  }
  return run;
}

} // namespace trlc::compiler
