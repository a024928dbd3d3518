//===- Checkpoint.cpp - the model state of a run, in and out --------------===//

#include "trlc/Checkpoint.h"
#include "trlc/BFloat16.h"
#include "trlc/Files.h"
#include "trlc/Hash.h"
#include "trlc/Safetensors.h"
#include "trlc/Run.h"

#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <tuple>

namespace fs = std::filesystem;
using nlohmann::json;

namespace trlc {

namespace {

/// Hugging Face's initialisation: N(0, initializer_range) for matrices,
/// ones for norm weights, zeros for biases. Each parameter draws from its
/// own generator (init_seed, name), so the order of the table is irrelevant.
void randomInit(const std::string &name, size_t rank, int64_t n, float *w, uint64_t seed,
                double std) {
  bool bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
  if (rank == 1) {
    std::fill(w, w + n, bias ? 0.0f : 1.0f);
    return;
  }
  std::mt19937_64 rng(fnv1a(name, kFnvOffsetBasis ^ seed));
  std::normal_distribution<double> normal(0.0, std);
  for (int64_t i = 0; i < n; ++i)
    w[i] = static_cast<float>(normal(rng));
}

/// LoRA: PEFT stores what trains (the adapters, modules_to_save) as
/// `base_model.model.<name>` in adapter_model.safetensors.
const char *const kPeftPrefix = "base_model.model.";

/// PEFT's initialisation: A Kaiming-uniform (a = sqrt(5): U(-1/sqrt(in),
/// 1/sqrt(in))), B zeros, or also Kaiming-uniform with init_lora_weights
/// false; seeded by the name.
void adapterInit(const std::string &name, const std::vector<int64_t> &shape, float *w,
                 uint64_t seed, bool initLoraWeights) {
  if (shape.size() != 2)
    throw RunError("error: the LoRA parameter " + name + " is not a matrix; recompile the "
                   "recipe");
  int64_t n = shape[0] * shape[1];
  bool b = name.compare(name.size() - 14, 14, ".lora_B.weight") == 0;
  if (b && initLoraWeights) {
    std::fill(w, w + n, 0.0f);
    return;
  }
  std::mt19937_64 rng(fnv1a(name, kFnvOffsetBasis ^ seed));
  double bound = 1.0 / std::sqrt(static_cast<double>(shape[1]));
  std::uniform_real_distribution<double> u(-bound, bound);
  for (int64_t i = 0; i < n; ++i)
    w[i] = static_cast<float>(u(rng));
}

/// A tensor's values as fp32, whatever it is stored in.
std::vector<float> readAsFloat(Executor &ex, const TensorRef &t) {
  if (t.dtype() != artifact::DType::BF16)
    return ex.read<float>(t);
  std::vector<uint16_t> h = ex.read<uint16_t>(t);
  std::vector<float> out(h.size());
  for (size_t i = 0; i < h.size(); ++i)
    out[i] = bf16ToFloat(h[i]);
  return out;
}

/// The weight in Hugging Face layout (Conv1D weights transposed back).
std::vector<float> hfLayout(const float *w, std::vector<int64_t> &shape, bool hfTransposed) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  std::vector<float> out(w, w + n);
  if (hfTransposed) {
    int64_t rows = shape[0], cols = shape[1];
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        out[c * rows + r] = w[r * cols + c];
    std::swap(shape[0], shape[1]);
  }
  return out;
}

std::string shapeStr(const std::vector<int64_t> &s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i)
    o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

/// One parameter from a checkpoint into `w`, in the layout the step uses
/// (`want`: [out, in] for Conv1D weights stored [in, out]).
void loadTensor(const std::map<std::string, safetensors::Tensor> &tensors, const std::string &dir,
                const std::string &name, std::vector<int64_t> want, bool hfTransposed, float *w) {
  auto it = tensors.find(name);
  if (it == tensors.end())
    throw RunError(dir + ": error: the checkpoint has no tensor '" + name +
                   "' (is [model] path the model the recipe's config describes?)");
  if (hfTransposed)
    std::swap(want[0], want[1]);
  if (it->second.shape != want)
    throw RunError(dir + ": error: tensor '" + name + "' has shape " +
                   shapeStr(it->second.shape) + " but the model needs " + shapeStr(want));
  const std::vector<float> &src = it->second.data;
  for (float v : src)
    if (!std::isfinite(v))
      throw RunError(dir + ": error: tensor '" + name + "' holds NaN or infinite values; "
                     "the model file is damaged (or was saved from a diverged run): load "
                     "another checkpoint");
  if (!hfTransposed) {
    std::copy(src.begin(), src.end(), w);
    return;
  }
  int64_t in = want[0], out = want[1];  // stored [in, out]
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c)
      w[r * in + c] = src[c * out + r];
}

