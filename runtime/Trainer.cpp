//===- Trainer.cpp - the training loop around a compiled plan -------------===//

#include "trlc/Trainer.h"
#include "trlc/Comm.h"
#include "trlc/Artifact.h"
#include "trlc/Data.h"
#include "trlc/Executor.h"
#include "trlc/Safetensors.h"
#include "trlc/Hash.h"
#include "trlc/Shards.h"

#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <unistd.h>
#include <csignal>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <thread>

namespace fs = std::filesystem;
using nlohmann::json;

namespace trlc {
namespace {

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --- weights -------------------------------------------------------------------

uint64_t nameSeed(uint64_t seed, const std::string &name) {
  return fnv1a(name, kFnvOffsetBasis ^ seed);
}

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
  std::mt19937_64 rng(nameSeed(seed, name));
  std::normal_distribution<double> normal(0.0, std);
  for (int64_t i = 0; i < n; ++i)
    w[i] = static_cast<float>(normal(rng));
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
    throw Failure(dir + ": error: the checkpoint has no tensor '" + name +
                  "' (is [model] path the model the recipe's config describes?)");
  if (hfTransposed)
    std::swap(want[0], want[1]);
  if (it->second.shape != want)
    throw Failure(dir + ": error: tensor '" + name + "' has shape " +
                  shapeStr(it->second.shape) + " but the model needs " + shapeStr(want));
  const std::vector<float> &src = it->second.data;
  if (!hfTransposed) {
    std::copy(src.begin(), src.end(), w);
    return;
  }
  int64_t in = want[0], out = want[1];  // stored [in, out]
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c)
      w[r * in + c] = src[c * out + r];
}

/// A ZeRO-3 group (plan.json "zero"): its members' places in the flat
/// buffer and the parameter holding this rank's shard of it.
struct ZeroGroup {
  struct Member {
    std::string name;
    int64_t offset;
    std::vector<int64_t> shape;
    bool hfTransposed;
  };
  std::string name;
  int64_t shard;
  std::vector<Member> members;
  const artifact::ParamDesc *desc = nullptr;
};

/// A ZeRO-3 shard parameter ("zero3:GROUP"), not a model tensor.
bool isShard(const artifact::ParamDesc &p) { return p.name.rfind("zero3:", 0) == 0; }

std::vector<ZeroGroup> zeroGroups(const artifact::Plan &plan) {
  std::vector<ZeroGroup> out;
  if (!plan.zero.contains("groups"))
    return out;
  for (const json &g : plan.zero["groups"]) {
    ZeroGroup z;
    z.name = g["name"];
    z.shard = g["shard"];
    for (const json &m : g["members"])
      z.members.push_back({m["name"], m["offset"], m["shape"].get<std::vector<int64_t>>(),
                           m["hf_transposed"]});
    for (const artifact::ParamDesc &p : plan.params)
      if (p.name == "zero3:" + z.name)
        z.desc = &p;
    if (!z.desc)
      throw Failure("plan.json: error: ZeRO group '" + z.name +
                    "' has no shard parameter; recompile the artifact");
    out.push_back(std::move(z));
  }
  return out;
}

/// A parameter (or its gradient or moment) in Hugging Face layout.
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

bool writeTensors(const std::string &path, const std::vector<NamedTensor> &tensors,
                  std::string &error, const std::string &prefix = "") {
  std::vector<safetensors::Entry> entries;
  for (const NamedTensor &t : tensors)
    entries.push_back({prefix + t.name, t.shape, t.data.data()});
  return safetensors::writeFile(path, entries, error);
}

// --- output --------------------------------------------------------------------

int64_t peakRss() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

std::string clock(double seconds) {
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld",
                static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60),
                static_cast<long long>(s % 60));
  return buf;
}

void writeText(const fs::path &file, const std::string &text) {
  std::ofstream out(file, std::ios::trunc);
  out << text;
  if (!out)
    throw Failure(file.string() + ": error: cannot write (check free space and permissions)");
}

/// The output directory is ours if it is new, empty, or an earlier trlc run.
void claimOutputDir(const fs::path &dir) {
  std::error_code ec;
  if (fs::exists(dir) && !fs::is_empty(dir, ec) && !fs::exists(dir / "trlc_run.json"))
    throw Failure(dir.string() + ": error: [output] output_dir exists and is not "
                  "a trlc run directory; choose another output_dir or remove it");
  fs::create_directories(dir, ec);
  if (ec)
    throw Failure(dir.string() + ": error: cannot create the output directory (" +
                  ec.message() + ")");
}

