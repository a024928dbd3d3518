//===- Artifact.cpp - reading and writing the artifact contract -----------===//

#include "trlc/Artifact.h"
#include "trlc/Files.h"
#include "trlc/Contract.h"
#include "trlc/Hash.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace trlc::artifact {

namespace {

/// j[key] as T; a missing key or another type throws FieldError naming it.
struct FieldError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T> T field(const json &j, const char *key) {
  if (!j.is_object() || !j.contains(key))
    throw FieldError(std::string("'") + key + "' is missing");
  const json &v = j[key];
  auto wrong = [&](const char *what) {
    return FieldError(std::string("'") + key + "' must be " + what + ", not " +
                      std::string(v.type_name()) +
                      (v.is_primitive() ? " " + v.dump().substr(0, 40) : std::string()));
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean())
      throw wrong("true or false");
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer() ||
        (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<T>::max())) ||
        (!v.is_number_unsigned() && (v.get<int64_t>() < std::numeric_limits<T>::min() ||
                                     v.get<int64_t>() > std::numeric_limits<T>::max())))
      throw wrong("an integer in range");
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number())
      throw wrong("a number");
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string())
      throw wrong("a string");
  } else {
    if (!v.is_array())
      throw wrong("an array");
    for (const json &e : v)
      if (!e.is_number() && !e.is_string())
        throw wrong("an array of numbers or strings");
    try {
      return v.get<T>();
    } catch (const json::exception &) {
      throw wrong("an array of the right element type");
    }
  }
  return v.get<T>();
}

/// The file's JSON object, or an error naming it.
bool readJson(const fs::path &file, json &j, std::string &error) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    error = "missing";
    return false;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  j = json::parse(buffer.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "not valid JSON";
    return false;
  }
  return true;
}