void writeTensors(const std::string &path, const std::vector<NamedTensor> &tensors) {
  std::vector<safetensors::Entry> entries;
  for (const NamedTensor &t : tensors)
    entries.push_back({t.name, t.shape, t.data.data()});
  std::string error;
  if (!safetensors::writeFile(path, entries, error))
    throw RunError(error);
}

/// Copies `from` to `to` through writeFileAtomic (a full disk is an error,
/// never a short file).
void copyFile(const fs::path &from, const fs::path &to) {
  std::ifstream in(from, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  if (!in && !in.eof())
    throw RunError(from.string() + ": error: cannot read");
  writeText(to.string(), bytes);
}

/// generation_config.json: the model's own, or the one transformers
/// writes for a causal LM from its config's special token ids.
void writeGenerationConfig(const artifact::RunInfo &run, const fs::path &dst) {
  fs::path own = fs::path(run.modelPath) / "generation_config.json";
  if (!run.modelPath.empty() && pathExists(own)) {
    copyFile(own, dst / "generation_config.json");
    return;
  }
  json g = json::object();
  for (const char *key : {"bos_token_id", "eos_token_id", "pad_token_id"})
    if (run.modelConfig.contains(key) && !run.modelConfig[key].is_null())
      g[key] = run.modelConfig[key];
  writeText((dst / "generation_config.json").string(), g.dump(2) + "\n");
}

void copyTokenizer(const std::string &tokenizer, const fs::path &dst) {
  if (tokenizer.empty())
    return;
  fs::path src = isDirectory(tokenizer) ? fs::path(tokenizer)
                                             : fs::path(tokenizer).parent_path();
  for (const char *f : {"tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "vocab.json", "merges.txt"})
    if (pathExists(src / f))
      copyFile(src / f, dst / f);
}

/// config.json as saved: the run's model config, with what the weights
/// decide taken from the weights (the vocabulary is the embedding's rows).
json savedConfig(json config, const std::vector<NamedTensor> &weights) {
  for (const NamedTensor &t : weights) {
    bool embedding = t.name == "model.embed_tokens.weight" || t.name == "transformer.wte.weight";
    if (embedding && t.shape.size() == 2)
      config["vocab_size"] = t.shape[0];
  }
  return config;
}

/// adapter_config.json: PEFT's LoraConfig of the run's [peft].
json adapterConfig(const artifact::RunInfo &run) {
  const artifact::RunInfo::Peft &p = *run.peft;
  bool conv1d = run.modelConfig.value("model_type", "") == "gpt2";
  return {{"peft_type", "LORA"},
          {"task_type", "CAUSAL_LM"},
          {"base_model_name_or_path", run.modelPath.empty() ? json(nullptr) : json(run.modelPath)},
          {"r", p.r},
          {"lora_alpha", p.loraAlpha},
          {"lora_dropout", p.loraDropout},
          {"target_modules", p.targetModules},
          {"bias", "none"},
          {"use_rslora", p.useRslora},
          {"fan_in_fan_out", conv1d},
          {"init_lora_weights", p.initLoraWeights},
          {"modules_to_save", p.modulesToSave.empty() ? json(nullptr) : json(p.modulesToSave)},
          {"inference_mode", true}};
}

int tensorOf(const artifact::ParamDesc &p, StateKind kind) {
  switch (kind) {
  case StateKind::Param: return p.tensor;
  case StateKind::Grad: return p.grad;
  case StateKind::ExpAvg: return p.expAvg;
  case StateKind::ExpAvgSq: return p.expAvgSq;
  }
  return -1;
}

/// Where this rank's ZeRO-3 shards go in a checkpoint.
fs::path shardFile(const fs::path &checkpoint, const Communicator &comm) {
  return checkpoint / "zero3" /
         ("rank-" + std::to_string(comm.rank()) + "-of-" + std::to_string(comm.size()) +
          ".safetensors");
}

} // namespace

void writeText(const std::string &file, const std::string &text) {
  if (auto error = writeFileAtomic(file, text))
    throw RunError(*error);
}

void claimOutputDir(const std::string &dirName, const std::string &artifact) {
  fs::path dir(dirName);
  std::error_code ec;
  if (pathExists(dir) && !fs::is_empty(dir, ec) && !pathExists(dir / "trlc_run.json"))
    throw RunError(dir.string() + ": error: [output] output_dir exists and is not "
                   "a trlc run directory; choose another output_dir or remove it");
  fs::create_directories(dir, ec);
  if (ec)
    throw RunError(dir.string() + ": error: cannot create the output directory (" +
                   ec.message() + ")");
  // One run at a time: an exclusive lock held until this process exits.
  std::string lockFile = (dir / ".trlc.lock").string();
  int fd = ::open(lockFile.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    throw RunError(lockFile + ": error: cannot open the output directory's lock");
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    std::string holder = n > 0 ? std::string(pid, static_cast<size_t>(n)) : "unknown";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' '))
      holder.pop_back();
    throw RunError(dir.string() + ": error: another trlc run (pid " + holder +
                   ") is writing to this output_dir; wait for it to finish or choose "
                   "another output_dir (--output-dir)");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0)
    throw RunError(lockFile + ": error: cannot write the output directory's lock");
  // The descriptor stays open (and locked) for the life of the process.
  if (int stale = removeStaleTemps(dir.string()))
    std::cerr << "removed " << stale << " unfinished file(s) an interrupted run left in "
              << dir.string() << "\n";
  writeText((dir / "trlc_run.json").string(),
            json{{"artifact", fs::absolute(artifact).string()}}.dump(2) + "\n");
}