void copyTokenizer(const std::string &tokenizer, const fs::path &dst) {
  if (tokenizer.empty())
    return;
  fs::path src = fs::is_directory(tokenizer) ? fs::path(tokenizer)
                                             : fs::path(tokenizer).parent_path();
  for (const char *f : {"tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "vocab.json", "merges.txt"})
    if (fs::exists(src / f))
      fs::copy_file(src / f, dst / f, fs::copy_options::overwrite_existing);
}

class Run {
public:
  Run(const RunOptions &o, artifact::Plan &plan, Executor &ex, Communicator &comm)
      : o(o), plan(plan), ex(ex), run(plan.run), comm(&comm), zero(zeroGroups(plan)) {}
  int main();

private:
  void initWeights();
  int64_t resume(const std::string &dir);
  /// Builds a group's whole flat buffer on the host, member by member
  /// (`fill(member, where)`), and keeps this rank's shard in `tensor`.
  template <typename Fill> void keepShard(const ZeroGroup &g, int tensor, Fill fill) {
    std::vector<float> flat(g.shard * comm->size(), 0.0f);
    for (const ZeroGroup::Member &m : g.members)
      fill(m, flat.data() + m.offset);
    ex.write(ex.tensor(tensor), flat.data() + g.shard * comm->rank(), g.shard * sizeof(float));
  }
  /// Where this rank's ZeRO-3 shards go in a checkpoint.
  fs::path shardFile(const fs::path &checkpoint) const {
    return checkpoint / "zero3" /
           ("rank-" + std::to_string(comm->rank()) + "-of-" + std::to_string(comm->size()) +
            ".safetensors");
  }
  /// The policy's parameters ("param"), gradients ("grad") or moments
  /// ("exp_avg", "exp_avg_sq") in Hugging Face layout, whole: sharded ones
  /// are gathered, so every rank must call it.
  std::vector<NamedTensor> collect(const std::string &which);
  void writeCollected(const std::string &path, const std::string &which);
  /// `done`: the optimizer steps the saved state has taken.
  void save(const fs::path &dir, bool withState, int64_t done);
  /// save() with state, then drops the oldest beyond save_total_limit.
  void checkpoint(int64_t done, int64_t keep) {
    fs::path dir = fs::path(run["output_dir"].get<std::string>()) /
                   ("checkpoint-" + std::to_string(done));
    save(dir, true, done);
    comm->barrier();
    checkpoints.push_back(dir.string());
    while (keep > 0 && static_cast<int64_t>(checkpoints.size()) > keep) {
      if (lead())
        fs::remove_all(checkpoints.front());
      checkpoints.erase(checkpoints.begin());
    }
  }
  void evaluate();
  Dataset loadShard(const char *key);

  const RunOptions &o;
  artifact::Plan &plan;
  Executor &ex;
  const json &run;
  Communicator *comm;
  std::vector<ZeroGroup> zero;  // empty: parameters replicated on every rank
  bool lead() const { return comm->rank() == 0; }  // writes every output
  json logHistory = json::array();
  int64_t step = 0;
  std::vector<std::string> checkpoints;
};

void Run::initWeights() {
  const std::string modelPath = run["model_path"];
  std::map<std::string, safetensors::Tensor> tensors;
  std::string error;
  if (!modelPath.empty() && !safetensors::readModelDir(modelPath, tensors, error))
    throw Failure(error);
  uint64_t seed = run["init_seed"];
  double range = run["initializer_range"];
  auto fill = [&](const std::string &name, const std::vector<int64_t> &shape, bool hfT,
                  float *w) {
    if (!modelPath.empty())
      return loadTensor(tensors, modelPath, name, shape, hfT, w);
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    randomInit(name, shape.size(), n, w, seed, range);
  };
  for (const artifact::ParamDesc &p : plan.params)
    if (!isShard(p)) {
      TensorRef t = ex.tensor(p.tensor);
      std::vector<float> w(t.numel());
      fill(p.name, t.desc->shape, p.hfTransposed, w.data());
      ex.write(t, w.data());
    }
  for (const ZeroGroup &g : zero)
    keepShard(g, g.desc->tensor, [&](const ZeroGroup::Member &m, float *w) {
      fill(m.name, m.shape, m.hfTransposed, w);
    });
}

std::vector<NamedTensor> Run::collect(const std::string &which) {
  auto idOf = [&](const artifact::ParamDesc &p) {
    return which == "param" ? p.tensor : which == "grad" ? p.grad
           : which == "exp_avg" ? p.expAvg : p.expAvgSq;
  };
  std::vector<NamedTensor> out;
  for (const artifact::ParamDesc &p : plan.params) {
    if (p.set != "policy" || isShard(p) || idOf(p) < 0)
      continue;
    TensorRef t = ex.tensor(idOf(p));
    NamedTensor n{p.name, t.desc->shape, {}};
    n.data = hfLayout(ex.read<float>(t).data(), n.shape, p.hfTransposed);
    out.push_back(std::move(n));
  }
  for (const ZeroGroup &g : zero) {
    int id = idOf(*g.desc);
    if (id < 0)
      continue;
    std::vector<float> flat(g.shard * comm->size());
    std::vector<float> mine = ex.read<float>(ex.tensor(id));
    comm->allGather(mine.data(), flat.data(), g.shard);
    for (const ZeroGroup::Member &m : g.members) {
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

void Run::writeCollected(const std::string &path, const std::string &which) {
  std::vector<NamedTensor> tensors = collect(which);
  std::string error;
  if (lead() && !writeTensors(path, tensors, error))
    throw Failure(error);
}

/// Every rank calls it: sharded state is gathered for the consolidated
/// files rank 0 writes, and each rank writes its own shards.
void Run::save(const fs::path &dir, bool withState, int64_t done) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  writeCollected((dir / "model.safetensors").string(), "param");
  if (lead()) {
    writeText(dir / "config.json", run["model_config"].dump(2) + "\n");
    copyTokenizer(run["tokenizer"].get<std::string>(), dir);
  }
  if (!withState)
    return;
  std::vector<NamedTensor> first = collect("exp_avg"), second = collect("exp_avg_sq");
  std::string error;
  if (lead()) {
    std::vector<NamedTensor> all;
    for (NamedTensor &t : first)
      all.push_back({"exp_avg." + t.name, t.shape, std::move(t.data)});
    for (NamedTensor &t : second)
      all.push_back({"exp_avg_sq." + t.name, t.shape, std::move(t.data)});
    if (!writeTensors((dir / "optimizer.safetensors").string(), all, error))
      throw Failure(error);
  }
  if (!zero.empty()) {
    // ZeRO-3: this rank's shards as they are.
    fs::create_directories(dir / "zero3", ec);
    std::vector<NamedTensor> shards;
    for (const ZeroGroup &g : zero)
      for (auto [id, key] : {std::pair{g.desc->tensor, "param."},
                             std::pair{g.desc->expAvg, "exp_avg."},
                             std::pair{g.desc->expAvgSq, "exp_avg_sq."}}) {
        shards.push_back({key + g.name, {g.shard}, ex.read<float>(ex.tensor(id), 0, g.shard)});
      }
    if (!writeTensors(shardFile(dir).string(), shards, error))
      throw Failure(error);
  }
  if (!lead())
    return;
  writeText(dir / "rng_state.json",
            json{{"seed", run["seed"]}, {"global_step", done}}.dump(2) + "\n");
  writeText(dir / "trainer_state.json",
            json{{"global_step", done},
                 {"max_steps", run["total_steps"]},
                 {"num_train_epochs", run["num_train_epochs"]},
                 {"logging_steps", run["logging_steps"]},
                 {"save_steps", run["save_steps"]},
                 {"train_batch_size", run["batch_size"]},
                 {"world_size", comm->size()},
                 {"zero_stage", plan.zero.value("stage", int64_t(0))},
                 {"log_history", logHistory}}.dump(2) + "\n");
}

/// `--resume CHECKPOINT`: weights and AdamW moments from a checkpoint this
/// trlc wrote; returns its global step. This rank's ZeRO-3 shards are read
/// as they are when the checkpoint has them for this world size; otherwise
/// the consolidated Hugging Face files are sharded again (any world size).
int64_t Run::resume(const std::string &dir) {
  if (!fs::is_directory(dir))
    throw Failure("--resume " + dir + ": error: no such checkpoint directory");
  json state;
  {
    std::ifstream in(fs::path(dir) / "trainer_state.json");
    state = json::parse(in, nullptr, false);
  }
  if (state.is_discarded() || !state.contains("global_step"))
    throw Failure(dir + ": error: no readable trainer_state.json; --resume takes a "
                  "checkpoint-STEP directory trlc wrote");
  int64_t global = state["global_step"];
  if (state.contains("log_history"))
    logHistory = state["log_history"];
  std::string error;
  fs::path mine = shardFile(dir);
  if (!zero.empty() && fs::exists(mine)) {
    std::map<std::string, safetensors::Tensor> shards;
    if (!safetensors::readFile(mine.string(), shards, error))
      throw Failure(error);
    for (const ZeroGroup &g : zero)
      for (auto [id, key] : {std::pair{g.desc->tensor, "param."},
                             std::pair{g.desc->expAvg, "exp_avg."},
                             std::pair{g.desc->expAvgSq, "exp_avg_sq."}}) {
        std::vector<float> w(g.shard);
        loadTensor(shards, mine.string(), key + g.name, {g.shard}, false, w.data());
        ex.write(ex.tensor(id), w.data(), g.shard * sizeof(float));
      }
    return global;
  }
  std::map<std::string, safetensors::Tensor> model, moments;
  if (!safetensors::readModelDir(dir, model, error) ||
      !safetensors::readFile((fs::path(dir) / "optimizer.safetensors").string(), moments, error))
    throw Failure(error);
  for (const artifact::ParamDesc &p : plan.params) {
    if (isShard(p) || p.set != "policy")
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
  for (const ZeroGroup &g : zero)
    for (auto [id, key, file] : {std::tuple{g.desc->tensor, "", &model},
                                 std::tuple{g.desc->expAvg, "exp_avg.", &moments},
                                 std::tuple{g.desc->expAvgSq, "exp_avg_sq.", &moments}})
      keepShard(g, id, [&](const ZeroGroup::Member &m, float *w) {
        loadTensor(*file, dir, key + m.name, m.shape, m.hfTransposed, w);
      });
  return global;
}

/// Rows of one of the artifact's token shards; refuses to train on a
/// dataset that changed since the compile.
Dataset Run::loadShard(const char *key) {
  const json &d = run["data"];
  std::vector<std::string> sources = d["sources"].get<std::vector<std::string>>();
  bool present = std::all_of(sources.begin(), sources.end(),
                             [](const std::string &f) { return fs::exists(f); });
  if (present && hashFiles(sources) != d["hash"].get<std::string>())
    throw Failure(o.artifact + ": error: the dataset changed since this artifact was "
                  "compiled (" + sources.front() + (sources.size() > 1 ? ", ..." : "") +
                  "); run trlc compile again (trlc train recompiles by itself)");
  Dataset out;
  try {
    for (TokenRow &r : readShard((fs::path(o.artifact) / d[key].get<std::string>()).string()))
      out.rows.push_back({std::move(r.ids), std::move(r.mask), std::move(r.seqLengths)});
  } catch (const std::runtime_error &e) {
    throw Failure(e.what());
  }
  return out;
}

void Run::evaluate() {
  if (!ex.hasProgram("predict") || run["data"]["eval_shard"].get<std::string>().empty())
    return;
  int64_t vocabSize = run["model_config"]["vocab_size"].get<int64_t>();
  int64_t seqLen = run["seq_len"].get<int64_t>();
  Dataset data = loadShard("eval_shard");
  std::vector<std::string> vocab = readVocab(run["tokenizer"].get<std::string>());
  const json &cfg = run["model_config"];
  int64_t eos = cfg.contains("eos_token_id") ? cfg["eos_token_id"].get<int64_t>() : -1;
  int64_t pad = run["pad_token_id"].get<int64_t>();
  TensorRef ids = ex.input("predict", "input_ids");
  int64_t b = ids.dim(0);
  TensorRef logits = ex.output("predict", "logits");
  int64_t correct = 0, shown = 0;
  for (size_t start = 0; start < data.rows.size(); start += b) {
    size_t n = std::min<size_t>(b, data.rows.size() - start);
    std::vector<Example> cur(n);
    std::vector<std::vector<int64_t>> expected(n);
    std::vector<bool> done(n, false);
    for (size_t r = 0; r < n; ++r) {
      const Example &e = data.rows[start + r];
      for (size_t t = 0; t < e.ids.size(); ++t)
        (e.completion[t] ? expected[r] : cur[r].ids).push_back(e.ids[t]);
      cur[r].completion.assign(cur[r].ids.size(), 0);
    }
    for (int64_t iter = 0; iter < seqLen; ++iter) {
      std::vector<const Example *> rows;
      for (auto &c : cur)
        rows.push_back(&c);
      int64_t unused = 0;
      fillSftBatch(ex, "predict", rows, pad, unused);
      ex.run("predict");
      bool any = false;
      for (size_t r = 0; r < n; ++r) {
        int64_t len = cur[r].ids.size();
        if (len >= seqLen)  // a prompt that fills the sequence bound
          done[r] = true;
        if (done[r])
          continue;
        std::vector<float> row = ex.read<float>(logits, (r * seqLen + len - 1) * vocabSize, vocabSize);
        int64_t next = std::max_element(row.begin(), row.end()) - row.begin();
        cur[r].ids.push_back(next);
        cur[r].completion.push_back(1);
        int64_t generated = std::count(cur[r].completion.begin(), cur[r].completion.end(), 1);
        // A completion longer than the expected one cannot match: stop
        // there (a padding-free row would otherwise run to the whole
        // batch's length).
        if (next == eos || len + 1 >= seqLen ||
            generated >= static_cast<int64_t>(expected[r].size()))
          done[r] = true;
        any |= !done[r];
      }
      if (!any)
        break;
    }
    for (size_t r = 0; r < n; ++r) {
      std::vector<int64_t> prompt, got;
      for (size_t t = 0; t < cur[r].ids.size(); ++t)
        (cur[r].completion[t] ? got : prompt).push_back(cur[r].ids[t]);
      bool ok = got == expected[r];
      correct += ok;
      if (shown < 5 && !o.quiet && lead()) {
        auto strip = [&](std::vector<int64_t> v) {
          v.erase(std::remove_if(v.begin(), v.end(), [&](int64_t t) {
                    return t == eos || t == pad || (cfg.contains("bos_token_id") &&
                                                    t == cfg["bos_token_id"].get<int64_t>());
                  }), v.end());
          return decode(vocab, v);
        };
        std::cout << "  " << strip(prompt) << " " << strip(got) << "   (expected "
                  << strip(expected[r]) << ")" << (ok ? "" : "  x") << "\n";
        ++shown;
      }
    }
  }
  double acc = data.rows.empty() ? 0 : static_cast<double>(correct) / data.rows.size();
  if (!lead())
    return;
  std::printf("eval: exact match %lld/%zu = %.1f%% (greedy)\n",
              static_cast<long long>(correct), data.rows.size(), 100 * acc);
  json result = {{"eval_exact_match", acc}, {"eval_examples", data.rows.size()}, {"step", step}};
  logHistory.push_back(result);
  std::ofstream(fs::path(run["output_dir"].get<std::string>()) / "metrics.jsonl",
                std::ios::app) << result.dump() << "\n";
}

int Run::main() {
  if (run["method"] != "sft")
    throw Failure(o.artifact + ": error: trlc run trains SFT artifacts; " +
                  run["method"].get<std::string>() +
                  " needs the data pipeline's preference batches, which is not "
                  "built yet");
  int64_t seqLen = run["seq_len"], batch = run["batch_size"],
          accum = run["gradient_accumulation_steps"];
  int64_t vocab = run["model_config"]["vocab_size"];
  fs::path outDir = run["output_dir"].get<std::string>();
  int world = comm->size(), rank = comm->rank();
  if (lead()) {
    claimOutputDir(outDir);
    writeText(outDir / "trlc_run.json",
              json{{"artifact", fs::absolute(o.artifact).string()}}.dump(2) + "\n");
  }
  comm->barrier();

  // Weights.
  initWeights();
  if (!o.dumpInitial.empty())
    writeCollected(o.dumpInitial, "param");
  int64_t first = o.resume.empty() ? 0 : resume(o.resume);

  // The rows the compiler's data plan wrote into the artifact.
  Dataset data = loadShard("train_shard");
  if (data.rows.empty())
    throw Failure("error: no training example has a trainable token (check [data] "
                  "max_length and completion_only_loss)");

  int64_t total = o.maxSteps > 0 ? std::min<int64_t>(o.maxSteps, run["total_steps"])
                                 : run["total_steps"].get<int64_t>();
  int64_t pad = run["pad_token_id"];
  std::vector<size_t> order(data.rows.size());
  size_t cursor = order.size();
  int64_t epoch = -1;
  uint64_t seed = run["seed"];
  // Data parallel: every rank draws the same global micro-batch of
  // world x batch rows (same shuffle) and trains on its own slice, so the
  // global batch does not depend on the world size.
  auto nextGlobalRows = [&]() {
    std::vector<const Example *> rows;
    while (static_cast<int64_t>(rows.size()) < batch * world) {
      if (cursor == order.size()) {
        if (!rows.empty())
          break;  // the epoch's last, partial batch
        ++epoch;
        std::iota(order.begin(), order.end(), 0);
        std::mt19937_64 rng(seed + epoch);
        std::shuffle(order.begin(), order.end(), rng);
        cursor = 0;
      }
      rows.push_back(&data.rows[order[cursor++]]);
    }
    return rows;
  };
  auto slice = [&](const std::vector<const Example *> &global) {
    size_t from = std::min(global.size(), size_t(rank * batch));
    size_t to = std::min(global.size(), size_t((rank + 1) * batch));
    return std::vector<const Example *>(global.begin() + from, global.begin() + to);
  };

  const bool tty = isatty(2) && !o.quiet && lead();
  std::ofstream metrics;
  if (lead())
    metrics.open(outDir / "metrics.jsonl", first > 0 ? std::ios::app : std::ios::trunc);
  if (first >= total)
    throw Failure(o.resume + ": error: the checkpoint is at step " + std::to_string(first) +
                  " and the run has " + std::to_string(total) +
                  " steps: nothing left to train (raise --max-steps or the recipe's length)");
  // A resumed run draws the batches the first steps used, and drops them.
  for (int64_t s = 0; s < first * accum; ++s)
    nextGlobalRows();
  int64_t logEvery = std::max<int64_t>(1, run["logging_steps"].get<int64_t>());
  int64_t saveEvery = run["save_steps"], keep = run["save_total_limit"];
  double intervalLoss = 0, intervalTime = 0;
  int64_t intervalTokens = 0, intervalSteps = 0, numTokens = 0;
  // A resumed run counts on from the checkpoint's last logged total.
  for (const json &row : logHistory)
    numTokens = row.value("num_tokens", numTokens);
  auto begin = std::chrono::steady_clock::now();
  TensorRef stepIn = ex.input("optimizer_step", "step");
  TensorRef numItems = ex.input("train_step", "num_items_in_batch");
  TensorRef lossOut = ex.output("train_step", "loss");
  if (!o.quiet && lead())
    std::cout << "training " << total << " steps on " << data.rows.size()
              << " examples (batch " << batch << " x " << accum << " accumulation"
              << (world > 1 ? " x " + std::to_string(world) + " processes (" + comm->name() + ")"
                            : std::string())
              << ", sequence bound " << seqLen << ")\n";

  // For the multi-process tests: TRLC_FAULT_EXIT=RANK:STEP makes that rank
  // die at that step, as a crashed process would.
  int faultRank = -1;
  int64_t faultStep = -1;
  if (const char *f = std::getenv("TRLC_FAULT_EXIT"))
    std::sscanf(f, "%d:%ld", &faultRank, &faultStep);
  for (step = first; step < total; ++step) {
    if (rank == faultRank && step == faultStep)
      std::_Exit(3);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::vector<const Example *>> micro(accum);
    int64_t trainable = 0;  // over the whole global batch, as TRL divides
    for (auto &m : micro) {
      std::vector<const Example *> global = nextGlobalRows();
      trainable += countTrainable(global);
      m = slice(global);
    }
    double loss = 0, tokensNow = 0;
    for (auto &m : micro) {
      int64_t tokens = 0;
      fillSftBatch(ex, "train_step", m, pad, tokens);
      ex.setScalar(numItems, static_cast<float>(std::max<int64_t>(trainable, 1)));
      ex.run("train_step");
      loss += ex.scalar<float>(lossOut);
      tokensNow += tokens;
    }
    if (world > 1 && zero.empty())
      // Each rank's gradients are its share of the global mean: sum them
      // (ZeRO-3 reduce-scatters them inside the step instead).
      for (const artifact::ParamDesc &p : plan.params)
        if (p.grad >= 0) {
          TensorRef g = ex.tensor(p.grad);
          if (g.dtype() == artifact::DType::F64)
            comm->allReduceSum(g.as<double>(), g.numel());
          else
            comm->allReduceSum(g.as<float>(), g.numel());
        }
    if (world > 1) {
      double totals[2] = {loss, tokensNow};
      comm->allReduceSum(totals, 2);
      loss = totals[0];
      tokensNow = totals[1];
    }
    numTokens += static_cast<int64_t>(tokensNow);
    intervalTokens += static_cast<int64_t>(tokensNow);
    // The accumulated gradients of the first optimizer step.
    if (step == 0 && !o.dumpGradients.empty())
      writeCollected(o.dumpGradients, "grad");
    ex.setScalar<int64_t>(stepIn, step);
    ex.run("optimizer_step");
    double gradNorm = ex.scalar<float>(ex.output("optimizer_step", "grad_norm"));
    double lr = ex.scalar<float>(ex.output("optimizer_step", "learning_rate"));
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!std::isfinite(loss))
      throw Failure("error: the loss is " + std::to_string(loss) + " at step " +
                    std::to_string(step + 1) + "; lower [train] learning_rate or "
                    "set max_grad_norm");
    intervalLoss += loss;
    intervalTime += dt;
    ++intervalSteps;
    if (lead() && ((step + 1) % logEvery == 0 || step + 1 == total)) {
      json m = {{"step", step + 1},
                {"loss", intervalLoss / intervalSteps},
                {"grad_norm", gradNorm},
                {"learning_rate", lr},
                {"num_tokens", numTokens},
                {"tokens_per_second", intervalTokens / std::max(intervalTime, 1e-9)},
                {"step_time_s", intervalTime / intervalSteps},
                {"peak_memory_bytes", peakRss()},
                {"planned_memory_bytes", ex.reservedBytes()},
                {"runtime_allocated_bytes", ex.allocatedPeakBytes()},
                {"epoch", static_cast<double>(step + 1) * batch * accum * world / data.rows.size()}};
      metrics << m.dump() << "\n" << std::flush;
      logHistory.push_back(m);
      if (!tty && !o.quiet)
        std::printf("step %lld/%lld  loss %.4f  grad_norm %.3f  lr %.2e  %.0f tok/s\n",
                    static_cast<long long>(step + 1), static_cast<long long>(total),
                    m["loss"].get<double>(), gradNorm, lr,
                    m["tokens_per_second"].get<double>());
      intervalLoss = intervalTime = 0;
      intervalTokens = intervalSteps = 0;
    }
    if (tty) {
      double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
      int width = 30, filled = static_cast<int>(width * (step + 1) / total);
      std::fprintf(stderr, "\r[%s%s] %lld/%lld loss %.4f  %s<%s ",
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                   static_cast<long long>(step + 1), static_cast<long long>(total), loss,
                   clock(elapsed).c_str(),
                   clock(elapsed / (step + 1) * (total - step - 1)).c_str());
      if (step + 1 == total)
        std::fprintf(stderr, "\n");
    }
    if (saveEvery > 0 && (step + 1) % saveEvery == 0 && step + 1 != total)
      checkpoint(step + 1, keep);
  }
  // The last step is always checkpointed, and the final model is saved
  // (consolidated by rank 0 when the weights are sharded).
  checkpoint(step, keep);
  save(outDir, false, step);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  if (!o.quiet && lead())
    std::cout << "trained " << step << " steps in " << clock(elapsed) << "; model saved to "
              << outDir.string() << "\n";
  // Generation reads sharded weights through collectives: every rank
  // decodes the same batches then; only rank 0 reports.
  if (zero.empty() && !lead())
    return 0;
  evaluate();
  return 0;
}

} // namespace

// Parses one of run's options at argv[i]; false if argv[i] is not one.
/// Sets `err` when the option's value is bad.
bool parseRunOption(int &i, int argc, char **argv, RunOptions &r,
                    std::string &err) {
  std::string arg = argv[i];
  auto value = [&](const std::string &flag) -> std::optional<std::string> {
    if (arg.rfind(flag + "=", 0) == 0)
      return arg.substr(flag.size() + 1);
    if (arg == flag) {
      if (i + 1 < argc)
        return std::string(argv[++i]);
      err = flag + " needs a value";
      return std::string();
    }
    return std::nullopt;
  };
  auto integer = [&](const std::string &flag, const std::string &v, int64_t &out) {
    if (!err.empty())
      return;
    char *end = nullptr;
    long long n = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end || n <= 0)
      err = flag + " needs a positive integer, got '" + v + "'";
    else
      out = n;
  };
  if (auto v = value("--max-steps")) {
    integer("--max-steps", *v, r.maxSteps);
  } else if (auto v = value("--threads")) {
    int64_t n = 0;
    integer("--threads", *v, n);
    r.threads = static_cast<int>(n);
  } else if (auto v = value("--dump-initial")) {
    r.dumpInitial = *v;
  } else if (auto v = value("--dump-gradients")) {
    r.dumpGradients = *v;
  } else if (auto v = value("--resume")) {
    r.resume = *v;
  } else if (auto v = value("--output-dir")) {
    if (err.empty() && v->empty())
      err = "--output-dir needs a directory";
    r.outputDir = *v;
  } else if (auto v = value("--device")) {
    if (err.empty() && *v != "cpu" && *v != "cuda")
      err = "--device must be cpu or cuda, got '" + *v + "'";
    r.device = *v;
  } else if (auto v = value("--nproc")) {
    int64_t n = 0;
    integer("--nproc", *v, n);
    if (err.empty() && n > 256)
      err = "--nproc " + *v + ": at most 256 local processes";
    r.nproc = static_cast<int>(n);
  } else if (arg == "--quiet") {
    r.quiet = true;
  } else {
    return false;
  }
  return true;
}

void preferPassiveOpenMP(char **argv) {
  if (std::getenv("OMP_WAIT_POLICY"))
    return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);
}

int runCommand(int argc, char **argv, std::string &err) {
  RunOptions r;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (parseRunOption(i, argc, argv, r, err)) {
      if (!err.empty())
        return 2;
    } else if (!arg.empty() && arg[0] == '-') {
      err = "unknown option '" + arg + "' (run takes --device, --output-dir, --max-steps, "
            "--nproc, --threads, --quiet, --resume, --dump-initial, --dump-gradients)";
      return 2;
    } else if (r.artifact.empty()) {
      r.artifact = arg;
    } else {
      err = "more than one artifact given ('" + r.artifact + "' and '" + arg + "')";
      return 2;
    }
  }
  if (r.artifact.empty()) {
    err = "run needs an artifact: trlc run OUT.trlc";
    return 2;
  }
  return runArtifact(r);
}