std::string readText(const fs::path &file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

DataShards dataShardsFromJson(const json &j) {
  DataShards d;
  d.trainShard = field<std::string>(j, "train_shard");
  d.evalShard = field<std::string>(j, "eval_shard");
  d.vocab = field<std::string>(j, "vocab");
  d.columns = field<std::string>(j, "columns");
  d.sources = field<std::vector<std::string>>(j, "sources");
  d.hash = field<std::string>(j, "hash");
  return d;
}

RunInfo runInfoFromJson(const json &j) {
  RunInfo r;
  r.gradientAccumulationSteps = field<int64_t>(j, "gradient_accumulation_steps");
  r.totalSteps = field<int64_t>(j, "total_steps");
  r.numTrainEpochs = field<double>(j, "num_train_epochs");
  r.seed = field<int64_t>(j, "seed");
  r.initSeed = field<int64_t>(j, "init_seed");
  r.initializerRange = field<double>(j, "initializer_range");
  r.modelPath = field<std::string>(j, "model_path");
  r.refModelPath = field<std::string>(j, "ref_model_path");
  r.tokenizer = field<std::string>(j, "tokenizer");
  r.modelConfig = j.at("model_config");
  r.padTokenId = field<int64_t>(j, "pad_token_id");
  r.outputDir = field<std::string>(j, "output_dir");
  r.loggingSteps = field<int64_t>(j, "logging_steps");
  r.saveStrategy = field<std::string>(j, "save_strategy");
  if (r.saveStrategy != "no" && r.saveStrategy != "steps" && r.saveStrategy != "epoch")
    throw json::other_error::create(501, "save_strategy must be no, steps or epoch", &j);
  r.saveSteps = field<int64_t>(j, "save_steps");
  r.stepsPerEpoch = field<int64_t>(j, "steps_per_epoch");
  r.saveOnlyModel = field<bool>(j, "save_only_model");
  r.saveTotalLimit = field<int64_t>(j, "save_total_limit");
  r.data = dataShardsFromJson(j.at("data"));
  if (!j.contains("peft"))
    throw FieldError("'peft' is missing");
  if (const json &p = j.at("peft"); !p.is_null()) {
    RunInfo::Peft o;
    o.r = field<int64_t>(p, "r");
    o.loraAlpha = field<double>(p, "lora_alpha");
    o.targetModules = field<std::vector<std::string>>(p, "target_modules");
    o.useRslora = field<bool>(p, "use_rslora");
    o.initLoraWeights = field<bool>(p, "init_lora_weights");
    o.adapter = field<std::string>(p, "adapter");
    o.modulesToSave = field<std::vector<std::string>>(p, "modules_to_save");
    if (p.contains("lora_dropout"))  // (artifacts before it had none)
      o.loraDropout = field<double>(p, "lora_dropout");
    if (o.r < 1 || !(o.loraAlpha > 0) || o.targetModules.empty() ||
        !(o.loraDropout >= 0 && o.loraDropout < 1))
      throw json::other_error::create(
          501, "peft needs r >= 1, lora_alpha > 0, target_modules and lora_dropout in [0, 1)", &p);
    r.peft = o;
  }
  if (j.contains("grpo") && !j.at("grpo").is_null()) {
    const json &g = j.at("grpo");
    GrpoRun o;
    o.numGenerations = field<int64_t>(g, "num_generations");
    o.maxPromptLength = field<int64_t>(g, "max_prompt_length");
    o.maxCompletionLength = field<int64_t>(g, "max_completion_length");
    o.temperature = field<double>(g, "temperature");
    o.topP = field<double>(g, "top_p");
    o.topK = field<int64_t>(g, "top_k");
    o.minP = field<double>(g, "min_p");
    o.repetitionPenalty = field<double>(g, "repetition_penalty");
    o.rewardFuncs = field<std::vector<std::string>>(g, "reward_funcs");
    o.rewardWeights = field<std::vector<double>>(g, "reward_weights");
    o.formatPattern = field<std::string>(g, "format_pattern");
    o.rewardTimeout = field<double>(g, "reward_timeout");
    o.scaleRewards = field<std::string>(g, "scale_rewards");
    o.maskTruncatedCompletions = field<bool>(g, "mask_truncated_completions");
    o.beta = field<double>(g, "beta");
    o.lossType = field<std::string>(g, "loss_type");
    o.epsilonLow = field<double>(g, "epsilon");
    o.epsilonHigh = field<double>(g, "epsilon_high");
    std::string level = field<std::string>(g, "importance_sampling_level");
    o.sequenceLevel = level == "sequence";
    o.numIterations = field<int64_t>(g, "num_iterations");
    o.normalizeAdvantages = field<bool>(g, "normalize_advantages");
    if (const json &d = g.at("ppo"); !d.is_null()) {
      GrpoRun::Ppo p;
      p.whitenRewards = field<bool>(d, "whiten_rewards");
      p.klCoef = field<double>(d, "kl_coef");
      p.klEstimator = field<std::string>(d, "kl_estimator");
      p.cliprange = field<double>(d, "cliprange");
      p.vfCoef = field<double>(d, "vf_coef");
      p.cliprangeValue = field<double>(d, "cliprange_value");
      p.gamma = field<double>(d, "gamma");
      p.lam = field<double>(d, "lam");
      json penalty = d.at("missing_eos_penalty");
      p.missingEosPenalty = penalty.is_null() ? -1.0 : field<double>(d, "missing_eos_penalty");
      p.valueModel = field<std::string>(d, "value_model");
      p.valueConfig = d.at("value_config");
      bool ok = (p.klEstimator == "k1" || p.klEstimator == "k3") && p.klCoef >= 0 &&
                p.cliprange >= 0 && p.vfCoef >= 0 && p.cliprangeValue >= 0 &&
                p.gamma >= 0 && p.gamma <= 1 && p.lam >= 0 && p.lam <= 1 &&
                p.valueConfig.is_object() && o.numGenerations == 1 &&
                (penalty.is_null() || p.missingEosPenalty >= 0);
      if (!ok)
        throw json::other_error::create(501, "ppo settings out of range", &d);
      o.ppo = p;
    }
    if (const json &d = g.at("online_dpo"); !d.is_null()) {
      o.dpoBetas = field<std::vector<double>>(d, "beta");
      o.dpoLossType = field<std::string>(d, "loss_type");
      json penalty = d.at("missing_eos_penalty");
      o.missingEosPenalty = penalty.is_null() ? -1.0 : field<double>(d, "missing_eos_penalty");
      json judge = d.at("judge");
      o.judge = judge.is_null() ? std::string() : field<std::string>(d, "judge");
      bool ok = !o.dpoBetas.empty() && (o.dpoLossType == "sigmoid" || o.dpoLossType == "ipo") &&
                (penalty.is_null() || (o.missingEosPenalty >= 0 &&
                                       std::isfinite(o.missingEosPenalty))) &&
                o.numGenerations == 2 &&
                (judge.is_null() || o.judge.rfind("python:", 0) == 0 ||
                 o.judge.rfind("command:", 0) == 0);
      for (double b : o.dpoBetas)
        ok = ok && b > 0 && std::isfinite(b);
      if (!ok)
        throw json::other_error::create(501, "online_dpo settings out of range", &d);
    }
    if ((level != "token" && level != "sequence") || o.numIterations < 1 ||
        o.numGenerations < (o.ppo ? 1 : 2) || o.maxPromptLength < 1 ||
        o.maxCompletionLength < 1 ||
        !(o.temperature > 0) || !(o.topP > 0 && o.topP <= 1) || o.topK < 0 ||
        !(o.minP >= 0 && o.minP <= 1) || !(o.repetitionPenalty > 0) ||
        (o.rewardFuncs.empty() && o.judge.empty()) ||
        o.rewardWeights.size() != o.rewardFuncs.size() ||
        !(o.rewardTimeout > 0) ||
        (o.scaleRewards != "group" && o.scaleRewards != "batch" && o.scaleRewards != "none") ||
        (o.lossType != "grpo" && o.lossType != "bnpo" && o.lossType != "dr_grpo" &&
         o.lossType != "dapo"))
      throw json::other_error::create(501, "grpo settings out of range", &g);
    r.grpo = o;
  }
  return r;
}


ZeroLayout zeroLayoutFromJson(const json &j) {
  ZeroLayout z;
  z.stage = field<int64_t>(j, "stage");
  for (const json &g : j.value("groups", json::array())) {
    ZeroGroup group;
    group.name = field<std::string>(g, "name");
    group.numel = field<int64_t>(g, "numel");
    group.shard = field<int64_t>(g, "shard");
    group.param = field<int>(g, "param");
    for (const json &m : g.at("members"))
      group.members.push_back({field<std::string>(m, "name"), field<int64_t>(m, "offset"),
                               field<std::vector<int64_t>>(m, "shape"),
                               field<bool>(m, "hf_transposed")});
    z.groups.push_back(std::move(group));
  }
  return z;
}

} // namespace

std::string contentHash(const std::string &text) { return hashHex(fnv1a(text)); }

namespace {
json identityJson(const Manifest &m) {
  return {{"format", kFormatName},
          {"format_version", m.formatVersion},
          {"recipe", m.recipe},
          {"recipe_hash", m.recipeHash},
          {"method", m.method},
          {"model_type", m.modelType},
          {"world_size", m.worldSize},
          {"batch_size", m.batchSize},
          {"sequence_bound", m.sequenceBound},
          {"parameters", m.parameters}};
}
} // namespace