ModelState::ModelState(const artifact::Artifact &artifact, Executor &ex, Communicator &comm)
    : artifact(artifact), ex(ex), comm(comm), isShard(artifact.plan.params.size(), false) {
  for (const artifact::ZeroGroup &g : artifact.plan.zero.groups)
    isShard[g.param] = true;
}

namespace {
/// Builds a group's whole flat buffer on the host, member by member
/// (`fill(member, where)`), and keeps this rank's shard in `tensor`.
template <typename Fill>
void keepShard(Executor &ex, const Communicator &comm, const artifact::ZeroGroup &g, int tensor,
               Fill fill) {
  std::vector<float> flat(g.shard * comm.size(), 0.0f);
  for (const artifact::ZeroGroup::Member &m : g.members)
    fill(m, flat.data() + m.offset);
  ex.write(ex.tensor(tensor), flat.data() + g.shard * comm.rank(), g.shard * sizeof(float));
}
} // namespace

namespace {
/// Writes fp32 values into a parameter tensor, rounding for bf16 storage
/// (trl-mixed-precision keeps the frozen reference in bf16).
void writeParam(Executor &ex, const TensorRef &t, const std::vector<float> &w) {
  if (t.dtype() != artifact::DType::BF16) {
    ex.write(t, w.data());
    return;
  }
  std::vector<uint16_t> h(w.size());
  for (size_t i = 0; i < w.size(); ++i)
    h[i] = floatToBf16(w[i]);
  ex.write(t, h.data());
}
} // namespace