namespace {

/// `--nproc N`: starts N copies of this program as ranks 0..N-1 of one
/// data-parallel run (the torchrun variables plus a rendezvous directory),
/// waits, and stops the others as soon as one fails.
int launch(const RunOptions &o) {
  char dirTemplate[] = "/tmp/trlc-rendezvous-XXXXXX";
  if (!mkdtemp(dirTemplate)) {
    std::cerr << "error: cannot create a rendezvous directory in /tmp\n";
    return 1;
  }
  std::string dir = dirTemplate;
  int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int threads = o.threads > 0 ? o.threads : std::max(1, hw / o.nproc);
  std::vector<std::string> args = {"trlc", "run", o.artifact, "--threads",
                                   std::to_string(threads)};
  if (o.maxSteps > 0)
    args.insert(args.end(), {"--max-steps", std::to_string(o.maxSteps)});
  if (o.quiet)
    args.push_back("--quiet");
  if (!o.dumpInitial.empty())
    args.insert(args.end(), {"--dump-initial", o.dumpInitial});
  if (!o.dumpGradients.empty())
    args.insert(args.end(), {"--dump-gradients", o.dumpGradients});
  if (!o.resume.empty())
    args.insert(args.end(), {"--resume", o.resume});
  std::vector<pid_t> pids;
  for (int r = 0; r < o.nproc; ++r) {
    pid_t pid = fork();
    if (pid < 0) {
      std::cerr << "error: cannot start process " << r << "\n";
      for (pid_t p : pids)
        kill(p, SIGTERM);
      return 1;
    }
    if (pid == 0) {
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      setenv("TRLC_RENDEZVOUS_DIR", dir.c_str(), 1);
      std::vector<char *> argv;
      for (std::string &a : args)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      execv("/proc/self/exe", argv.data());
      std::_Exit(127);
    }
    pids.push_back(pid);
  }
  int rc = 0;
  size_t running = pids.size();
  while (running > 0) {
    int status = 0;
    pid_t done = waitpid(-1, &status, 0);
    if (done < 0)
      break;
    --running;
    int r = static_cast<int>(std::find(pids.begin(), pids.end(), done) - pids.begin());
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && rc == 0) {
      rc = 1;
      std::cerr << "error: rank " << r << " of " << o.nproc << " "
                << (WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                        : "exited with status " + std::to_string(WEXITSTATUS(status)))
                << "; stopping the other ranks\n";
      for (pid_t p : pids)
        if (p != done)
          kill(p, SIGTERM);
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return rc;
}

} // namespace

int runArtifact(const RunOptions &o) {
  const char *worldEnv = std::getenv("WORLD_SIZE");
  bool launched = worldEnv && *worldEnv;  // by `--nproc` or an outside launcher
  if (o.nproc > 1 && launched && std::to_string(o.nproc) != worldEnv) {
    std::cerr << "error: --nproc " << o.nproc << " but WORLD_SIZE is " << worldEnv
              << " (set by the launcher that started this process); drop --nproc\n";
    return 2;
  }
  try {
    artifact::Manifest manifest;
    std::string error;
    if (!artifact::readManifest(o.artifact, manifest, error))
      throw Failure(error);
    artifact::Plan plan;
    if (!artifact::readPlan(o.artifact, plan, error))
      throw Failure(error);
    if (!o.outputDir.empty())
      plan.run["output_dir"] = fs::absolute(o.outputDir).string();
    int64_t compiled = plan.run.value("world_size", int64_t(1));
    int64_t world = launched ? std::atoll(worldEnv) : std::max(1, o.nproc);
    if (world != compiled)
      throw Failure(o.artifact + ": error: compiled for " + std::to_string(compiled) +
                    " process(es) but run with " + std::to_string(world) +
                    "; compile again with --nproc " + std::to_string(world) +
                    " (the step count, LR schedule and sharding depend on it)");
    if (world > 1 && !launched)
      return launch(o);
    int threads = o.threads > 0 ? o.threads
                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::unique_ptr<Backend> backend;
    if (o.device == "cuda") {
      const char *local = std::getenv("LOCAL_RANK");
      backend = makeCudaBackend(local && *local ? std::atoi(local) : 0);
    } else {
      backend = makeCpuBackend(threads);
    }
    std::unique_ptr<Communicator> comm = makeCommunicator(o.device);
    Executor ex(plan, *backend, comm.get());
    return Run(o, plan, ex, *comm).main();
  } catch (const Failure &e) {
    std::cerr << e.what() << "\n";
    return 1;
  } catch (const CommError &e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const DataError &e) {
    std::cerr << e.what() << "\n";
    return 1;
  } catch (const KernelError &e) {
    std::cerr << o.artifact << ": error: " << e.what() << "\n";
    return 1;
  } catch (const json::exception &e) {
    std::cerr << o.artifact << "/plan.json: error: malformed run section (" << e.what()
              << "); recompile the artifact with `trlc compile`\n";
    return 1;
  } catch (const fs::filesystem_error &e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

} // namespace trlc