std::string Manifest::identityHash() const { return contentHash(identityJson(*this).dump()); }

bool insideArtifact(const std::string &path) {
  fs::path p(path);
  if (p.empty() || !p.is_relative())
    return false;
  for (const fs::path &part : p)
    if (part == ".." || part == ".")
      return false;
  return true;
}

int64_t vocabSize(const Plan &plan) {
  auto isEmbedding = [](const std::string &name) {
    return name == "model.embed_tokens.weight" || name == "transformer.wte.weight";
  };
  for (const ParamDesc &p : plan.params)
    if (p.set == "policy" && isEmbedding(p.name)) {
      const TensorDesc &t = plan.tensors[p.tensor];
      return t.shape.size() == 2 ? t.shape[0] : 0;
    }
  // Under ZeRO-3 the embedding is a member of a policy group.
  for (const ZeroGroup &g : plan.zero.groups)
    if (g.param >= 0 && static_cast<size_t>(g.param) < plan.params.size() &&
        plan.params[g.param].set == "policy")
      for (const ZeroGroup::Member &m : g.members)
        if (isEmbedding(m.name))
          return m.shape.size() == 2 ? m.shape[0] : 0;
  return 0;
}

json Manifest::toJson() const {
  json j = identityJson(*this);
  j["plan_hash"] = planHash;
  j["files"] = files;
  return j;
}

bool readManifest(const std::string &dir, Manifest &m, std::string &error) {
  fs::path file = fs::path(dir) / kManifestFile;
  if (!isDirectory(dir)) {
    error = dir + ": error: not a trlc artifact directory (compile one with "
                  "`trlc compile RECIPE.toml -o " + dir + "`)";
    return false;
  }
  json j;
  std::string why;
  if (!readJson(file, j, why)) {
    error = why == "missing" ? file.string() + ": error: missing; " + dir +
                                   " is not a trlc artifact (recompile it with `trlc compile`)"
                             : file.string() + ": error: " + why +
                                   "; recompile the artifact with `trlc compile`";
    return false;
  }
  auto fail = [&](const std::string &msg) {
    error = file.string() + ": error: " + msg;
    return false;
  };
  if (!j.contains("format") || j["format"] != kFormatName)
    return fail("not a trlc artifact manifest (no \"format\": \"trlc-artifact\")");
  if (!j.contains("format_version") || !j["format_version"].is_number_integer())
    return fail("missing integer \"format_version\"");
  m.formatVersion = j["format_version"].get<int>();
  if (m.formatVersion != kFormatVersion)
    return fail("artifact format version " + std::to_string(m.formatVersion) +
                " is not supported by this runtime (version " +
                std::to_string(kFormatVersion) +
                "); recompile the recipe with this trlc");
  auto str = [&](const char *key, std::string &out) {
    if (!j.contains(key) || !j[key].is_string())
      return fail(std::string("missing string \"") + key + "\"");
    out = j[key].get<std::string>();
    return true;
  };
  auto num = [&](const char *key, int64_t &out) {
    if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<int64_t>() < 0)
      return fail(std::string("missing non-negative integer \"") + key + "\"");
    out = j[key].get<int64_t>();
    return true;
  };
  if (!(str("recipe", m.recipe) && str("recipe_hash", m.recipeHash) &&
        str("method", m.method) && str("model_type", m.modelType) &&
        num("world_size", m.worldSize) && num("batch_size", m.batchSize) &&
        num("sequence_bound", m.sequenceBound) && num("parameters", m.parameters)))
    return false;
  if (m.worldSize < 1)
    return fail("\"world_size\" must be at least 1");
  if (!str("plan_hash", m.planHash))
    return false;
  if (!j.contains("files") || !j["files"].is_object())
    return fail("missing object \"files\"");
  for (const auto &[path, hash] : j["files"].items()) {
    if (!hash.is_string())
      return fail("\"files\": the hash of '" + path + "' must be a string");
    if (!insideArtifact(path))
      return fail("\"files\" names '" + path + "', which is not a path inside the artifact");
    m.files[path] = hash.get<std::string>();
  }
  return true;
}

int64_t dtypeBytes(DType d) {
  switch (d) {
  case DType::F32: return 4;
  case DType::BF16: return 2;
  case DType::F64: return 8;
  case DType::I64: return 8;
  case DType::I32: return 4;
  case DType::Bool: return 1;
  }
  return 0;
}

const char *dtypeName(DType d) {
  switch (d) {
  case DType::F32: return "f32";
  case DType::BF16: return "bf16";
  case DType::F64: return "f64";
  case DType::I64: return "i64";
  case DType::I32: return "i32";
  case DType::Bool: return "bool";
  }
  return "?";
}

namespace {
int64_t product(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}
} // namespace

int64_t TensorDesc::numel() const { return product(shape); }
int64_t ZeroGroup::Member::numel() const { return product(shape); }

std::vector<std::string> GrpoRun::rewardModelDirs() const {
  std::vector<std::string> out;
  for (const std::string &f : rewardFuncs)
    if (f.rfind("model:", 0) == 0)
      out.push_back(f.substr(6));
  return out;
}