void ModelState::load(const std::string &policyDir, const std::string *referenceDir) {
  const artifact::RunInfo &run = artifact.plan.run;
  std::map<std::string, std::map<std::string, safetensors::Tensor>> cache;
  auto tensorsOf = [&](const std::string &dir) -> std::map<std::string, safetensors::Tensor> & {
    auto it = cache.find(dir);
    if (it != cache.end())
      return it->second;
    std::string error;
    auto &t = cache[dir];
    if (!safetensors::readModelDir(dir, t, error))
      throw RunError(error);
    return t;
  };
  // `name` from `dir`, or random without one. A causal model has no score
  // head: a reward model trained from it (method "reward") or PPO's value
  // model starts with a random one, as transformers initialises a missing
  // one (reward models among the rewards are checked to have theirs).
  // `seedName` seeds the random values.
  auto fill = [&](const std::string &dir, const std::string &name,
                  const std::vector<int64_t> &shape, bool hfT, float *w,
                  const std::string &seedName) {
    if (!dir.empty() && !(name == "score.weight" && !tensorsOf(dir).count(name)))
      return loadTensor(tensorsOf(dir), dir, name, shape, hfT, w);
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    randomInit(seedName, shape.size(), n, w, static_cast<uint64_t>(run.initSeed),
               run.initializerRange);
  };
  // LoRA: the adapters from a checkpoint's adapter_model.safetensors, else
  // PEFT's initialisation; the frozen base always from the model.
  std::map<std::string, safetensors::Tensor> adapters;
  // ([peft] adapter: the adapter the run continues.)
  fs::path adapterFile;
  if (run.peft && !policyDir.empty() &&
      fs::exists(fs::path(policyDir) / "adapter_model.safetensors"))
    adapterFile = fs::path(policyDir) / "adapter_model.safetensors";
  else if (run.peft && !run.peft->adapter.empty())
    adapterFile = fs::path(run.peft->adapter) / "adapter_model.safetensors";
  if (!adapterFile.empty()) {
    std::string error;
    if (!safetensors::readFile(adapterFile.string(), adapters, error))
      throw RunError(error);
  }
  // A trained parameter of a LoRA run: an adapter, or one of a module
  // trained whole (modules_to_save), which starts as the model's.
  auto fillAdapter = [&](const std::string &name, const std::vector<int64_t> &shape, bool hfT,
                         float *w) {
    if (adapters.count(kPeftPrefix + name))
      return loadTensor(adapters, adapterFile.string(), kPeftPrefix + name, shape, hfT, w);
    if (!artifact::isLoraAdapter(name))
      return fill(run.modelPath, name, shape, hfT, w, name);
    if (!adapters.empty())  // an adapter file without this adapter: the error names it
      return loadTensor(adapters, adapterFile.string(), kPeftPrefix + name, shape, false, w);
    adapterInit(name, shape, w, static_cast<uint64_t>(run.initSeed), run.peft->initLoraWeights);
  };
  // PPO's value model ("value_model." names): from a trlc checkpoint's
  // value_model/ beside the policy, else from run.grpo.ppo's directory.
  const std::string valuePrefix = "value_model.";
  auto fillPolicy = [&](const std::string &name, const std::vector<int64_t> &shape, bool hfT,
                        float *w) {
    bool value = name.rfind(valuePrefix, 0) == 0 && run.grpo && run.grpo->ppo;
    if (run.peft && !value)  // (ZeRO-3 shards what trains: adapters, modules_to_save)
      return fillAdapter(name, shape, hfT, w);
    if (!value)
      return fill(policyDir, name, shape, hfT, w, name);
    std::string dir = run.grpo->ppo->valueModel;
    if (!policyDir.empty() && fs::is_directory(fs::path(policyDir) / "value_model"))
      dir = (fs::path(policyDir) / "value_model").string();
    fill(dir, name.substr(valuePrefix.size()), shape, hfT, w, name);
  };
  // Frozen sets: the reference, and reward model K from its directory.
  std::vector<std::string> rewardModels;
  if (run.grpo)
    rewardModels = run.grpo->rewardModelDirs();
  auto frozenDir = [&](const std::string &set) -> const std::string & {
    const std::string prefix = "reward_model_";
    if (set.rfind(prefix, 0) != 0)
      return *referenceDir;
    size_t k = std::stoul(set.substr(prefix.size()));
    if (k >= rewardModels.size())
      throw RunError(artifact.dir + "/plan.json: error: parameter set " + set +
                     " has no reward model in run.grpo.reward_funcs; recompile the recipe");
    return rewardModels[k];
  };
  const std::vector<artifact::ParamDesc> &params = artifact.plan.params;
  for (size_t i = 0; i < params.size(); ++i) {
    bool frozen = params[i].set != "policy";
    if (isShard[i] || (frozen && !referenceDir))
      continue;
    TensorRef t = ex.tensor(params[i].tensor);
    std::vector<float> w(t.numel());
    if (run.peft && !frozen && params[i].trainable)
      fillPolicy(params[i].name, t.desc->shape, params[i].hfTransposed, w.data());
    else if (run.peft && !frozen && !params[i].trainable)
      fill(run.modelPath, params[i].name, t.desc->shape, params[i].hfTransposed, w.data(),
           params[i].name);
    else if (frozen)
      fill(frozenDir(params[i].set), params[i].name, t.desc->shape, params[i].hfTransposed,
           w.data(), params[i].name);
    else
      fillPolicy(params[i].name, t.desc->shape, params[i].hfTransposed, w.data());
    writeParam(ex, t, w);
  }
  for (const artifact::ZeroGroup &g : artifact.plan.zero.groups)
    keepShard(ex, comm, g, params[g.param].tensor,
              [&](const artifact::ZeroGroup::Member &m, float *w) {
                fillPolicy(m.name, m.shape, m.hfTransposed, w);
              });
}

