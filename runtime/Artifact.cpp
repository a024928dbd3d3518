//===- Artifact.cpp - reading and writing the artifact contract -----------===//

#include "trlc/Artifact.h"
#include "trlc/Contract.h"
#include "trlc/Hash.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace trlc::artifact {

namespace {

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
  d.trainShard = j.at("train_shard").get<std::string>();
  d.evalShard = j.at("eval_shard").get<std::string>();
  d.vocab = j.at("vocab").get<std::string>();
  d.sources = j.at("sources").get<std::vector<std::string>>();
  d.hash = j.at("hash").get<std::string>();
  return d;
}

RunInfo runInfoFromJson(const json &j) {
  RunInfo r;
  r.gradientAccumulationSteps = j.at("gradient_accumulation_steps").get<int64_t>();
  r.totalSteps = j.at("total_steps").get<int64_t>();
  r.numTrainEpochs = j.at("num_train_epochs").get<double>();
  r.seed = j.at("seed").get<int64_t>();
  r.initSeed = j.at("init_seed").get<int64_t>();
  r.initializerRange = j.at("initializer_range").get<double>();
  r.modelPath = j.at("model_path").get<std::string>();
  r.refModelPath = j.at("ref_model_path").get<std::string>();
  r.tokenizer = j.at("tokenizer").get<std::string>();
  r.modelConfig = j.at("model_config");
  r.padTokenId = j.at("pad_token_id").get<int64_t>();
  r.outputDir = j.at("output_dir").get<std::string>();
  r.loggingSteps = j.at("logging_steps").get<int64_t>();
  r.saveStrategy = j.at("save_strategy").get<std::string>();
  if (r.saveStrategy != "no" && r.saveStrategy != "steps" && r.saveStrategy != "epoch")
    throw json::other_error::create(501, "save_strategy must be no, steps or epoch", &j);
  r.saveSteps = j.at("save_steps").get<int64_t>();
  r.stepsPerEpoch = j.at("steps_per_epoch").get<int64_t>();
  r.saveOnlyModel = j.at("save_only_model").get<bool>();
  r.saveTotalLimit = j.at("save_total_limit").get<int64_t>();
  r.data = dataShardsFromJson(j.at("data"));
  return r;
}

ZeroLayout zeroLayoutFromJson(const json &j) {
  ZeroLayout z;
  z.stage = j.at("stage").get<int64_t>();
  for (const json &g : j.value("groups", json::array())) {
    ZeroGroup group;
    group.name = g.at("name").get<std::string>();
    group.numel = g.at("numel").get<int64_t>();
    group.shard = g.at("shard").get<int64_t>();
    group.param = g.at("param").get<int>();
    for (const json &m : g.at("members"))
      group.members.push_back({m.at("name").get<std::string>(), m.at("offset").get<int64_t>(),
                               m.at("shape").get<std::vector<int64_t>>(),
                               m.at("hf_transposed").get<bool>()});
    z.groups.push_back(std::move(group));
  }
  return z;
}

} // namespace

std::string contentHash(const std::string &text) { return hashHex(fnv1a(text)); }

json Manifest::toJson() const {
  return {{"format", kFormatName},
          {"format_version", formatVersion},
          {"recipe", recipe},
          {"recipe_hash", recipeHash},
          {"method", method},
          {"model_type", modelType},
          {"world_size", worldSize},
          {"batch_size", batchSize},
          {"sequence_bound", sequenceBound},
          {"parameters", parameters}};
}

bool readManifest(const std::string &dir, Manifest &m, std::string &error) {
  fs::path file = fs::path(dir) / kManifestFile;
  if (!fs::is_directory(dir)) {
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

json DataShards::toJson() const {
  return {{"train_shard", trainShard}, {"eval_shard", evalShard}, {"vocab", vocab},
          {"sources", sources}, {"hash", hash}};
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
          {"data", data.toJson()}};
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
    if (j.at("format_version").get<int>() != kFormatVersion)
      return fail("plan format version " +
                  std::to_string(j.at("format_version").get<int>()) +
                  " is not version " + std::to_string(kFormatVersion));
    plan.arenaBytes = j.at("arena_bytes").get<int64_t>();
    if (plan.arenaBytes < 0)
      return fail("negative arena_bytes");
    plan.hostBytes = j.value("host_bytes", int64_t(0));
    if (plan.hostBytes < 0)
      return fail("negative host_bytes");
    for (const auto &t : j.at("tensors")) {
      TensorDesc d;
      d.offset = t.at("offset").get<int64_t>();
      d.host = t.value("host", false);
      d.viewOf = t.value("view_of", -1);
      d.shape = t.at("shape").get<std::vector<int64_t>>();
      std::string dt = t.at("dtype").get<std::string>();
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
      d.name = p.at("name").get<std::string>();
      d.set = p.at("set").get<std::string>();
      d.trainable = p.at("trainable").get<bool>();
      d.hfTransposed = p.at("hf_transposed").get<bool>();
      d.tensor = p.at("tensor").get<int>();
      d.grad = p.at("grad").get<int>();
      d.expAvg = p.at("exp_avg").get<int>();
      d.expAvgSq = p.at("exp_avg_sq").get<int>();
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
      if (d.set != "policy" && d.set != "reference")
        return fail("parameter '" + d.name + "' belongs to set '" + d.set +
                    "' (policy or reference)");
      plan.params.push_back(std::move(d));
    }
    for (const auto &[name, prog] : j.at("programs").items()) {
      Program p;
      p.inputs = prog.at("inputs").get<std::map<std::string, int>>();
      p.outputs = prog.at("outputs").get<std::map<std::string, int>>();
      for (const auto &c : prog.at("calls")) {
        KernelCall k;
        std::string kernel = c.at("kernel").get<std::string>();
        auto id = kernelByName(kernel);
        if (!id)
          return fail("program " + name + ": unknown kernel '" + kernel + "'");
        k.kernel = *id;
        k.in = c.at("in").get<std::vector<int>>();
        k.out = c.at("out").get<std::vector<int>>();
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
  } catch (const json::exception &e) {
    return fail(std::string("malformed (") + e.what() + ")");
  }
  return true;
}

Expected<Artifact> readArtifact(const std::string &dir) {
  Artifact a;
  a.dir = dir;
  std::string error;
  if (!readManifest(dir, a.manifest, error) || !readPlan(dir, a.plan, error))
    return Error{error};
  std::string manifest = (fs::path(dir) / kManifestFile).string();
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
                             [](const std::string &f) { return fs::exists(f); });
  if (present && hashFiles(d.sources) != d.hash)
    return Error{a.dir + ": error: the dataset changed since this artifact was compiled (" +
                 d.sources.front() + (d.sources.size() > 1 ? ", ..." : "") +
                 "); run trlc compile again (trlc train recompiles by itself)"};
  try {
    return readShard((fs::path(a.dir) / shard).string());
  } catch (const std::runtime_error &e) {
    return Error{e.what()};
  }
}

} // namespace trlc::artifact