json GrpoRun::toJson() const {
  return {{"num_generations", numGenerations},
          {"max_prompt_length", maxPromptLength},
          {"max_completion_length", maxCompletionLength},
          {"temperature", temperature},
          {"top_p", topP},
          {"top_k", topK},
          {"min_p", minP},
          {"repetition_penalty", repetitionPenalty},
          {"reward_funcs", rewardFuncs},
          {"reward_weights", rewardWeights},
          {"format_pattern", formatPattern},
          {"reward_timeout", rewardTimeout},
          {"scale_rewards", scaleRewards},
          {"mask_truncated_completions", maskTruncatedCompletions},
          {"beta", beta},
          {"epsilon", epsilonLow},
          {"epsilon_high", epsilonHigh},
          {"loss_type", lossType},
          {"importance_sampling_level", sequenceLevel ? "sequence" : "token"},
          {"num_iterations", numIterations},
          {"normalize_advantages", normalizeAdvantages},
          {"ppo", !ppo ? json(nullptr)
                       : json{{"whiten_rewards", ppo->whitenRewards},
                              {"kl_coef", ppo->klCoef},
                              {"kl_estimator", ppo->klEstimator},
                              {"cliprange", ppo->cliprange},
                              {"vf_coef", ppo->vfCoef},
                              {"cliprange_value", ppo->cliprangeValue},
                              {"gamma", ppo->gamma},
                              {"lam", ppo->lam},
                              {"missing_eos_penalty", ppo->missingEosPenalty < 0
                                                          ? json(nullptr)
                                                          : json(ppo->missingEosPenalty)},
                              {"value_model", ppo->valueModel},
                              {"value_config", ppo->valueConfig}}},
          {"online_dpo", dpoBetas.empty()
                             ? json(nullptr)
                             : json{{"beta", dpoBetas},
                                    {"loss_type", dpoLossType},
                                    {"missing_eos_penalty", missingEosPenalty < 0
                                                                ? json(nullptr)
                                                                : json(missingEosPenalty)},
                                    {"judge", judge.empty() ? json(nullptr) : json(judge)}}}};
}

json DataShards::toJson() const {
  return {{"train_shard", trainShard}, {"eval_shard", evalShard}, {"vocab", vocab},
          {"columns", columns}, {"sources", sources}, {"hash", hash}};
}