void ModelState::initialize() {
  const artifact::RunInfo &run = artifact.plan.run;
  const std::string &reference = run.refModelPath.empty() ? run.modelPath : run.refModelPath;
  load(run.modelPath, &reference);
}

void ModelState::loadPolicyFrom(const std::string &dir) { load(dir, nullptr); }

std::vector<NamedTensor> ModelState::collect(StateKind kind, bool trainableOnly) {
  const std::vector<artifact::ParamDesc> &params = artifact.plan.params;
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < params.size(); ++i) {
    const artifact::ParamDesc &p = params[i];
    if (p.set != "policy" || isShard[i] || tensorOf(p, kind) < 0 ||
        (trainableOnly && !p.trainable))
      continue;
    TensorRef t = ex.tensor(tensorOf(p, kind));
    NamedTensor n{p.name, t.desc->shape, {}};
    n.data = hfLayout(readAsFloat(ex, t).data(), n.shape, p.hfTransposed);
    out.push_back(std::move(n));
  }
  for (const artifact::ZeroGroup &g : artifact.plan.zero.groups) {
    int id = tensorOf(params[g.param], kind);
    if (id < 0)
      continue;
    std::vector<float> flat(g.shard * comm.size());
    std::vector<float> mine = ex.read<float>(ex.tensor(id));
    comm.allGather(mine.data(), flat.data(), g.shard);
    for (const artifact::ZeroGroup::Member &m : g.members) {
      NamedTensor n{m.name, m.shape, {}};
      n.data = hfLayout(flat.data() + m.offset, n.shape, m.hfTransposed);
      out.push_back(std::move(n));
    }
  }
  // The same order whatever the layout.
  std::sort(out.begin(), out.end(),
            [](const NamedTensor &a, const NamedTensor &b) { return a.name < b.name; });
  return out;
}

void ModelState::write(const std::string &path, StateKind kind) {
  std::vector<NamedTensor> tensors = collect(kind);
  if (lead())
    writeTensors(path, tensors);
}

void ModelState::save(const std::string &dirName, const TrainerState *state) {
  const artifact::RunInfo &run = artifact.plan.run;
  fs::path dir(dirName);
  std::error_code ec;
  fs::create_directories(dir, ec);
  // A LoRA run saves what trains alone (the frozen base is the model's).
  std::vector<NamedTensor> weights = collect(StateKind::Param, run.peft.has_value());
  if (lead() && run.grpo && run.grpo->ppo) {
    // PPO's value model: its own directory, as transformers saves one.
    std::vector<NamedTensor> policy, value;
    for (NamedTensor &t : weights)
      if (t.name.rfind("value_model.", 0) == 0)
        value.push_back({t.name.substr(12), t.shape, std::move(t.data)});
      else
        policy.push_back(std::move(t));
    weights = std::move(policy);
    fs::create_directories(dir / "value_model", ec);
    writeTensors((dir / "value_model" / "model.safetensors").string(), value);
    writeText((dir / "value_model" / "config.json").string(),
              run.grpo->ppo->valueConfig.dump(2) + "\n");
  }
  if (lead() && run.peft) {
    // A PEFT adapter: the adapters (and modules_to_save), and their
    // LoraConfig.
    for (NamedTensor &t : weights)
      t.name = kPeftPrefix + t.name;
    writeTensors((dir / "adapter_model.safetensors").string(), weights);
    writeText((dir / "adapter_config.json").string(), adapterConfig(run).dump(2) + "\n");
    copyTokenizer(run.tokenizer, dir);
  } else if (lead()) {
    writeTensors((dir / "model.safetensors").string(), weights);
    writeText((dir / "config.json").string(), savedConfig(run.modelConfig, weights).dump(2) + "\n");
    writeGenerationConfig(run, dir);
    copyTokenizer(run.tokenizer, dir);
  }
  if (!state)
    return;
  if (run.saveOnlyModel) {
    if (lead())
      writeTrainerState(dir, *state);
    return;
  }
  std::vector<NamedTensor> first = collect(StateKind::ExpAvg),
                           second = collect(StateKind::ExpAvgSq);
  if (lead()) {
    std::vector<NamedTensor> all;
    for (NamedTensor &t : first)
      all.push_back({"exp_avg." + t.name, t.shape, std::move(t.data)});
    for (NamedTensor &t : second)
      all.push_back({"exp_avg_sq." + t.name, t.shape, std::move(t.data)});
    writeTensors((dir / "optimizer.safetensors").string(), all);
  }
  const std::vector<artifact::ParamDesc> &params = artifact.plan.params;
  if (!artifact.plan.zero.groups.empty()) {
    // ZeRO-3: this rank's shards as they are.
    fs::create_directories(dir / "zero3", ec);
    std::vector<NamedTensor> shards;
    for (const artifact::ZeroGroup &g : artifact.plan.zero.groups) {
      const artifact::ParamDesc &p = params[g.param];
      for (auto [id, key] : {std::pair{p.tensor, "param."}, std::pair{p.expAvg, "exp_avg."},
                             std::pair{p.expAvgSq, "exp_avg_sq."}})
        shards.push_back({key + g.name, {g.shard}, ex.read<float>(ex.tensor(id), 0, g.shard)});
    }
    writeTensors(shardFile(dir, comm).string(), shards);
  }
  if (!lead())
    return;
  writeText((dir / "rng_state.json").string(),
            json{{"seed", run.seed}, {"global_step", state->globalStep}}.dump(2) + "\n");
  writeTrainerState(dir, *state);
}

void ModelState::writeTrainerState(const fs::path &dir, const TrainerState &state) {
  const artifact::RunInfo &run = artifact.plan.run;
  writeText((dir / "trainer_state.json").string(),
            json{{"global_step", state.globalStep},
                 {"max_steps", run.totalSteps},
                 {"num_train_epochs", run.numTrainEpochs},
                 {"logging_steps", run.loggingSteps},
                 {"save_steps", run.saveSteps},
                 {"train_batch_size", artifact.manifest.batchSize},
                 {"world_size", comm.size()},
                 {"zero_stage", artifact.plan.zero.stage},
                 {"log_history", state.logHistory}}.dump(2) + "\n");
}

void ModelState::checkpoint(const TrainerState &state,
                            const std::function<void(const std::string &)> &extra) {
  fs::path out(artifact.plan.run.outputDir);
  std::string name = "checkpoint-" + std::to_string(state.globalStep);
  // Written under a temporary name and renamed: a checkpoint directory is
  // complete or absent, whatever happens during the save.
  fs::path tmp = out / (name + kTempSuffix), dir = out / name;
  if (lead()) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
  }
  comm.barrier();
  try {
    save(tmp.string(), &state);
    if (extra)
      extra(tmp.string());
  } catch (...) {
    // A failed save (a full disk) leaves no half checkpoint behind.
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  comm.barrier();
  if (lead()) {
    if (auto error = renameDirAtomic(tmp.string(), dir.string()))
      throw RunError(*error);
    // save_total_limit counts every checkpoint in output_dir, those of an
    // earlier (resumed) run too, oldest step first; the new one stays.
    int64_t keep = artifact.plan.run.saveTotalLimit;
    std::vector<std::pair<int64_t, fs::path>> older;
    std::error_code ec;
    for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
      std::string n = it->path().filename().string();
      if (n.rfind("checkpoint-", 0) != 0 || n == name || !it->is_directory())
        continue;
      std::string digits = n.substr(11);
      if (!digits.empty() && digits.size() < 18 &&
          std::all_of(digits.begin(), digits.end(), ::isdigit))
        older.push_back({std::stoll(digits), it->path()});
    }
    std::sort(older.begin(), older.end());
    for (size_t i = 0; keep > 0 && static_cast<int64_t>(older.size() - i) + 1 > keep; ++i)
      fs::remove_all(older[i].second, ec);
  }
  comm.barrier();
}