bool isLoraAdapter(const std::string &name) {
  auto ends = [&](std::string_view s) {
    return name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return ends(".lora_A.weight") || ends(".lora_B.weight");
}

json RunInfo::toJson() const {
  return {{"gradient_accumulation_steps", gradientAccumulationSteps},
          {"total_steps", totalSteps},
          {"num_train_epochs", numTrainEpochs},
          {"seed", seed},
          {"init_seed", initSeed},
          {"initializer_range", initializerRange},
          {"model_path", modelPath},
          {"ref_model_path", refModelPath},
          {"tokenizer", tokenizer},
          {"model_config", modelConfig},
          {"pad_token_id", padTokenId},
          {"output_dir", outputDir},
          {"logging_steps", loggingSteps},
          {"save_strategy", saveStrategy},
          {"save_steps", saveSteps},
          {"steps_per_epoch", stepsPerEpoch},
          {"save_only_model", saveOnlyModel},
          {"save_total_limit", saveTotalLimit},
          {"data", data.toJson()},
          {"grpo", grpo ? grpo->toJson() : json(nullptr)},
          {"peft", peft ? json{{"r", peft->r},
                               {"lora_alpha", peft->loraAlpha},
                               {"target_modules", peft->targetModules},
                               {"use_rslora", peft->useRslora},
                               {"init_lora_weights", peft->initLoraWeights},
                               {"adapter", peft->adapter},
                               {"modules_to_save", peft->modulesToSave},
                               {"lora_dropout", peft->loraDropout}}
                        : json(nullptr)}};
}

json ZeroLayout::toJson() const {
  json out = {{"stage", stage}};
  if (groups.empty())
    return out;
  out["groups"] = json::array();
  for (const ZeroGroup &g : groups) {
    json members = json::array();
    for (const ZeroGroup::Member &m : g.members)
      members.push_back({{"name", m.name}, {"offset", m.offset}, {"shape", m.shape},
                         {"hf_transposed", m.hfTransposed}});
    out["groups"].push_back({{"name", g.name}, {"numel", g.numel}, {"shard", g.shard},
                             {"param", g.param}, {"members", members}});
  }
  return out;
}

json Plan::toJson() const {
  json jt = json::array();
  for (const TensorDesc &t : tensors) {
    json d = {{"offset", t.offset}, {"shape", t.shape}, {"dtype", dtypeName(t.dtype)}};
    if (t.host)
      d["host"] = true;
    if (t.viewOf >= 0)
      d["view_of"] = t.viewOf;
    jt.push_back(std::move(d));
  }
  json jp = json::array();
  for (const ParamDesc &p : params)
    jp.push_back({{"name", p.name}, {"set", p.set},
                  {"trainable", p.trainable},
                  {"hf_transposed", p.hfTransposed}, {"tensor", p.tensor},
                  {"grad", p.grad}, {"exp_avg", p.expAvg},
                  {"exp_avg_sq", p.expAvgSq}});
  json jprog = json::object();
  for (const auto &[name, prog] : programs) {
    json calls = json::array();
    for (const KernelCall &c : prog.calls)
      calls.push_back({{"kernel", kernelName(c.kernel)}, {"in", c.in}, {"out", c.out},
                       {"attrs", c.attrs}});
    jprog[name] = {{"inputs", prog.inputs},
                   {"outputs", prog.outputs},
                   {"calls", calls}};
  }
  return {{"format_version", kFormatVersion},
          {"manifest_hash", manifestHash},
          {"arena_bytes", arenaBytes},
          {"host_bytes", hostBytes},
          {"tensors", jt},
          {"params", jp},
          {"programs", jprog},
          {"run", run.toJson()},
          {"zero", zero.toJson()}};
}

bool readPlan(const std::string &dir, Plan &plan, std::string &error) {
  fs::path file = fs::path(dir) / kPlanFile;
  auto fail = [&](const std::string &msg) {
    error = file.string() + ": error: " + msg +
            "; recompile the artifact with `trlc compile`";
    return false;
  };
  json j;
  std::string why;
  if (!readJson(file, j, why))
    return fail(why);
  try {
    if (field<int>(j, "format_version") != kFormatVersion)
      return fail("plan format version " +
                  std::to_string(field<int>(j, "format_version")) +
                  " is not version " + std::to_string(kFormatVersion));
    plan.manifestHash = field<std::string>(j, "manifest_hash");
    plan.arenaBytes = field<int64_t>(j, "arena_bytes");
    if (plan.arenaBytes < 0)
      return fail("negative arena_bytes");
    plan.hostBytes = j.value("host_bytes", int64_t(0));
    if (plan.hostBytes < 0)
      return fail("negative host_bytes");
    for (const auto &t : j.at("tensors")) {
      TensorDesc d;
      d.offset = field<int64_t>(t, "offset");
      d.host = t.value("host", false);
      d.viewOf = t.value("view_of", -1);
      d.shape = field<std::vector<int64_t>>(t, "shape");
      std::string dt = field<std::string>(t, "dtype");
      bool known = false;
      for (DType k : {DType::F32, DType::BF16, DType::F64, DType::I64, DType::I32,
                      DType::Bool})
        if (dt == dtypeName(k)) {
          d.dtype = k;
          known = true;
        }
      if (!known)
        return fail("tensor " + std::to_string(plan.tensors.size()) +
                    " has unknown dtype '" + dt + "'");
      std::string which = "tensor " + std::to_string(plan.tensors.size());
      // Checked arithmetic: no element count or byte range may wrap.
      int64_t elements = 1;
      for (int64_t dim : d.shape)
        if (dim < 1 || __builtin_mul_overflow(elements, dim, &elements) ||
            elements > (int64_t(1) << 56))
          return fail(which + " has a dimension below 1 or more elements than any device holds");
      if (d.viewOf < -1 || d.viewOf >= static_cast<int>(plan.tensors.size()))
        return fail(which + " is a view of a tensor that does not precede it");
      int64_t limit = d.host ? plan.hostBytes : plan.arenaBytes;
      if (d.offset < 0 || d.offset % 64 != 0 || d.offset > limit || d.bytes() > limit - d.offset)
        return fail(which + " lies outside the " + (d.host ? "host pool" : "arena") +
                    " or is misaligned");
      if (d.viewOf >= 0) {
        const TensorDesc &src = plan.tensors[d.viewOf];
        if (src.host != d.host || d.offset < src.offset ||
            d.offset - src.offset > src.bytes() - d.bytes())
          return fail(which + " is a view reaching outside tensor " +
                      std::to_string(d.viewOf));
      }
      plan.tensors.push_back(std::move(d));
    }
    int n = static_cast<int>(plan.tensors.size());
    auto valid = [&](int t, bool optional) {
      return (optional && t == -1) || (t >= 0 && t < n);
    };
    for (const auto &p : j.at("params")) {
      ParamDesc d;
      d.name = field<std::string>(p, "name");
      d.set = field<std::string>(p, "set");
      d.trainable = field<bool>(p, "trainable");
      d.hfTransposed = field<bool>(p, "hf_transposed");
      d.tensor = field<int>(p, "tensor");
      d.grad = field<int>(p, "grad");
      d.expAvg = field<int>(p, "exp_avg");
      d.expAvgSq = field<int>(p, "exp_avg_sq");
      if (!valid(d.tensor, false) || !valid(d.grad, true) ||
          !valid(d.expAvg, true) || !valid(d.expAvgSq, true))
        return fail("parameter '" + d.name + "' names a tensor that does not exist");
      for (int t : {d.grad, d.expAvg, d.expAvgSq})
        if (t >= 0 && plan.tensors[t].numel() != plan.tensors[d.tensor].numel())
          return fail("parameter '" + d.name + "': its gradient or moments differ in size");
      if (plan.tensors[d.tensor].host || (d.trainable && (d.grad < 0 || d.expAvg < 0 ||
                                                          d.expAvgSq < 0)))
        return fail("parameter '" + d.name + "' lies in the host pool or lacks its "
                    "gradient and moments");
      bool rewardModel = d.set.size() > 13 && d.set.rfind("reward_model_", 0) == 0 &&
                         d.set.find_first_not_of("0123456789", 13) == std::string::npos &&
                         d.set.size() < 20;
      if (d.set != "policy" && d.set != "reference" && !rewardModel)
        return fail("parameter '" + d.name + "' belongs to set '" + d.set +
                    "' (policy, reference or reward_model_K)");
      if (d.set != "policy" && d.trainable)
        return fail("parameter '" + d.name + "' of the frozen set '" + d.set +
                    "' is trainable");
      plan.params.push_back(std::move(d));
    }
    for (const auto &[name, prog] : j.at("programs").items()) {
      Program p;
      p.inputs = prog.at("inputs").get<std::map<std::string, int>>();
      p.outputs = prog.at("outputs").get<std::map<std::string, int>>();
      for (const auto &c : prog.at("calls")) {
        KernelCall k;
        std::string kernel = field<std::string>(c, "kernel");
        auto id = kernelByName(kernel);
        if (!id)
          return fail("program " + name + ": unknown kernel '" + kernel + "'");
        k.kernel = *id;
        k.in = field<std::vector<int>>(c, "in");
        k.out = field<std::vector<int>>(c, "out");
        k.attrs = c.at("attrs");
        Arity arity = kernelArity(k.kernel);
        auto within = [](size_t n, int lo, int hi) {
          return static_cast<int64_t>(n) >= lo && (hi < 0 || static_cast<int64_t>(n) <= hi);
        };
        if (!within(k.in.size(), arity.minIn, arity.maxIn) ||
            !within(k.out.size(), arity.minOut, arity.maxOut))
          return fail("program " + name + ": call '" + kernel + "' has " +
                      std::to_string(k.in.size()) + " inputs and " +
                      std::to_string(k.out.size()) + " outputs, which the kernel does not take");
        for (int t : k.in)
          if (!valid(t, true))
            return fail("program " + name + ": call '" + kernel +
                        "' reads a tensor that does not exist");
        for (int t : k.out)
          if (!valid(t, false))
            return fail("program " + name + ": call '" + kernel +
                        "' writes a tensor that does not exist");
        std::string broken = checkCall(k, plan);
        if (!broken.empty())
          return fail("program " + name + ", call " + std::to_string(p.calls.size()) + " (" +
                      kernel + "): " + broken);
        p.calls.push_back(std::move(k));
      }
      for (const auto *m : {&p.inputs, &p.outputs})
        for (const auto &[io, t] : *m)
          if (!valid(t, false))
            return fail("program " + name + ": '" + io +
                        "' names a tensor that does not exist");
      if (std::string broken = checkProgramIo(name, p, plan); !broken.empty())
        return fail("program " + name + ": " + broken);
      plan.programs[name] = std::move(p);
    }
    if (std::string broken = checkGeneration(plan); !broken.empty())
      return fail(broken);
    plan.run = runInfoFromJson(j.at("run"));
    plan.zero = zeroLayoutFromJson(j.at("zero"));
    std::set<int> shards;
    for (const ZeroGroup &g : plan.zero.groups) {
      if (g.param < 0 || g.param >= static_cast<int>(plan.params.size()) ||
          !shards.insert(g.param).second)
        return fail("ZeRO group '" + g.name + "' names no shard parameter of its own");
      for (const ZeroGroup::Member &m : g.members) {
        if (m.offset < 0 || m.offset + m.numel() > g.numel)
          return fail("ZeRO group '" + g.name + "': member '" + m.name +
                      "' lies outside the group");
      }
    }
  } catch (const FieldError &e) {
    return fail(std::string("malformed: ") + e.what());
  } catch (const json::exception &e) {
    return fail(std::string("malformed (") + e.what() + ")");
  }
  return true;
}

Expected<Artifact> readArtifact(const std::string &dir) {
  Artifact a;
  a.dir = dir;
  std::string error;
  if (!readManifest(dir, a.manifest, error))
    return Error{error};
  std::string manifest = (fs::path(dir) / kManifestFile).string();
  fs::path planFile = fs::path(dir) / kPlanFile;
  if (pathExists(planFile) && contentHash(readText(planFile)) != a.manifest.planHash)
    return Error{planFile.string() + ": error: does not match the manifest's plan_hash "
                 "(edited or damaged after the compile); recompile the recipe with "
                 "`trlc compile`"};
  if (!readPlan(dir, a.plan, error))
    return Error{error};
  if (a.plan.manifestHash != a.manifest.identityHash())
    return Error{manifest + ": error: was edited after the compile (its fields no longer "
                 "match the plan's manifest_hash); recompile the recipe with `trlc compile`"};
  // The data files are the artifact's own, each in its place (the layout
  // is fixed: an eval shard cannot stand in for the training one) with its
  // hash in the manifest.
  const DataShards &data = a.plan.run.data;
  for (auto [path, expected] : {std::pair{&data.trainShard, "data/train.bin"},
                                {&data.evalShard, "data/eval.bin"},
                                {&data.vocab, "data/vocab.json"},
                                {&data.columns, "data/columns.jsonl"}}) {
    if (path->empty() && path != &data.trainShard)
      continue;
    if (*path != expected || !a.manifest.files.count(*path))
      return Error{planFile.string() + ": error: names the data file '" + *path +
                   "' where the artifact keeps '" + expected + "' (listed in the manifest's "
                   "\"files\"); recompile the recipe with `trlc compile`"};
  }
  // What the weights say wins over what a setting says.
  int64_t vocab = vocabSize(a.plan);
  if (a.plan.run.modelConfig.value("vocab_size", int64_t(0)) != vocab)
    return Error{planFile.string() + ": error: model_config's vocab_size " +
                 a.plan.run.modelConfig.value("vocab_size", json()).dump() +
                 " does not match the embedding's " + std::to_string(vocab) +
                 " rows; recompile the recipe with `trlc compile`"};
  // The plan is what the manifest says it is: its loss for the method, its
  // collectives for the world size.
  static const std::map<std::string, std::vector<Kernel>> losses = {
      {"sft", {Kernel::CrossEntropy, Kernel::FusedLinearCrossEntropy}},
      {"dpo", {Kernel::DpoLoss}},
      {"kto", {Kernel::KtoLoss}},
      {"grpo", {Kernel::GrpoLoss}},
      {"rloo", {Kernel::RlooLoss}},
      {"online_dpo", {Kernel::DpoLoss}},
      {"ppo", {Kernel::PpoLoss}},
      {"reward", {Kernel::DpoLoss}}};
  auto method = losses.find(a.manifest.method);
  if (method == losses.end())
    return Error{manifest + ": error: unknown method \"" + a.manifest.method +
                 "\" (sft, dpo, kto, grpo, rloo, online_dpo, ppo or reward)"};
  // An online method's settings travel with it, and only with it.
  bool onlineMethod = a.manifest.method == "grpo" || a.manifest.method == "rloo" ||
                      a.manifest.method == "online_dpo" || a.manifest.method == "ppo";
  if (onlineMethod != a.plan.run.grpo.has_value() ||
      (a.plan.run.grpo &&
       ((a.manifest.method == "online_dpo") == a.plan.run.grpo->dpoBetas.empty() ||
        (a.manifest.method == "ppo") != a.plan.run.grpo->ppo.has_value())))
    return Error{planFile.string() + ": error: run.grpo does not fit method \"" +
                 a.manifest.method + "\"; recompile the recipe"};
  // LoRA's settings travel with its adapters, and only with them.
  bool adapters = std::any_of(a.plan.params.begin(), a.plan.params.end(),
                              [](const ParamDesc &p) { return isLoraAdapter(p.name); });
  for (const ZeroGroup &g : a.plan.zero.groups)  // ZeRO-3 shards name their members
    for (const ZeroGroup::Member &m : g.members)
      adapters = adapters || isLoraAdapter(m.name);
  if (adapters != a.plan.run.peft.has_value())
    return Error{planFile.string() + ": error: run.peft does not fit the plan's parameters (" +
                 (adapters ? "LoRA adapters without run.peft" : "run.peft without adapters") +
                 "); recompile the recipe"};
  bool hasLoss = false;
  if (auto step = a.plan.programs.find("train_step"); step != a.plan.programs.end())
    for (const KernelCall &c : step->second.calls)
      hasLoss = hasLoss || std::count(method->second.begin(), method->second.end(), c.kernel);
  for (const auto &[name, prog] : a.plan.programs)
    for (const KernelCall &c : prog.calls)
      if (isCollective(c.kernel) && c.attrs.value("world_size", int64_t(0)) != a.manifest.worldSize)
        return Error{planFile.string() + ": error: a " + kernelName(c.kernel) + " of " + name +
                     " over " + std::to_string(c.attrs.value("world_size", int64_t(0))) +
                     " ranks, but the manifest's world_size is " +
                     std::to_string(a.manifest.worldSize) + "; recompile the recipe"};
  // GRPO's loop normalises and reports what its loss computes.
  if (auto step = a.plan.programs.find("train_step");
      a.plan.run.grpo && step != a.plan.programs.end()) {
    const GrpoRun &g = *a.plan.run.grpo;
    for (const KernelCall &c : step->second.calls)
      if ((c.kernel == Kernel::GrpoLoss &&
           (c.attrs.value("loss_type", std::string()) != g.lossType ||
            c.attrs.value("beta", -1.0) != g.beta ||
            c.attrs.value("epsilon_low", -1.0) != g.epsilonLow ||
            c.attrs.value("epsilon_high", -1.0) != g.epsilonHigh ||
            c.attrs.value("sequence_level", false) != g.sequenceLevel)) ||
          (c.kernel == Kernel::RlooLoss &&
           (c.attrs.value("epsilon_low", -1.0) != g.epsilonLow ||
            c.attrs.value("epsilon_high", -1.0) != g.epsilonHigh)) ||
          (c.kernel == Kernel::PpoLoss &&
           (!g.ppo || c.attrs.value("cliprange", -1.0) != g.ppo->cliprange ||
            c.attrs.value("cliprange_value", -1.0) != g.ppo->cliprangeValue ||
            c.attrs.value("vf_coef", -1.0) != g.ppo->vfCoef)) ||
          // Online DPO's loss reads the scheduled beta from its input.
          (c.kernel == Kernel::DpoLoss &&
           (g.dpoBetas.empty() || c.in.size() < 7 || c.in[6] < 0 ||
            c.attrs.value("loss_type", std::string()) != g.dpoLossType ||
            c.attrs.value("beta", -1.0) != g.dpoBetas.front() ||
            c.attrs.value("label_smoothing", -1.0) != 0.0 ||
            (c.in.size() > 5 && c.in[5] >= 0))))
        return Error{planFile.string() + ": error: the train_step's loss and run.grpo "
                     "disagree (loss_type, beta, epsilon, importance_sampling_level or "
                     "online_dpo); recompile the recipe"};
  }
  // Reward model K's parameters come from the K-th "model:" reward.
  size_t rewardModels = a.plan.run.grpo ? a.plan.run.grpo->rewardModelDirs().size() : 0;
  for (const ParamDesc &p : a.plan.params)
    if (p.set.rfind("reward_model_", 0) == 0 && std::stoul(p.set.substr(13)) >= rewardModels)
      return Error{planFile.string() + ": error: parameter '" + p.name + "' of set " + p.set +
                   " has no reward model among run.grpo's reward_funcs; recompile the recipe"};
  // The programs an online method runs besides the step.
  if (a.plan.run.grpo) {
    bool rloo = a.manifest.method == "rloo", ppo = a.manifest.method == "ppo";
    std::vector<std::string> need = {"prefill", "decode"};
    if (rloo || ppo || a.plan.run.grpo->numIterations > 1)
      need.push_back("old_token_logps");
    if ((rloo && a.plan.run.grpo->beta != 0) || ppo)
      need.push_back("ref_token_logps");
    if (ppo)
      need.push_back("values");
    size_t models = a.plan.run.grpo->rewardModelDirs().size();
    for (size_t k = 0; k < models; ++k)
      need.push_back("reward_model_" + std::to_string(k));

    for (const std::string &program : need)
      if (!a.plan.programs.count(program))
        return Error{planFile.string() + ": error: " + a.manifest.method + " needs the " +
                     program + " program, which the plan lacks; recompile the recipe"};
  }
  // ZeRO-3 generation reads the model gathered by @gather_model unless its
  // programs gather it themselves.
  if (a.plan.zero.stage == 3 && a.plan.programs.count("decode") &&
      !a.plan.programs.count("gather_model")) {
    const Program &decode = a.plan.programs.at("decode");
    if (std::none_of(decode.calls.begin(), decode.calls.end(),
                     [](const KernelCall &c) { return c.kernel == Kernel::AllGather; }))
      return Error{planFile.string() + ": error: decode reads a ZeRO-3 model that nothing "
                   "gathers (no gather_model program); recompile the recipe"};
  }
  for (const char *program : {"train_step", "optimizer_step"})
    if (!a.plan.programs.count(program))
      return Error{planFile.string() + ": error: has no " + program +
                   " program; recompile the recipe with `trlc compile`"};
  if (!hasLoss)
    return Error{planFile.string() + ": error: its train_step computes no " +
                 a.manifest.method + " loss, but the manifest's method is \"" +
                 a.manifest.method + "\"; recompile the recipe with `trlc compile`"};
  // A padded step holds the manifest's batch: one row per example (two per
  // DPO pair). Packed steps hold tokens, bounded by the data plan instead.
  if (auto step = a.plan.programs.find("train_step"); step != a.plan.programs.end()) {
    const Program &p = step->second;
    auto ids = p.inputs.find("input_ids");
    if (ids != p.inputs.end() && !p.inputs.count("cu_seqlens")) {
      const TensorDesc &t = a.plan.tensors[ids->second];
      bool pairs = a.manifest.method == "dpo" || a.manifest.method == "reward";
      int64_t rows = (pairs ? 2 : 1) * a.manifest.batchSize;
      if (a.manifest.method == "online_dpo")
        rows = 2 * a.manifest.batchSize;
      bool online = a.manifest.method == "grpo" || a.manifest.method == "rloo";
      if (t.shape.size() == 2 && !online && t.shape[0] != rows)
        return Error{planFile.string() + ": error: its train_step holds " +
                     std::to_string(t.shape[0]) + " rows, but the manifest's batch_size " +
                     std::to_string(a.manifest.batchSize) + " needs " + std::to_string(rows) +
                     "; recompile the recipe with `trlc compile`"};
    }
  }
  for (const ZeroGroup &g : a.plan.zero.groups)
    if (g.shard * a.manifest.worldSize < g.numel ||
        a.plan.tensors[a.plan.params[g.param].tensor].numel() != g.shard)
      return Error{planFile.string() + ": error: ZeRO group '" + g.name + "' is not split "
                   "over the manifest's " + std::to_string(a.manifest.worldSize) +
                   " ranks; recompile the recipe"};
  fs::path recipe = fs::path(dir) / kRecipeFile;
  if (contentHash(readText(recipe)) != a.manifest.recipeHash)
    return Error{recipe.string() + ": error: does not match the manifest's recipe_hash "
                 "(edited after the compile?); recompile the recipe with `trlc compile`"};
  std::string configType = a.plan.run.modelConfig.value("model_type", std::string());
  if (configType != a.manifest.modelType)
    return Error{manifest + ": error: model_type \"" + a.manifest.modelType +
                 "\" but the plan's model_config says \"" + configType +
                 "\"; recompile the artifact with `trlc compile`"};
  // Trainable parameters: the policy's own tensors plus the members of
  // its ZeRO-3 groups.
  std::set<int> shardParams;
  int64_t parameters = 0;
  for (const ZeroGroup &g : a.plan.zero.groups) {
    shardParams.insert(g.param);
    for (const ZeroGroup::Member &m : g.members)
      parameters += m.numel();
  }
  for (size_t i = 0; i < a.plan.params.size(); ++i) {
    const ParamDesc &p = a.plan.params[i];
    if (p.trainable && !shardParams.count(static_cast<int>(i)))
      parameters += a.plan.tensors[p.tensor].numel();
  }
  if (parameters != a.manifest.parameters)
    return Error{manifest + ": error: " + std::to_string(a.manifest.parameters) +
                 " parameters but the plan trains " + std::to_string(parameters) +
                 "; recompile the artifact with `trlc compile`"};
  return a;
}

Expected<std::vector<TokenRow>> readTokenShard(const Artifact &a, const std::string &shard) {
  const DataShards &d = a.plan.run.data;
  bool present = std::all_of(d.sources.begin(), d.sources.end(),
                             [](const std::string &f) { return pathExists(f); });
  if (present && hashFiles(d.sources) != d.hash)
    return Error{a.dir + ": error: the dataset changed since this artifact was compiled (" +
                 d.sources.front() + (d.sources.size() > 1 ? ", ..." : "") +
                 "); run trlc compile again (trlc train recompiles by itself)"};
  try {
    auto hash = a.manifest.files.find(shard);
    if (!insideArtifact(shard) || hash == a.manifest.files.end())
      return Error{a.dir + ": error: the plan names the shard '" + shard +
                   "', which is not one of the artifact's files; compile it again"};
    return readShard((fs::path(a.dir) / shard).string(), hash->second, vocabSize(a.plan));
  } catch (const std::runtime_error &e) {
    return Error{e.what()};
  }
}

} // namespace trlc::artifact