TrainerState ModelState::resume(const std::string &dir) {
  if (!isDirectory(dir))
    throw RunError("--resume " + dir + ": error: no such checkpoint directory");
  json saved;
  {
    std::ifstream in(fs::path(dir) / "trainer_state.json");
    saved = json::parse(in, nullptr, false);
  }
  if (saved.is_discarded() || !saved.contains("global_step"))
    throw RunError(dir + ": error: no readable trainer_state.json; --resume takes a "
                   "checkpoint-STEP directory trlc wrote");
  TrainerState state;
  state.globalStep = saved["global_step"];
  if (saved.contains("log_history"))
    state.logHistory = saved["log_history"];
  const std::vector<artifact::ParamDesc> &params = artifact.plan.params;
  std::string error;
  fs::path mine = shardFile(dir, comm);
  if (!artifact.plan.zero.groups.empty() && pathExists(mine)) {
    std::map<std::string, safetensors::Tensor> shards;
    if (!safetensors::readFile(mine.string(), shards, error))
      throw RunError(error);
    for (const artifact::ZeroGroup &g : artifact.plan.zero.groups) {
      const artifact::ParamDesc &p = params[g.param];
      for (auto [id, key] : {std::pair{p.tensor, "param."}, std::pair{p.expAvg, "exp_avg."},
                             std::pair{p.expAvgSq, "exp_avg_sq."}}) {
        std::vector<float> w(g.shard);
        loadTensor(shards, mine.string(), key + g.name, {g.shard}, false, w.data());
        ex.write(ex.tensor(id), w.data(), g.shard * sizeof(float));
      }
    }
    return state;
  }
  if (!pathExists(fs::path(dir) / "optimizer.safetensors"))
    throw RunError(dir + ": error: the checkpoint holds the model only (it was saved with "
                   "save_only_model = true), not the optimizer state --resume needs; to "
                   "train on from its weights, set [model] path to it");
  std::map<std::string, safetensors::Tensor> model, moments;
  if (artifact.plan.run.peft) {
    // A LoRA checkpoint holds the adapters (PEFT's names); the frozen base
    // is in place from the model (initialize()).
    std::map<std::string, safetensors::Tensor> adapters;
    std::string file = (fs::path(dir) / "adapter_model.safetensors").string();
    if (!safetensors::readFile(file, adapters, error))
      throw RunError(error);
    for (auto &[name, t] : adapters)
      if (name.rfind(kPeftPrefix, 0) == 0)
        model[name.substr(std::char_traits<char>::length(kPeftPrefix))] = std::move(t);
  } else if (!safetensors::readModelDir(dir, model, error)) {
    throw RunError(error);
  }
  if (!safetensors::readFile((fs::path(dir) / "optimizer.safetensors").string(), moments, error))
    throw RunError(error);
  // PPO's value model, saved beside the policy under value_model/.
  if (fs::path values = fs::path(dir) / "value_model"; fs::is_directory(values)) {
    std::map<std::string, safetensors::Tensor> vm;
    if (!safetensors::readModelDir(values.string(), vm, error))
      throw RunError(error);
    for (auto &[name, t] : vm)
      model["value_model." + name] = std::move(t);
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const artifact::ParamDesc &p = params[i];
    if (isShard[i] || p.set != "policy" || (artifact.plan.run.peft && !p.trainable))
      continue;
    for (auto [id, key, file] : {std::tuple{p.tensor, "", &model},
                                 std::tuple{p.expAvg, "exp_avg.", &moments},
                                 std::tuple{p.expAvgSq, "exp_avg_sq.", &moments}})
      if (id >= 0) {
        TensorRef t = ex.tensor(id);
        std::vector<float> w(t.numel());
        loadTensor(*file, dir, key + p.name, t.desc->shape, p.hfTransposed, w.data());
        ex.write(t, w.data());
      }
  }
  for (const artifact::ZeroGroup &g : artifact.plan.zero.groups) {
    const artifact::ParamDesc &p = params[g.param];
    for (auto [id, prefix, from] : {std::tuple{p.tensor, "", &model},
                                    std::tuple{p.expAvg, "exp_avg.", &moments},
                                    std::tuple{p.expAvgSq, "exp_avg_sq.", &moments}}) {
      std::string key = prefix;
      auto *file = from;  // a lambda may not capture a structured binding (clang < 16)
      keepShard(ex, comm, g, id, [&](const artifact::ZeroGroup::Member &m, float *w) {
        loadTensor(*file, dir, key + m.name, m.shape, m.hfTransposed, w);
      });
    }
  }
  return state;
}

} // namespace trlc
