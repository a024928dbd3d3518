//===- Recipe.cpp - recipe schema, validation and defaults ----------------===//
//
// The schema below is the single list of recipe keys: section, name, kind,
// TRL default (per method where TRL's configs differ), range, and the
// methods the key applies to. Validation, defaults and --print-config are
// all driven by it.
//
//===----------------------------------------------------------------------===//

#include "frontend/Recipe.h"
#include "trlc/Files.h"
#include "frontend/Diag.h"
#include "frontend/ModelConfig.h"
#include "frontend/Suggest.h"

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

namespace fs = std::filesystem;

namespace trlc {

const char *methodName(Method method) {
  switch (method) {
  case Method::SFT: return "sft";
  case Method::DPO: return "dpo";
  case Method::KTO: return "kto";
  case Method::GRPO: return "grpo";
  case Method::RLOO: return "rloo";
  case Method::OnlineDPO: return "online_dpo";
  case Method::PPO: return "ppo";
  case Method::Reward: return "reward";
  }
  return "?";
}

std::string Diag::where(const toml::node &node) const {
  if (auto it = overrides.find(&node); it != overrides.end())
    return "--set " + it->second;
  const toml::source_region &src = node.source();
  if (!src.begin.line)
    return file;
  return file + ":" + std::to_string(src.begin.line) + ":" +
         std::to_string(src.begin.column);
}

Error Diag::at(const toml::source_region &where, const std::string &msg) const {
  std::ostringstream os;
  if (where.begin.line)
    os << file << ":" << where.begin.line << ":" << where.begin.column;
  else
    os << file;
  os << ": error: " << msg;
  return Error{os.str()};
}

Error Diag::at(const toml::node &node, const std::string &msg) const {
  return Error{where(node) + ": error: " + msg};
}

std::string tomlTypeName(const toml::node &n) {
  switch (n.type()) {
  case toml::node_type::string: return "a string";
  case toml::node_type::integer: return "an integer";
  case toml::node_type::floating_point: return "a float";
  case toml::node_type::boolean: return "a boolean";
  case toml::node_type::array: return "an array";
  case toml::node_type::table: return "a table";
  default: return "a date/time";
  }
}

std::string tomlValueText(const toml::node &n) {
  if (auto s = n.as_string()) {
    std::string out = "\"";
    for (char c : s->get()) {
      if (c == '"' || c == '\\')
        out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    return out + "\"";
  }
  if (auto f = n.as_floating_point()) {
    double v = f->get();
    if (std::isnan(v))
      return "nan";
    if (std::isinf(v))
      return v > 0 ? "inf" : "-inf";
    // Shortest text that reads back as the same double, always a float.
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof(buf), v);
    std::string out(buf, res.ptr);
    if (out.find_first_of(".e") == std::string::npos)
      out += ".0";
    return out;
  }
  if (auto a = n.as_array()) {
    std::string out = "[";
    for (size_t i = 0; i < a->size(); ++i)
      out += (i ? ", " : "") + tomlValueText(*a->get(i));
    return out + "]";
  }
  std::ostringstream os;
  n.visit([&](auto &&v) { os << toml::toml_formatter(v); });
  return os.str();
}

namespace {

enum class Kind { String, Int, Float, Bool, Enum, Size, Paths, Strings, Floats };

enum MethodMask : unsigned {
  SFT = 1,
  DPO = 2,
  KTO = 4,
  GRPO = 8,
  RLOO = 16,
  ONLINE_DPO = 32,
  PPO = 64,
  REWARD = 128,
  ALL = 255,
};

struct KeySpec {
  const char *section;  // "" for top-level keys
  const char *key;
  Kind kind;
  /// Default as a TOML literal per method (sft, dpo, kto, grpo, rloo,
  /// online_dpo, ppo, reward); nullptr means "no value" (optional key) for
  /// that method.
  std::array<const char *, 8> defaults;
  unsigned methods = ALL;
  const char *choices = nullptr;  // "a|b|c" for Kind::Enum
  double lo = -INFINITY, hi = INFINITY;
  bool loOpen = false;  // range excludes lo
  const char *help = "";
  bool hiOpen = false;  // range excludes hi
};

constexpr std::array<const char *, 8> all(const char *v) { return {v, v, v, v, v, v, v, v}; }
constexpr std::array<const char *, 8> none() {
  return {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
}

// clang-format off
const KeySpec kSchema[] = {
  {"", "method", Kind::Enum, none(), ALL, "sft|dpo|kto|grpo|rloo|online_dpo|ppo|reward", -INFINITY, INFINITY, false, "training method"},

  {"model", "path", Kind::String, none(), ALL, nullptr, -INFINITY, INFINITY, false, "Hugging Face model directory"},
  {"model", "dtype", Kind::Enum, all("\"bf16\""), ALL, "bf16|fp32", -INFINITY, INFINITY, false, "activation storage: bf16 keeps the activations between ops in bf16 (fp32 master weights, gradients and optimizer state; kernels compute in fp32), fp32 keeps everything in fp32"},
  {"model", "init_seed", Kind::Int, all("0"), ALL, nullptr, 0, 4294967295.0, false, "seed of the random initialisation (inline [model.config] only)"},
  {"model", "tokenizer", Kind::String, none(), ALL, nullptr, -INFINITY, INFINITY, false, "directory with tokenizer.json (default: the model directory)"},

  {"data", "train", Kind::Paths, none(), ALL, nullptr, -INFINITY, INFINITY, false, "JSONL file, glob or list of them"},
  {"data", "eval", Kind::Paths, none(), ALL, nullptr, -INFINITY, INFINITY, false, "held-out JSONL file(s) for evaluation"},
  {"data", "format", Kind::Enum, all("\"auto\""), ALL, "auto|language_modeling|prompt_only|prompt_completion|preference|unpaired_preference|tokenized", -INFINITY, INFINITY, false, "dataset format"},
  {"data", "dataset_text_field", Kind::String, {"\"text\"", nullptr, nullptr, nullptr}, SFT, nullptr, -INFINITY, INFINITY, false, "column of language-modeling text"},
  {"data", "max_length", Kind::Int, {"1024", "1024", "1024", nullptr, nullptr, nullptr, nullptr, "1024"}, SFT | DPO | KTO | REWARD, nullptr, 1, 1 << 24, false, "maximum tokens per example (reward: longer pairs are dropped, as TRL filters them)"},
  {"data", "max_prompt_length", Kind::Int, {nullptr, "512", "512", "512", "512", "512", "512"}, DPO | KTO | GRPO | RLOO | ONLINE_DPO | PPO, nullptr, 1, 1 << 24, false, "maximum prompt tokens (keeps the prompt's end)"},
  {"data", "max_completion_length", Kind::Int, {nullptr, nullptr, nullptr, "512", "256", "64", "53"}, DPO | KTO | GRPO | RLOO | ONLINE_DPO | PPO, nullptr, 1, 1 << 24, false, "maximum completion tokens (keeps the completion's start; online methods: tokens generated, TRL's max_new_tokens for online DPO, response_length for PPO)"},
  {"data", "truncation_mode", Kind::Enum, {"\"keep_start\"", "\"keep_end\"", "\"keep_end\"", nullptr}, SFT | DPO | KTO, "keep_start|keep_end", -INFINITY, INFINITY, false, "which end of an over-long example to keep"},
  {"data", "packing", Kind::Bool, {"false", nullptr, nullptr, nullptr}, SFT, nullptr, -INFINITY, INFINITY, false, "pack examples into rows of max_length"},
  {"data", "packing_strategy", Kind::Enum, {"\"bfd\"", nullptr, nullptr, nullptr}, SFT, "bfd|bfd_split|wrapped", -INFINITY, INFINITY, false, "packing algorithm"},
  {"data", "padding_free", Kind::Bool, {"false", "false", nullptr, nullptr}, SFT | DPO, nullptr, -INFINITY, INFINITY, false, "flatten each batch into one row with per-document positions"},
  {"data", "completion_only_loss", Kind::Bool, none(), SFT, nullptr, -INFINITY, INFINITY, false, "train on completion tokens only (default: on for prompt-completion data)"},
  {"data", "assistant_only_loss", Kind::Bool, {"false", nullptr, nullptr, nullptr}, SFT, nullptr, -INFINITY, INFINITY, false, "train on assistant turns only"},
  {"data", "chat_template_path", Kind::String, none(), ALL, nullptr, -INFINITY, INFINITY, false, "Jinja chat template overriding tokenizer_config.json"},
  {"data", "on_bad_row", Kind::Enum, all("\"error\""), ALL, "error|skip", -INFINITY, INFINITY, false, "what to do with an invalid dataset row"},

  {"train", "learning_rate", Kind::Float, {"2e-5", "1e-6", "1e-6", "1e-6", "1e-6", "5e-7", "3e-6", "1e-4"}, ALL, nullptr, 0, 10, false, "peak learning rate"},
  {"train", "lr_scheduler_type", Kind::Enum, all("\"linear\""), ALL, "constant|linear|cosine", -INFINITY, INFINITY, false, "learning-rate schedule"},
  {"train", "warmup_ratio", Kind::Float, all("0.0"), ALL, nullptr, 0, 1, false, "fraction of steps spent warming up"},
  {"train", "warmup_steps", Kind::Int, all("0"), ALL, nullptr, 0, INFINITY, false, "warm-up steps (overrides warmup_ratio)"},
  {"train", "per_device_train_batch_size", Kind::Int, all("8"), ALL, nullptr, 1, 1 << 20, false, "examples (or packed rows) per micro-batch"},
  {"train", "gradient_accumulation_steps", Kind::Int, all("1"), ALL, nullptr, 1, 1 << 20, false, "micro-batches per optimizer step"},
  {"train", "num_train_epochs", Kind::Float, all("3.0"), ALL, nullptr, 0, 1e6, true, "passes over the dataset"},
  {"train", "max_steps", Kind::Int, all("-1"), ALL, nullptr, -1, INFINITY, false, "optimizer steps (-1: from num_train_epochs)"},
  {"train", "max_grad_norm", Kind::Float, all("1.0"), ALL, nullptr, 0, INFINITY, false, "global gradient-norm clip (0 disables)"},
  {"train", "weight_decay", Kind::Float, all("0.0"), ALL, nullptr, 0, INFINITY, false, "AdamW decoupled weight decay"},
  {"train", "adam_beta1", Kind::Float, all("0.9"), ALL, nullptr, 0, 1, false, "AdamW beta1", true},
  {"train", "adam_beta2", Kind::Float, all("0.999"), ALL, nullptr, 0, 1, false, "AdamW beta2", true},
  {"train", "adam_epsilon", Kind::Float, all("1e-8"), ALL, nullptr, 0, 1, true, "AdamW epsilon"},
  {"train", "seed", Kind::Int, all("42"), ALL, nullptr, 0, 4294967295.0, false, "data order and dropout seed"},
  {"train", "disable_dropout", Kind::Bool, {"false", "true", "true", "false", "false", "true", "true", "true"}, ALL, nullptr, -INFINITY, INFINITY, false, "set every dropout probability to 0, as TRL's disable_dropout (in trlc's models only [peft] lora_dropout has one)"},

  {"memory", "use_liger_kernel", Kind::Bool, all("false"), ALL, nullptr, -INFINITY, INFINITY, false, "fused linear losses (never materialise [T, V] logits)"},
  {"memory", "loss_chunk_size", Kind::Int, all("0"), ALL, nullptr, 0, 1e9, false, "rows per chunk of the fused loss (0: Liger's rule)"},
  {"memory", "activation_offloading", Kind::Bool, all("false"), ALL, nullptr, -INFINITY, INFINITY, false, "offload saved activations to host memory"},
  {"memory", "gradient_checkpointing", Kind::Bool, all("true"), ALL, nullptr, -INFINITY, INFINITY, false, "recompute activations in the backward pass (TRL's default: on)"},
  {"memory", "recompute", Kind::Enum, all("\"full\""), ALL, "full|selective", -INFINITY, INFINITY, false, "what gradient_checkpointing recomputes: \"full\" whole decoder layers from their inputs, products included (Hugging Face's), \"selective\" only cheap ops (norms, RoPE, activations, adds)"},
  {"memory", "budget", Kind::Size, all("\"auto\""), ALL, nullptr, -INFINITY, INFINITY, false, "device memory budget (\"auto\" or a size such as \"20GiB\")"},
  {"memory", "zero_stage", Kind::Int, all("0"), ALL, nullptr, 0, 3, false, "ZeRO sharding stage"},

  {"sft", "loss_type", Kind::Enum, {"\"nll\"", nullptr, nullptr, nullptr}, SFT, "nll|dft", -INFINITY, INFINITY, false, "SFT loss"},

  {"dpo", "beta", Kind::Float, {nullptr, "0.1", nullptr, nullptr}, DPO, nullptr, 0, INFINITY, true, "KL coefficient"},
  {"dpo", "loss_type", Kind::Enum, {nullptr, "\"sigmoid\"", nullptr, nullptr}, DPO, "sigmoid|hinge|ipo|robust|apo_zero|apo_down", -INFINITY, INFINITY, false, "DPO loss variant"},
  {"dpo", "label_smoothing", Kind::Float, {nullptr, "0.0", nullptr, nullptr}, DPO, nullptr, 0, 0.5, false, "conservative-DPO label smoothing"},
  {"dpo", "rpo_alpha", Kind::Float, none(), DPO, nullptr, 0, INFINITY, false, "weight of the chosen completions' NLL added to the loss (RPO)"},
  {"dpo", "ref_model", Kind::String, none(), DPO, nullptr, -INFINITY, INFINITY, false, "Hugging Face directory of the reference model (default: a frozen copy of the initial policy)"},
  {"dpo", "precompute_ref_log_probs", Kind::Bool, {nullptr, "false", nullptr, nullptr}, DPO, nullptr, -INFINITY, INFINITY, false, "compute the reference log-probabilities once before training; the step then holds no reference weights"},

  {"kto", "beta", Kind::Float, {nullptr, nullptr, "0.1", nullptr}, KTO, nullptr, 0, INFINITY, true, "KL coefficient"},
  {"kto", "loss_type", Kind::Enum, {nullptr, nullptr, "\"kto\"", nullptr}, KTO, "kto|apo_zero_unpaired", -INFINITY, INFINITY, false, "KTO loss variant"},
  {"kto", "ref_model", Kind::String, none(), KTO, nullptr, -INFINITY, INFINITY, false, "Hugging Face directory of the reference model (default: a frozen copy of the initial policy)"},
  {"kto", "precompute_ref_log_probs", Kind::Bool, {nullptr, nullptr, "false", nullptr}, KTO, nullptr, -INFINITY, INFINITY, false, "compute the reference log-probabilities once before training; the step then holds no reference weights"},
  {"kto", "desirable_weight", Kind::Float, {nullptr, nullptr, "1.0", nullptr}, KTO, nullptr, 0, INFINITY, false, "weight of desirable examples"},
  {"kto", "undesirable_weight", Kind::Float, {nullptr, nullptr, "1.0", nullptr}, KTO, nullptr, 0, INFINITY, false, "weight of undesirable examples"},

  {"grpo", "ds3_gather_for_generation", Kind::Bool, {nullptr, nullptr, nullptr, "true"}, GRPO, nullptr, -INFINITY, INFINITY, false, "under ZeRO-3: gather the whole model once per generation (false: layer by layer at every decoding step)"},
  {"grpo", "num_generations", Kind::Int, {nullptr, nullptr, nullptr, "8"}, GRPO, nullptr, 2, 1 << 16, false, "completions per prompt"},
  {"grpo", "temperature", Kind::Float, {nullptr, nullptr, nullptr, "1.0"}, GRPO, nullptr, 0, INFINITY, true, "sampling temperature"},
  {"grpo", "top_p", Kind::Float, {nullptr, nullptr, nullptr, "1.0"}, GRPO, nullptr, 0, 1, true, "nucleus sampling"},
  {"grpo", "epsilon", Kind::Float, {nullptr, nullptr, nullptr, "0.2"}, GRPO, nullptr, 0, 1, false, "lower clipping epsilon"},
  {"grpo", "epsilon_high", Kind::Float, none(), GRPO, nullptr, 0, INFINITY, false, "upper clipping epsilon (default: epsilon)"},
  {"grpo", "beta", Kind::Float, {nullptr, nullptr, nullptr, "0.0"}, GRPO, nullptr, 0, INFINITY, false, "KL coefficient (0: no reference model)"},
  {"grpo", "loss_type", Kind::Enum, {nullptr, nullptr, nullptr, "\"dapo\""}, GRPO, "grpo|bnpo|dr_grpo|dapo", -INFINITY, INFINITY, false, "loss normalisation"},
  {"grpo", "importance_sampling_level", Kind::Enum, {nullptr, nullptr, nullptr, "\"token\""}, GRPO, "token|sequence", -INFINITY, INFINITY, false, "one importance ratio per token, or per sequence (GSPO)"},
  {"grpo", "num_iterations", Kind::Int, {nullptr, nullptr, nullptr, "1"}, GRPO, nullptr, 1, 1e6, false, "optimizer steps on each generation batch (the old log-probabilities kept)"},
  {"grpo", "top_k", Kind::Int, {nullptr, nullptr, nullptr, "0"}, GRPO, nullptr, 0, 1 << 24, false, "sample among the k most likely tokens (0: all)"},
  {"grpo", "min_p", Kind::Float, {nullptr, nullptr, nullptr, "0.0"}, GRPO, nullptr, 0, 1, false, "drop tokens below min_p x the most likely one's probability (0: off)"},
  {"grpo", "repetition_penalty", Kind::Float, {nullptr, nullptr, nullptr, "1.0"}, GRPO, nullptr, 0, INFINITY, true, "transformers' repetition penalty (1: off)"},
  {"grpo", "reward_funcs", Kind::Strings, none(), GRPO, nullptr, -INFINITY, INFINITY, false, "rewards: \"accuracy\", \"format\", \"length\", \"python:FILE.py:FUNCTION\" or \"command:PROGRAM\" (required)"},
  {"grpo", "reward_weights", Kind::Floats, none(), GRPO, nullptr, -INFINITY, INFINITY, false, "one weight per reward function (default: 1 each)"},
  {"grpo", "format_pattern", Kind::String, none(), GRPO, nullptr, -INFINITY, INFINITY, false, "the regular expression (ECMAScript) the \"format\" reward asks a whole completion to match"},
  {"grpo", "reward_timeout", Kind::Float, {nullptr, nullptr, nullptr, "60.0"}, GRPO, nullptr, 0, INFINITY, true, "seconds a Python or command reward may take per batch"},
  {"grpo", "scale_rewards", Kind::Enum, {nullptr, nullptr, nullptr, "\"group\""}, GRPO, "group|batch|none", -INFINITY, INFINITY, false, "advantages divided by the group's or the batch's reward std, or not scaled"},
  {"grpo", "mask_truncated_completions", Kind::Bool, {nullptr, nullptr, nullptr, "false"}, GRPO, nullptr, -INFINITY, INFINITY, false, "leave completions that reached max_completion_length without EOS out of the loss"},

  {"peft", "r", Kind::Int, all("8"), ALL, nullptr, 1, 1 << 16, false, "LoRA rank"},
  {"peft", "lora_alpha", Kind::Float, all("8.0"), ALL, nullptr, 0, INFINITY, true, "LoRA scaling numerator: the update is lora_alpha / r x B A x"},
  {"peft", "lora_dropout", Kind::Float, all("0.0"), ALL, nullptr, 0, 1, false, "dropout on the adapters' input in the training step (0 with [train] disable_dropout)", true},
  {"peft", "target_modules", Kind::Strings, none(), ALL, nullptr, -INFINITY, INFINITY, false, "module names (q_proj, v_proj, ...) or \"all-linear\" (default: PEFT's for the model: q_proj and v_proj, gpt2's c_attn)"},
  {"peft", "bias", Kind::Enum, all("\"none\""), ALL, "none|all|lora_only", -INFINITY, INFINITY, false, "which biases train (trlc: none, for now)"},
  {"peft", "use_rslora", Kind::Bool, all("false"), ALL, nullptr, -INFINITY, INFINITY, false, "scale by lora_alpha / sqrt(r) (rank-stabilised LoRA)"},
  {"peft", "init_lora_weights", Kind::Bool, all("true"), ALL, nullptr, -INFINITY, INFINITY, false, "true: A Kaiming-uniform, B zeros (the update starts at 0); false: both Kaiming-uniform"},
  {"peft", "modules_to_save", Kind::Strings, none(), ALL, nullptr, -INFINITY, INFINITY, false, "modules trained whole and saved with the adapters, PEFT's modules_to_save (embed_tokens, lm_head, norm, score; gpt2: wte, wpe, ln_f, score)"},
  {"peft", "adapter", Kind::String, none(), ALL, nullptr, -INFINITY, INFINITY, false, "a PEFT LoRA adapter directory to continue training (its r, lora_alpha, target_modules and use_rslora apply)"},

  {"output", "output_dir", Kind::String, none(), ALL, nullptr, -INFINITY, INFINITY, false, "where metrics and checkpoints go (default: runs/<recipe name>)"},
  {"output", "logging_steps", Kind::Int, all("10"), ALL, nullptr, 1, INFINITY, false, "log every N optimizer steps"},
  {"output", "save_strategy", Kind::Enum, all("\"steps\""), ALL, "no|steps|epoch", -INFINITY, INFINITY, false, "checkpoints every save_steps steps and at the end, at every epoch's end, or none (the final model is always saved)"},
  {"output", "save_steps", Kind::Int, all("500"), ALL, nullptr, 1, INFINITY, false, "checkpoint every N optimizer steps (save_strategy = \"steps\")"},
  {"output", "save_only_model", Kind::Bool, all("false"), ALL, nullptr, -INFINITY, INFINITY, false, "checkpoints hold the model only: no optimizer state, so they cannot be resumed"},
  {"output", "save_total_limit", Kind::Int, none(), ALL, nullptr, 1, INFINITY, false, "keep at most N checkpoints"},
};
// clang-format on

/// Another name for a key: `alias` in [section] means `canonical` in
/// [target] ("online": the online method's own table; DESIGN.md's [memory]
/// place of ds3_gather_for_generation, which TRL keeps in each online
/// method's config).
struct Alias {
  const char *section, *alias, *target, *canonical;
};
const Alias kAliases[] = {
    {"memory", "use_liger_loss", "memory", "use_liger_kernel"},
    {"memory", "ds3_gather_for_generation", "online", "ds3_gather_for_generation"},
};

const char *const kSections[] = {"model", "data",       "train", "memory", "sft",
                                 "dpo",   "kto",        "grpo",  "rloo",   "online_dpo",
                                 "ppo",   "reward",     "peft",   "output"};
const char *const kMethodSections[] = {"sft",        "dpo", "kto",   "grpo",
                                       "rloo", "online_dpo", "ppo", "reward"};
constexpr unsigned kMethods = 8;

unsigned maskOf(Method m) { return 1u << static_cast<unsigned>(m); }

/// `f` on each entry of a Strings or Floats value: its one value, or each
/// of its list.
template <typename F> void eachEntry(const toml::node &n, F f) {
  if (const toml::array *list = n.as_array())
    for (const toml::node &e : *list)
      f(e);
  else
    f(n);
}

/// The labels a config.json declares (num_labels, else id2label's size);
/// -1 when it declares none.
int64_t labelCount(const fs::path &file) {
  std::ifstream in(file);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  int64_t labels = -1;
  if (j.is_object() && j.contains("id2label") && j["id2label"].is_object())
    labels = static_cast<int64_t>(j["id2label"].size());
  if (j.is_object() && j.contains("num_labels") && j["num_labels"].is_number_integer())
    labels = j["num_labels"].get<int64_t>();
  return labels;
}

/// Whether config.json's architectures name a *ForSequenceClassification.
bool isSequenceClassifier(const fs::path &file) {
  std::ifstream in(file);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains("architectures") || !j["architectures"].is_array())
    return false;
  for (const nlohmann::json &a : j["architectures"])
    if (a.is_string() && a.get<std::string>().find("ForSequenceClassification") != std::string::npos)
      return true;
  return false;
}

/// The whole schema: kSchema, then the tables of RLOO, online DPO and PPO,
/// each GRPO's keys its TRL config has (with its defaults) and its own.
const std::vector<KeySpec> &schema() {
  static const std::vector<KeySpec> rows = [] {
    std::vector<KeySpec> out(std::begin(kSchema), std::end(kSchema));
    // GRPO's keys that another online method's table shares, each with
    // that method's default (nullptr: GRPO's).
    auto copyGrpoKeys = [&](const char *section, Method method, unsigned mask,
                            const std::map<std::string, const char *> &keys) {
      for (const KeySpec &g : kSchema) {
        auto it = keys.find(g.key);
        if (std::string_view(g.section) != "grpo" || it == keys.end())
          continue;
        KeySpec r = g;
        r.section = section;
        r.methods = mask;
        r.defaults = none();
        r.defaults[static_cast<unsigned>(method)] =
            it->second ? it->second : g.defaults[static_cast<unsigned>(Method::GRPO)];
        if (method == Method::RLOO && std::string_view(g.key) == "beta")
          r.help = "KL coefficient: beta x the completion's KL to the reference is taken off "
                   "its reward";
        out.push_back(r);
      }
    };
    copyGrpoKeys("rloo", Method::RLOO, RLOO,
                 {{"ds3_gather_for_generation", nullptr}, {"num_generations", "2"},
                  {"temperature", nullptr}, {"top_p", nullptr}, {"top_k", nullptr},
                  {"min_p", nullptr}, {"repetition_penalty", nullptr}, {"epsilon", nullptr},
                  {"epsilon_high", nullptr}, {"beta", "0.05"}, {"num_iterations", nullptr},
                  {"reward_funcs", nullptr}, {"reward_weights", nullptr},
                  {"format_pattern", nullptr}, {"reward_timeout", nullptr},
                  {"mask_truncated_completions", nullptr}});
    KeySpec norm{"rloo", "normalize_advantages", Kind::Bool, none(), RLOO, nullptr,
                 -INFINITY, INFINITY, false,
                 "advantages standardised over the whole batch (mean 0, std 1)"};
    norm.defaults[static_cast<unsigned>(Method::RLOO)] = "false";
    out.push_back(norm);
    // Online DPO: GRPO's sampling and reward keys with OnlineDPOConfig's
    // defaults, and its own.
    copyGrpoKeys("online_dpo", Method::OnlineDPO, ONLINE_DPO,
                 {{"ds3_gather_for_generation", nullptr}, {"temperature", "0.9"},
                  {"top_p", nullptr}, {"top_k", nullptr}, {"min_p", nullptr},
                  {"repetition_penalty", nullptr}, {"reward_funcs", nullptr},
                  {"reward_weights", nullptr}, {"format_pattern", nullptr},
                  {"reward_timeout", nullptr}});
    const unsigned od = static_cast<unsigned>(Method::OnlineDPO);
    KeySpec beta{"online_dpo", "beta", Kind::Floats, none(), ONLINE_DPO, nullptr, 0, INFINITY,
                 true, "KL coefficient, or a list of one per epoch (the last for the epochs "
                       "after it)"};
    beta.defaults[od] = "0.1";
    out.push_back(beta);
    KeySpec loss{"online_dpo", "loss_type", Kind::Enum, none(), ONLINE_DPO, "sigmoid|ipo",
                 -INFINITY, INFINITY, false, "DPO loss over the ranked pair"};
    loss.defaults[od] = "\"sigmoid\"";
    out.push_back(loss);
    out.push_back({"online_dpo", "missing_eos_penalty", Kind::Float, none(), ONLINE_DPO, nullptr,
                   0, INFINITY, false,
                   "subtracted from the score of a completion that ends without EOS"});
    // PPO: GRPO's temperature and reward keys with PPOConfig's defaults,
    // and its own.
    copyGrpoKeys("ppo", Method::PPO, PPO,
                 {{"ds3_gather_for_generation", nullptr}, {"temperature", "0.7"},
                  {"reward_funcs", nullptr}, {"reward_weights", nullptr},
                  {"format_pattern", nullptr}, {"reward_timeout", nullptr}});
    const unsigned pp = static_cast<unsigned>(Method::PPO);
    auto ppoKey = [&](const char *key, Kind kind, const char *def, double lo, double hi,
                      bool loOpen, const char *help, const char *choices = nullptr) {
      KeySpec k{"ppo", key, kind, none(), PPO, choices, lo, hi, loOpen, help};
      k.defaults[pp] = def;
      out.push_back(k);
    };
    ppoKey("num_ppo_epochs", Kind::Int, "4", 1, 1e6, false,
           "optimizer passes over each rollout batch");
    ppoKey("num_mini_batches", Kind::Int, "1", 1, 1, false,
           "mini-batches per rollout batch (trlc: 1, one optimizer step per pass)");
    ppoKey("whiten_rewards", Kind::Bool, "false", -INFINITY, INFINITY, false,
           "whiten the per-token rewards before GAE");
    ppoKey("kl_coef", Kind::Float, "0.05", 0, INFINITY, false,
           "coefficient of the per-token KL penalty in the rewards");
    ppoKey("kl_estimator", Kind::Enum, "\"k1\"", -INFINITY, INFINITY, false,
           "KL estimator of the penalty: k1 (log ratio) or k3", "k1|k3");
    ppoKey("cliprange", Kind::Float, "0.2", 0, INFINITY, false, "policy ratio clipping");
    ppoKey("vf_coef", Kind::Float, "0.1", 0, INFINITY, false, "weight of the value loss");
    ppoKey("cliprange_value", Kind::Float, "0.2", 0, INFINITY, false, "value clipping");
    ppoKey("gamma", Kind::Float, "1.0", 0, 1, false, "discount factor");
    ppoKey("lam", Kind::Float, "0.95", 0, 1, false, "GAE lambda");
    ppoKey("missing_eos_penalty", Kind::Float, nullptr, 0, INFINITY, false,
           "subtracted from the score of a completion that ends without EOS");
    ppoKey("value_model", Kind::String, nullptr, -INFINITY, INFINITY, false,
           "value model directory (a sequence-classification checkpoint; default: the first "
           "reward model, else the policy's model with a new score head)");
    out.push_back({"online_dpo", "judge", Kind::String, none(), ONLINE_DPO, nullptr, -INFINITY,
                   INFINITY, false,
                   "a pairwise judge ranking each pair instead of reward_funcs: "
                   "\"python:FILE.py:FUNCTION\" (def judge(prompts, completions) -> 0 or 1 per "
                   "pair) or \"command:PROGRAM\""});
    return out;
  }();
  return rows;
}

const KeySpec *findSpec(std::string_view section, std::string_view key) {
  for (const KeySpec &s : schema())
    if (section == s.section && key == s.key)
      return &s;
  return nullptr;
}

std::string methodList(unsigned mask) {
  std::string out;
  for (unsigned i = 0; i < kMethods; ++i)
    if (mask & (1u << i)) {
      if (!out.empty())
        out += ", ";
      out += methodName(static_cast<Method>(i));
    }
  return out;
}

std::string displayKey(std::string_view section, std::string_view key) {
  if (section.empty())
    return std::string(key);
  return "[" + std::string(section) + "] " + std::string(key);
}

std::string formatNumber(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    return std::to_string(static_cast<int64_t>(v));
  std::ostringstream os;
  os << v;
  return os.str();
}

std::vector<std::string> splitChoices(const char *choices) {
  std::vector<std::string> out;
  std::string cur;
  for (const char *p = choices; *p; ++p) {
    if (*p == '|') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += *p;
    }
  }
  out.push_back(cur);
  return out;
}

std::string quotedChoices(const std::vector<std::string> &choices) {
  std::string out;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (i)
      out += i + 1 == choices.size() ? " or " : ", ";
    out += "\"" + choices[i] + "\"";
  }
  return out;
}

/// Parses "auto" or a size such as "20GiB", "512MB", "1000000" into bytes.
std::optional<std::optional<int64_t>> parseSize(const std::string &text) {
  if (text == "auto")
    return std::optional<int64_t>{};
  size_t pos = 0;
  while (pos < text.size() && (isdigit(text[pos]) || text[pos] == '.'))
    ++pos;
  if (pos == 0)
    return std::nullopt;
  double number;
  try {
    number = std::stod(text.substr(0, pos));
  } catch (...) {
    return std::nullopt;
  }
  std::string unit = text.substr(pos);
  while (!unit.empty() && unit.front() == ' ')
    unit.erase(unit.begin());
  static const std::pair<const char *, double> units[] = {
      {"", 1},           {"B", 1},
      {"KB", 1e3},       {"MB", 1e6},
      {"GB", 1e9},       {"TB", 1e12},
      {"KiB", 1024.0},   {"MiB", 1048576.0},
      {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
  for (auto [name, scale] : units)
    if (unit == name)
      return std::optional<int64_t>(static_cast<int64_t>(number * scale));
  return std::nullopt;
}

/// Checks one value against its spec.
std::optional<Error> checkValue(const Diag &diag, const KeySpec &spec,
                                const toml::node &v) {
  std::string name = displayKey(spec.section, spec.key);
  auto wrongType = [&](const char *expected) {
    return diag.at(v, name + " must be " + expected + ", got " + tomlTypeName(v) +
                          " (" + tomlValueText(v) + ")");
  };
  switch (spec.kind) {
  case Kind::String:
    if (!v.is_string())
      return wrongType("a string");
    if (v.as_string()->get().empty())
      return diag.at(v, name + " must not be empty");
    return std::nullopt;
  case Kind::Bool:
    if (!v.is_boolean())
      return wrongType("true or false");
    return std::nullopt;
  case Kind::Enum: {
    if (!v.is_string())
      return wrongType("a string");
    auto choices = splitChoices(spec.choices);
    const std::string &s = v.as_string()->get();
    for (const std::string &c : choices)
      if (s == c)
        return std::nullopt;
    std::string msg = name + " must be one of " + quotedChoices(choices) +
                      ", got \"" + s + "\"";
    if (auto best = closestMatch(s, choices))
      msg += "; did you mean \"" + *best + "\"?";
    return diag.at(v, msg);
  }
  case Kind::Size: {
    if (!v.is_string())
      return wrongType("a string such as \"auto\" or \"20GiB\"");
    auto parsed = parseSize(v.as_string()->get());
    if (!parsed)
      return diag.at(v, name + " must be \"auto\" or a size such as \"20GiB\", "
                               "\"512MiB\" or \"8GB\", got \"" +
                            v.as_string()->get() + "\"");
    if (*parsed && **parsed <= 0)
      return diag.at(v, name + " must be positive");
    return std::nullopt;
  }
  case Kind::Paths: {
    if (v.is_string()) {
      if (v.as_string()->get().empty())
        return diag.at(v, name + " must not be empty");
      return std::nullopt;
    }
    if (!v.is_array())
      return wrongType("a path or a list of paths");
    const toml::array &arr = *v.as_array();
    if (arr.empty())
      return diag.at(v, name + " must list at least one file");
    for (const toml::node &e : arr)
      if (!e.is_string() || e.as_string()->get().empty())
        return diag.at(e, name + " entries must be non-empty strings, got " +
                              tomlTypeName(e));
    return std::nullopt;
  }
  case Kind::Strings:
  case Kind::Floats: {
    bool strings = spec.kind == Kind::Strings;
    if (strings && v.is_string())
      return v.as_string()->get().empty()
                 ? std::optional<Error>(diag.at(v, name + " must not be empty"))
                 : std::nullopt;
    // Numbers: one, or a list of them, each in the key's range.
    KeySpec each = spec;
    each.kind = Kind::Float;
    if (!strings && v.is_number())
      return checkValue(diag, each, v);
    if (!v.is_array())
      return wrongType(strings ? "a string or a list of strings"
                               : "a number or a list of numbers");
    const toml::array &arr = *v.as_array();
    if (arr.empty())
      return diag.at(v, name + " must list at least one entry");
    for (const toml::node &e : arr) {
      if (strings && (!e.is_string() || e.as_string()->get().empty()))
        return diag.at(e, name + " entries must be non-empty strings, got " + tomlTypeName(e));
      if (!strings && (!e.is_number() || !std::isfinite(e.value_or(0.0))))
        return diag.at(e, name + " entries must be finite numbers, got " + tomlTypeName(e));
      if (!strings)
        if (auto err = checkValue(diag, each, e))
          return err;
    }
    return std::nullopt;
  }
  case Kind::Int:
  case Kind::Float: {
    double number;
    if (spec.kind == Kind::Int) {
      if (!v.is_integer())
        return wrongType("an integer");
      number = static_cast<double>(v.as_integer()->get());
    } else {
      if (!v.is_number())
        return wrongType("a number");
      number = v.is_integer() ? static_cast<double>(v.as_integer()->get())
                              : v.as_floating_point()->get();
      if (!std::isfinite(number))
        return diag.at(v, name + " must be finite, got " + tomlValueText(v));
    }
    bool belowLo = spec.loOpen ? number <= spec.lo : number < spec.lo;
    bool aboveHi = spec.hiOpen ? number >= spec.hi : number > spec.hi;
    if (belowLo || aboveHi) {
      std::string range;
      if (std::isinf(spec.hi))
        range = std::string(spec.loOpen ? "> " : ">= ") + formatNumber(spec.lo);
      else
        range = "in " + std::string(spec.loOpen ? "(" : "[") +
                formatNumber(spec.lo) + ", " + formatNumber(spec.hi) + (spec.hiOpen ? ")" : "]");
      return diag.at(v, name + " must be " + range + ", got " + tomlValueText(v));
    }
    return std::nullopt;
  }
  }
  return std::nullopt;
}

/// Splits "a.b.c=value" of --set into the dotted key and the value text.
std::optional<std::pair<std::vector<std::string>, std::string>>
splitOverride(const std::string &arg) {
  size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0)
    return std::nullopt;
  std::vector<std::string> parts;
  std::string key = arg.substr(0, eq), cur;
  for (char c : key) {
    if (c == '.') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  for (const std::string &p : parts)
    if (p.empty())
      return std::nullopt;
  return std::make_pair(parts, arg.substr(eq + 1));
}

/// A --set value is TOML when it parses as TOML (numbers, booleans, quoted
/// strings, arrays), and a bare string otherwise.
toml::table overrideValue(const std::string &text) {
  toml::table holder;
  try {
    toml::table parsed = toml::parse("v = " + text);
    if (parsed.contains("v")) {
      holder.insert("v", *parsed.get("v"));
      return holder;
    }
  } catch (const toml::parse_error &) {
  }
  holder.insert("v", text);
  return holder;
}

class Resolver {
public:
  Resolver(const std::string &path, Diag &diag) : path(path), diag(diag) {}

  Expected<Recipe> run(toml::table &root,
                       const std::vector<std::string> &overrides);

private:
  std::optional<Error> applyOverrides(toml::table &root,
                                      const std::vector<std::string> &args);
  std::optional<Error> checkStructure(toml::table &root);
  std::optional<Error> checkMethodApplicability(toml::table &root);
  std::optional<Error> checkContradictions(toml::table &root);
  void fill(toml::table &root, Recipe &r);
  std::optional<Error> resolveModel(toml::table &root, Recipe &r);
  /// The sequence bound against the model's positions: an error past a
  /// learned position table (gpt2), a warning past a RoPE model's
  /// max_position_embeddings.
  std::optional<Error> checkPositions(const toml::table &root, Recipe &r);
  std::optional<Error> checkReference(const toml::table &root, const Recipe &r);
  /// GRPO's reward functions: known kinds, a weight each, the format
  /// reward's pattern, groups within a micro-batch.
  std::optional<Error> checkRewards(const toml::table &root, Recipe &r);
  std::optional<Error> checkRewardModel(const toml::node &node, const std::string &dir, Recipe &r);
  std::optional<Error> resolveValueModel(const toml::table &root, Recipe &r);
  /// [peft]: what this slice of LoRA supports, and target_modules resolved
  /// against the model's linear layers.
  std::optional<Error> checkPeft(const toml::table &root, Recipe &r);
  /// [peft] adapter: its adapter_config.json's settings, which the recipe
  /// may repeat but not contradict.
  std::optional<Error> readAdapterConfig(const toml::table &root, const toml::node &node,
                                         Recipe &r);
  std::optional<Error> resolvePython(const toml::node &node, std::string &f, const char *what);
  std::string printResolved(const toml::table &root, const Recipe &r);

  const toml::node *get(const toml::table &root, const char *section,
                        const char *key) const {
    if (!*section)
      return root.get(key);
    const toml::table *t = root[section].as_table();
    return t ? t->get(key) : nullptr;
  }

  const std::string &path;
  Diag &diag;
  Method method = Method::SFT;
};

std::optional<Error>
Resolver::applyOverrides(toml::table &root,
                         const std::vector<std::string> &args) {
  for (const std::string &arg : args) {
    auto split = splitOverride(arg);
    if (!split)
      return Error{"--set " + arg +
                   ": error: expected section.key=value, for example "
                   "--set train.learning_rate=1e-4"};
    auto &[parts, text] = *split;
    bool modelConfig =
        parts.size() == 3 && parts[0] == "model" && parts[1] == "config";
    bool topLevel = parts.size() == 1;
    if (!modelConfig && !topLevel && parts.size() != 2)
      return Error{"--set " + arg +
                   ": error: expected section.key=value (or "
                   "model.config.key=value)"};
    if (!modelConfig) {
      std::string section = topLevel ? "" : parts[0];
      std::string key = parts.back();
      bool known = findSpec(section, key) != nullptr;
      for (const Alias &a : kAliases)
        known |= section == a.section && key == a.alias;
      if (!known) {
        std::vector<std::string> candidates;
        for (const KeySpec &s : schema())
          candidates.push_back(*s.section ? std::string(s.section) + "." + s.key
                                          : std::string(s.key));
        std::string dotted = topLevel ? key : section + "." + key;
        std::string msg =
            "--set " + arg + ": error: unknown key '" + dotted + "'";
        if (auto best = closestMatch(dotted, candidates))
          msg += "; did you mean '" + *best + "'?";
        return Error{msg};
      }
    }
    toml::table holder = overrideValue(text);
    toml::table *target = &root;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      toml::node *child = target->get(parts[i]);
      if (!child) {
        target->insert(parts[i], toml::table{});
        child = target->get(parts[i]);
      }
      if (!child->is_table())
        return Error{"--set " + arg + ": error: '" + parts[i] +
                     "' is not a table in the recipe"};
      target = child->as_table();
    }
    target->insert_or_assign(parts.back(), *holder.get("v"));
    diag.noteOverride(target->get(parts.back()), arg);
  }
  return std::nullopt;
}

std::optional<Error> Resolver::checkStructure(toml::table &root) {
  std::vector<std::string> sectionNames(std::begin(kSections),
                                        std::end(kSections));
  std::vector<std::string> topKeys = sectionNames;
  topKeys.push_back("method");
  for (auto &&[k, v] : root) {
    std::string key(k.str());
    if (key == "method")
      continue;
    bool isSection = false;
    for (const char *s : kSections)
      isSection |= key == s;
    if (!isSection) {
      // A known key at top level most likely lost its section header.
      std::string msg = "unknown top-level key '" + key + "'";
      const KeySpec *elsewhere = nullptr;
      for (const KeySpec &s : schema())
        if (key == s.key && *s.section)
          elsewhere = &s;
      if (elsewhere)
        msg += "; '" + key + "' belongs in [" + elsewhere->section + "]";
      else if (auto best = closestMatch(key, topKeys))
        msg += "; did you mean '" + *best + "'?";
      return diag.at(k.source(), msg);
    }
    if (!v.is_table())
      return diag.at(v, "'" + key + "' must be a table ([" + key +
                            "]), got " + tomlTypeName(v));
    toml::table &section = *v.as_table();
    std::vector<std::string> keys;
    for (const KeySpec &s : schema())
      if (key == s.section)
        keys.push_back(s.key);
    for (auto &&[sk, sv] : section) {
      std::string name(sk.str());
      if (key == "model" && name == "config")
        continue;  // validated against the model family in resolveModel
      if (findSpec(key, name))
        continue;
      bool alias = false;
      for (const Alias &a : kAliases)
        alias |= key == a.section && name == a.alias;
      if (alias)
        continue;
      std::string msg =
          "unknown key '" + name + "' in [" + key + "]";
      const KeySpec *elsewhere = nullptr;
      for (const KeySpec &s : schema())
        if (name == s.key && key != s.section)
          elsewhere = &s;
      if (auto best = closestMatch(name, keys))
        msg += "; did you mean '" + *best + "'?";
      else if (elsewhere)
        msg += "; '" + name + "' belongs in " +
               (*elsewhere->section ? "[" + std::string(elsewhere->section) + "]"
                                    : std::string("the top level"));
      return diag.at(sk.source(), msg);
    }
  }
  // Aliases: rename to the canonical key, refusing both at once.
  for (const Alias &a : kAliases) {
    toml::table *section = root[a.section].as_table();
    if (!section || !section->contains(a.alias))
      continue;
    toml::node *node = section->get(a.alias);
    std::string method = root["method"].value_or(std::string());
    std::string targetName = a.target;
    if (targetName == "online") {
      if (method != "grpo" && method != "rloo" && method != "online_dpo" && method != "ppo")
        return diag.at(*node, displayKey(a.section, a.alias) +
                                  " applies to the online methods (grpo, rloo, online_dpo, "
                                  "ppo) only; remove it");
      targetName = method;
    }
    toml::table *target = root[targetName].as_table();
    if (target && target->contains(a.canonical))
      return diag.at(*node, "set either " + displayKey(a.section, a.alias) + " or " +
                                displayKey(targetName, a.canonical) +
                                " (an alias of it), not both");
    if (!node->is_boolean())
      return diag.at(*node, displayKey(a.section, a.alias) +
                                " must be true or false, got " +
                                tomlTypeName(*node) + " (" + tomlValueText(*node) + ")");
    if (!target) {
      if (root.contains(targetName))
        continue;  // not a table: the section check names it
      root.insert(targetName, toml::table{});
      target = root[targetName].as_table();
    }
    target->insert(a.canonical, *node->as_boolean());
    section->erase(a.alias);
  }
  // Types and ranges of everything present.
  for (const KeySpec &spec : schema())
    if (const toml::node *v = get(root, spec.section, spec.key))
      if (auto err = checkValue(diag, spec, *v))
        return err;
  return std::nullopt;
}

std::optional<Error> Resolver::checkMethodApplicability(toml::table &root) {
  const toml::node *m = root.get("method");
  if (!m)
    return diag.atFile("missing required key 'method' (one of \"sft\", "
                       "\"dpo\", \"kto\", \"grpo\", \"rloo\", \"online_dpo\", \"ppo\", \"reward\"); add for "
                       "example "
                       "method = \"sft\" at the top of the recipe");
  std::string name = m->as_string()->get();
  for (unsigned i = 0; i < kMethods; ++i)
    if (name == methodName(static_cast<Method>(i)))
      method = static_cast<Method>(i);
  for (const char *table : kMethodSections) {
    const toml::node *t = root.get(table);
    if (t && name != table)
      return diag.at(*t, std::string("table [") + table +
                             "] does not apply to method = \"" + name +
                             "\"; remove it or set method = \"" + table + "\"");
  }
  for (const KeySpec &spec : schema())
    if (const toml::node *v = get(root, spec.section, spec.key))
      if (!(spec.methods & maskOf(method)))
        return diag.at(*v, displayKey(spec.section, spec.key) +
                               " applies to method " + methodList(spec.methods) +
                               " only (this recipe has method = \"" + name +
                               "\")");
  return std::nullopt;
}

std::optional<Error> Resolver::checkContradictions(toml::table &root) {
  auto present = [&](const char *s, const char *k) { return get(root, s, k); };
  auto boolOf = [&](const char *s, const char *k, bool def) {
    const toml::node *n = present(s, k);
    return n ? n->as_boolean()->get() : def;
  };
  auto intOf = [&](const char *s, const char *k) -> std::optional<int64_t> {
    const toml::node *n = present(s, k);
    if (!n)
      return std::nullopt;
    return n->as_integer()->get();
  };
  // The value in force: the recipe's, or the schema's default for the method.
  auto intOrDefault = [&](const char *s, const char *k) -> int64_t {
    if (auto v = intOf(s, k))
      return *v;
    const char *def = findSpec(s, k)->defaults[static_cast<unsigned>(method)];
    return std::stoll(def);
  };

  if (const toml::node *ps = present("data", "packing_strategy"))
    if (!boolOf("data", "packing", false))
      return diag.at(*ps, "[data] packing_strategy has no effect without "
                          "packing; add packing = true or remove it");
  if (const toml::node *cs = present("memory", "loss_chunk_size"))
    if (cs->is_integer() && cs->as_integer()->get() != 0 &&
        !boolOf("memory", "use_liger_kernel", false))
      return diag.at(*cs, "[memory] loss_chunk_size has no effect without the "
                          "fused loss; add use_liger_kernel = true or remove it");
  if (const toml::node *ws = present("train", "warmup_steps"))
    if (const toml::node *wr = present("train", "warmup_ratio"))
      if (ws->as_integer()->get() > 0 &&
          (wr->is_integer() ? wr->as_integer()->get() != 0
                            : wr->as_floating_point()->get() > 0))
        return diag.at(*ws, "[train] warmup_steps and warmup_ratio are both "
                            "set; keep one of them");
  if (boolOf("data", "padding_free", false) && boolOf("data", "packing", false))
    if (const toml::node *s = present("data", "packing_strategy"))
      if (s->as_string()->get() == "wrapped")
        return diag.at(*s, "wrapped packing ignores document boundaries and "
                           "cannot be padding-free; use \"bfd\" or "
                           "\"bfd_split\", or set padding_free = false");
  auto maxLen = intOf("data", "max_length");
  auto maxPrompt = intOf("data", "max_prompt_length");
  if (maxLen && maxPrompt && *maxPrompt >= *maxLen)
    return diag.at(*present("data", "max_prompt_length"),
                   "[data] max_prompt_length (" + std::to_string(*maxPrompt) +
                       ") must be smaller than max_length (" +
                       std::to_string(*maxLen) +
                       "), or every example would be dropped");
  if (const toml::node *seed = present("model", "init_seed"))
    if (present("model", "path"))
      return diag.at(*seed, "[model] init_seed applies to models trained from "
                            "scratch ([model.config]); a model loaded from "
                            "[model] path keeps its weights");
  auto strOf = [&](const char *s, const char *k, const char *def) {
    const toml::node *n = present(s, k);
    return n ? n->as_string()->get() : std::string(def);
  };
  auto floatOf = [&](const char *s, const char *k) -> std::optional<double> {
    const toml::node *n = present(s, k);
    if (!n)
      return std::nullopt;
    return n->is_integer() ? static_cast<double>(n->as_integer()->get())
                           : n->as_floating_point()->get();
  };
  if (method == Method::DPO) {
    std::string type = strOf("dpo", "loss_type", "sigmoid");
    if (auto ls = floatOf("dpo", "label_smoothing")) {
      const toml::node *at = present("dpo", "label_smoothing");
      if (*ls > 0 && type != "sigmoid" && type != "robust")
        return diag.at(*at, "[dpo] label_smoothing applies to loss_type \"sigmoid\" and "
                            "\"robust\"; \"" + type + "\" ignores it, so remove it");
      if (type == "robust" && *ls >= 0.5)
        return diag.at(*at, "[dpo] label_smoothing must be below 0.5 for loss_type "
                            "\"robust\" (it divides by 1 - 2 label_smoothing)");
    }
    if (auto alpha = floatOf("dpo", "rpo_alpha"))
      if (*alpha > 0 && type == "ipo")
        return diag.at(*present("dpo", "rpo_alpha"),
                       "[dpo] rpo_alpha with loss_type \"ipo\" is not supported yet "
                       "(IPO's mean log-probabilities and RPO's token NLL need two "
                       "reductions); use another loss_type or remove rpo_alpha");
  }
  if (method == Method::Reward) {
    // A reward model scores whole sequences: no generation, no LM head.
    if (const toml::node *ev = present("data", "eval"))
      return diag.at(*ev, "[data] eval is not supported for method = \"reward\" yet: trlc "
                          "evaluates by greedy generation, which a reward model cannot do; "
                          "remove it");
    if (boolOf("memory", "use_liger_kernel", false))
      return diag.at(*present("memory", "use_liger_kernel"),
                     "[memory] use_liger_kernel fuses the LM head with the cross-entropy "
                     "loss; a reward model has a one-score head instead, so remove it");
  }
  if (method == Method::KTO && strOf("kto", "loss_type", "kto") == "kto" &&
      intOrDefault("train", "per_device_train_batch_size") < 2) {
    const toml::node *where = present("train", "per_device_train_batch_size");
    std::string msg = "KTO's KL estimate pairs each prompt with another example's "
                      "completion in the same micro-batch: per_device_train_batch_size "
                      "must be at least 2 (TRL requires the same)";
    return where ? diag.at(*where, msg) : diag.atFile(msg);
  }
  if (method == Method::GRPO || method == Method::RLOO) {
    const char *table = methodName(method);
    int64_t gens = intOrDefault(table, "num_generations");
    int64_t batch = intOrDefault("train", "per_device_train_batch_size");
    int64_t accum = intOrDefault("train", "gradient_accumulation_steps");
    if ((batch * accum) % gens != 0) {
      const toml::node *where = present(table, "num_generations");
      if (!where)
        where = present("train", "per_device_train_batch_size");
      std::string msg =
          "the generation batch (per_device_train_batch_size x "
          "gradient_accumulation_steps = " +
          std::to_string(batch * accum) +
          ") must be a multiple of [" + table + "] num_generations (" +
          std::to_string(gens) + ")";
      return where ? diag.at(*where, msg) : diag.atFile(msg);
    }
  }
  return std::nullopt;
}

/// Writes every default the recipe left out into `root`.
void fillDefaults(toml::table &root, Method method) {
  for (const KeySpec &spec : schema()) {
    if (!(spec.methods & maskOf(method)))
      continue;
    const char *def = spec.defaults[static_cast<unsigned>(method)];
    if (!def)
      continue;
    // A pretrained model has no random initialisation to seed, and a
    // packing strategy without packing would contradict itself.
    if (std::string_view(spec.key) == "init_seed" &&
        root["model"]["path"].is_string())
      continue;
    // [peft]'s defaults only when the recipe asks for LoRA.
    if (std::string_view(spec.section) == "peft" && !root.contains("peft"))
      continue;
    if (std::string_view(spec.key) == "packing_strategy" &&
        !root["data"]["packing"].value_or(false))
      continue;
    toml::table *section = &root;
    if (*spec.section) {
      if (!root.contains(spec.section))
        root.insert(spec.section, toml::table{});
      section = root[spec.section].as_table();
    }
    if (section->contains(spec.key))
      continue;
    toml::table holder = toml::parse(std::string("v = ") + def);
    section->insert(spec.key, *holder.get("v"));
  }
}

void Resolver::fill(toml::table &root, Recipe &r) {
  auto str = [&](const char *s, const char *k) -> std::optional<std::string> {
    if (const toml::node *n = get(root, s, k))
      return n->as_string()->get();
    return std::nullopt;
  };
  auto i64 = [&](const char *s, const char *k) -> std::optional<int64_t> {
    if (const toml::node *n = get(root, s, k))
      return n->as_integer()->get();
    return std::nullopt;
  };
  auto f64 = [&](const char *s, const char *k) -> std::optional<double> {
    if (const toml::node *n = get(root, s, k))
      return n->is_integer() ? static_cast<double>(n->as_integer()->get())
                             : n->as_floating_point()->get();
    return std::nullopt;
  };
  auto b = [&](const char *s, const char *k) -> std::optional<bool> {
    if (const toml::node *n = get(root, s, k))
      return n->as_boolean()->get();
    return std::nullopt;
  };

  r.method = method;
  r.model.path = str("model", "path");
  r.model.dtype = *str("model", "dtype");
  r.model.initSeed = *i64("model", "init_seed");
  r.model.tokenizer = str("model", "tokenizer");

  auto pathList = [&](const char *key, std::vector<std::string> &files,
                      std::string &where) {
    const toml::node *t = get(root, "data", key);
    if (!t)
      return;
    where = diag.where(*t);
    if (t->is_string())
      files.push_back(t->as_string()->get());
    else
      for (const toml::node &e : *t->as_array())
        files.push_back(e.as_string()->get());
  };
  pathList("train", r.data.train, r.data.trainWhere);
  pathList("eval", r.data.eval, r.data.evalWhere);
  r.data.format = *str("data", "format");
  r.data.datasetTextField = str("data", "dataset_text_field").value_or("text");
  r.data.maxLength = i64("data", "max_length");
  r.data.maxPromptLength = i64("data", "max_prompt_length");
  r.data.maxCompletionLength = i64("data", "max_completion_length");
  r.data.truncationMode = str("data", "truncation_mode").value_or("");
  r.data.packing = b("data", "packing").value_or(false);
  r.data.packingStrategy = str("data", "packing_strategy").value_or("bfd");
  r.data.paddingFree = b("data", "padding_free").value_or(false);
  r.data.completionOnlyLoss = b("data", "completion_only_loss");
  r.data.assistantOnlyLoss = b("data", "assistant_only_loss").value_or(false);
  r.data.chatTemplatePath = str("data", "chat_template_path");
  r.data.onBadRow = *str("data", "on_bad_row");

  r.train.learningRate = *f64("train", "learning_rate");
  r.train.lrSchedulerType = *str("train", "lr_scheduler_type");
  r.train.warmupRatio = *f64("train", "warmup_ratio");
  r.train.warmupSteps = *i64("train", "warmup_steps");
  r.train.perDeviceTrainBatchSize = *i64("train", "per_device_train_batch_size");
  r.train.gradientAccumulationSteps = *i64("train", "gradient_accumulation_steps");
  r.train.numTrainEpochs = *f64("train", "num_train_epochs");
  r.train.maxSteps = *i64("train", "max_steps");
  r.train.maxGradNorm = *f64("train", "max_grad_norm");
  r.train.weightDecay = *f64("train", "weight_decay");
  r.train.adamBeta1 = *f64("train", "adam_beta1");
  r.train.adamBeta2 = *f64("train", "adam_beta2");
  r.train.adamEpsilon = *f64("train", "adam_epsilon");
  r.train.seed = *i64("train", "seed");
  r.train.disableDropout = *b("train", "disable_dropout");

  r.memory.useLigerKernel = *b("memory", "use_liger_kernel");
  r.memory.lossChunkSize = *i64("memory", "loss_chunk_size");
  r.memory.activationOffloading = *b("memory", "activation_offloading");
  r.memory.gradientCheckpointing = *b("memory", "gradient_checkpointing");
  r.memory.recompute = *str("memory", "recompute");
  r.memory.budgetBytes = *parseSize(*str("memory", "budget"));
  r.memory.zeroStage = *i64("memory", "zero_stage");

  switch (method) {
  case Method::SFT:
    r.sft.lossType = *str("sft", "loss_type");
    break;
  case Method::DPO:
    r.dpo.beta = *f64("dpo", "beta");
    r.dpo.lossType = *str("dpo", "loss_type");
    r.dpo.labelSmoothing = *f64("dpo", "label_smoothing");
    r.dpo.rpoAlpha = f64("dpo", "rpo_alpha").value_or(0.0);
    r.reference.modelPath = str("dpo", "ref_model");
    r.reference.precompute = *b("dpo", "precompute_ref_log_probs");
    break;
  case Method::KTO:
    r.kto.beta = *f64("kto", "beta");
    r.kto.desirableWeight = *f64("kto", "desirable_weight");
    r.kto.undesirableWeight = *f64("kto", "undesirable_weight");
    r.kto.lossType = *str("kto", "loss_type");
    r.reference.modelPath = str("kto", "ref_model");
    r.reference.precompute = *b("kto", "precompute_ref_log_probs");
    break;
  case Method::Reward:
    break;
  case Method::GRPO:
  case Method::RLOO:
  case Method::OnlineDPO:
  case Method::PPO: {
    // RLOO, online DPO and PPO read the keys they share with GRPO from
    // their own table.
    const char *t = methodName(method);
    bool rloo = method == Method::RLOO, odpo = method == Method::OnlineDPO,
         ppo = method == Method::PPO;
    r.grpo.maxPromptLength = *r.data.maxPromptLength;
    r.grpo.maxCompletionLength = *r.data.maxCompletionLength;
    r.grpo.temperature = *f64(t, "temperature");
    if (ppo) {
      // One completion per prompt, sampled at the temperature alone.
      r.grpo.numGenerations = 1;
      r.grpo.beta = 0;
      r.grpo.lossType = "grpo";
      r.grpo.scaleRewards = "none";
      r.grpo.numIterations = *i64(t, "num_ppo_epochs");
      r.ppo.numPpoEpochs = r.grpo.numIterations;
      r.ppo.whitenRewards = *b(t, "whiten_rewards");
      r.ppo.klCoef = *f64(t, "kl_coef");
      r.ppo.klEstimator = *str(t, "kl_estimator");
      r.ppo.cliprange = *f64(t, "cliprange");
      r.ppo.vfCoef = *f64(t, "vf_coef");
      r.ppo.cliprangeValue = *f64(t, "cliprange_value");
      r.ppo.gamma = *f64(t, "gamma");
      r.ppo.lam = *f64(t, "lam");
      r.ppo.missingEosPenalty = f64(t, "missing_eos_penalty");
      r.ppo.valueModelPath = str(t, "value_model").value_or("");
    } else {
      r.grpo.topP = *f64(t, "top_p");
      r.grpo.topK = *i64(t, "top_k");
      r.grpo.minP = *f64(t, "min_p");
      r.grpo.repetitionPenalty = *f64(t, "repetition_penalty");
    }
    if (odpo) {
      // Two completions per prompt; no clipped objective.
      r.grpo.numGenerations = 2;
      r.grpo.beta = 0;
      r.grpo.lossType = "grpo";
      r.grpo.scaleRewards = "none";
      r.onlineDpo.betas.clear();
      eachEntry(*get(root, t, "beta"),
                [&](const toml::node &e) { r.onlineDpo.betas.push_back(e.value_or(0.0)); });
      r.onlineDpo.lossType = *str(t, "loss_type");
      r.onlineDpo.missingEosPenalty = f64(t, "missing_eos_penalty");
      r.onlineDpo.judge = str(t, "judge");
    } else if (!ppo) {
      r.grpo.numGenerations = *i64(t, "num_generations");
      r.grpo.epsilon = *f64(t, "epsilon");
      r.grpo.epsilonHigh = f64(t, "epsilon_high").value_or(r.grpo.epsilon);
      r.grpo.beta = *f64(t, "beta");
      r.grpo.lossType = rloo ? "grpo" : *str(t, "loss_type");
      r.grpo.numIterations = *i64(t, "num_iterations");
      r.grpo.sequenceLevel = !rloo && *str(t, "importance_sampling_level") == "sequence";
      r.grpo.scaleRewards = rloo ? "none" : *str(t, "scale_rewards");
      r.grpo.normalizeAdvantages = rloo && *b(t, "normalize_advantages");
      r.grpo.maskTruncatedCompletions = *b(t, "mask_truncated_completions");
    }
    if (const toml::node *n = get(root, t, "reward_funcs")) {
      r.grpo.rewardFuncsWhere = diag.where(*n);
      eachEntry(*n, [&](const toml::node &e) {
        r.grpo.rewardFuncs.push_back(e.as_string()->get());
      });
    }
    if (const toml::node *n = get(root, t, "reward_weights"))
      eachEntry(*n, [&](const toml::node &e) { r.grpo.rewardWeights.push_back(e.value_or(0.0)); });
    r.grpo.formatPattern = str(t, "format_pattern").value_or("");
    r.grpo.rewardTimeout = *f64(t, "reward_timeout");
    r.grpo.ds3GatherForGeneration = *b(t, "ds3_gather_for_generation");
    break;
  }
  }

  if ((r.peft.enabled = root.contains("peft"))) {
    r.peft.r = *i64("peft", "r");
    r.peft.loraAlpha = *f64("peft", "lora_alpha");
    r.peft.useRslora = *b("peft", "use_rslora");
    r.peft.loraDropout = *f64("peft", "lora_dropout");
    r.peft.initLoraWeights = *b("peft", "init_lora_weights");
    if (const toml::node *n = get(root, "peft", "target_modules"))
      eachEntry(*n, [&](const toml::node &e) {
        r.peft.targetModules.push_back(e.as_string()->get());
      });
    if (const toml::node *n = get(root, "peft", "modules_to_save"))
      eachEntry(*n, [&](const toml::node &e) {
        r.peft.modulesToSave.push_back(e.as_string()->get());
      });
  }

  r.output.outputDir =
      str("output", "output_dir").value_or("runs/" + r.stem);
  r.output.loggingSteps = *i64("output", "logging_steps");
  r.output.saveStrategy = *str("output", "save_strategy");
  r.output.saveSteps = *i64("output", "save_steps");
  r.output.saveOnlyModel = *b("output", "save_only_model");
  r.output.saveTotalLimit = i64("output", "save_total_limit");
}

std::optional<Error> Resolver::checkPositions(const toml::table &root, Recipe &r) {
  int64_t positions = r.model.config.maxPositionEmbeddings;
  bool grpo = isOnline(r.method);
  int64_t bound = grpo ? *r.data.maxPromptLength + *r.data.maxCompletionLength
                       : *r.data.maxLength;
  if (positions <= 0 || bound <= positions)
    return std::nullopt;
  const toml::node *node = get(root, "data", grpo ? "max_completion_length" : "max_length");
  std::string what = grpo ? "[data] max_prompt_length + max_completion_length (" +
                                std::to_string(bound) + ")"
                          : "[data] max_length " + std::to_string(bound);
  std::string place = node ? diag.where(*node) : path;
  if (r.model.config.family == ModelFamily::GPT2)
    return Error{place + ": error: " + what + " exceeds the model's " +
                 std::to_string(positions) + " learned positions (n_positions); lower it to " +
                 std::to_string(positions) + " or less"};
  r.warnings.push_back(place + ": warning: " + what + " exceeds the model's " +
                       "max_position_embeddings " + std::to_string(positions) +
                       "; RoPE runs past the lengths it was trained on");
  return std::nullopt;
}

std::optional<Error> Resolver::checkRewards(const toml::table &root, Recipe &r) {
  if (!isOnline(r.method))
    return std::nullopt;
  const char *t = methodName(r.method);
  const toml::node *funcs = get(root, t, "reward_funcs");
  if (const toml::node *judge = get(root, t, "judge")) {
    // Online DPO ranks with a judge or with rewards, as TRL takes one.
    if (funcs)
      return diag.at(*judge, "[online_dpo] judge and reward_funcs are both set; the judge "
                             "ranks each pair, the rewards score each completion: keep one");
    std::string &f = *r.onlineDpo.judge;
    if (f.rfind("command:", 0) == 0 && f.size() > 8)
      return std::nullopt;
    if (f.rfind("python:", 0) != 0)
      return diag.at(*judge, "a judge is \"python:FILE.py:FUNCTION\" or \"command:PROGRAM\", "
                             "got \"" + f + "\"");
    return resolvePython(*judge, f, "judge");
  }
  if (!funcs)
    return diag.atFile(std::string(r.method == Method::RLOO        ? "RLOO"
                                   : r.method == Method::OnlineDPO ? "Online DPO"
                                   : r.method == Method::PPO       ? "PPO"
                                                                   : "GRPO") +
                       std::string(" needs reward functions") +
                       (r.method == Method::OnlineDPO ? " or a judge" : "") + ": add [" + t +
                       "] reward_funcs, for example "
                       "reward_funcs = [\"accuracy\"] (the completion equals the row's "
                       "\"answer\" or \"solution\") or [\"python:rewards.py:my_reward\"]");
  auto entry = [&](size_t i) -> const toml::node & {
    return funcs->is_array() ? *funcs->as_array()->get(i) : *funcs;
  };
  for (size_t i = 0; i < r.grpo.rewardFuncs.size(); ++i) {
    std::string &f = r.grpo.rewardFuncs[i];
    if (f == "accuracy" || f == "length")
      continue;
    if (f == "format") {
      if (r.grpo.formatPattern.empty())
        return diag.at(entry(i), "the \"format\" reward needs [" + std::string(t) + "] format_pattern, the "
                                 "regular expression a whole completion must match");
      try {
        std::regex re(r.grpo.formatPattern, std::regex::ECMAScript);
      } catch (const std::regex_error &e) {
        return diag.at(*get(root, t, "format_pattern"),
                       std::string("[") + t + "] format_pattern is not a valid regular expression (" +
                           std::string(e.what()) + ")");
      }
      continue;
    }
    if (f.rfind("python:", 0) == 0) {
      if (auto err = resolvePython(entry(i), f, "reward"))
        return err;
      continue;
    }
    if (f.rfind("command:", 0) == 0 && f.size() > 8)
      continue;
    if (f.rfind("model:", 0) == 0 || isDirectory(f)) {
      // A reward model: a sequence-classification checkpoint (TRL takes a
      // model path among reward_funcs).
      std::string dir = f.rfind("model:", 0) == 0 ? f.substr(6) : f;
      if (auto err = checkRewardModel(entry(i), dir, r))
        return err;
      f = "model:" + fs::absolute(dir).lexically_normal().string();
      r.grpo.rewardModels.back().first = f.substr(6);
      continue;
    }
    std::string msg = "unknown reward function \"" + f + "\"; use \"accuracy\", \"format\", "
                      "\"length\", \"python:FILE.py:FUNCTION\", \"command:PROGRAM\" or "
                      "\"model:DIR\" (a reward model)";
    if (auto best = closestMatch(f, {"accuracy", "format", "length"}))
      msg += "; did you mean \"" + *best + "\"?";
    return diag.at(entry(i), msg);
  }
  if (r.grpo.rewardWeights.empty()) {
    r.grpo.rewardWeights.assign(r.grpo.rewardFuncs.size(), 1.0);
  } else if (r.grpo.rewardWeights.size() != r.grpo.rewardFuncs.size()) {
    return diag.at(*get(root, t, "reward_weights"),
                   std::string("[") + t + "] reward_weights has " + std::to_string(r.grpo.rewardWeights.size()) +
                       " weights for " + std::to_string(r.grpo.rewardFuncs.size()) +
                       " reward functions; give one weight per function");
  }
  if (r.method == Method::PPO)
    if (auto err = resolveValueModel(root, r))
      return err;
  // (Online DPO's batch counts prompts, two completions each.)
  if (r.method != Method::OnlineDPO && r.method != Method::PPO &&
      r.train.perDeviceTrainBatchSize % r.grpo.numGenerations != 0) {
    const toml::node *where = get(root, "train", "per_device_train_batch_size");
    std::string msg = "per_device_train_batch_size (" +
                      std::to_string(r.train.perDeviceTrainBatchSize) +
                      ") must be a multiple of [" + t + "] num_generations (" +
                      std::to_string(r.grpo.numGenerations) +
                      "): trlc generates each prompt's group within one micro-batch";
    return where ? diag.at(*where, msg) : diag.atFile(msg);
  }
  return std::nullopt;
}

std::optional<Error> Resolver::readAdapterConfig(const toml::table &root,
                                                 const toml::node &node, Recipe &r) {
  fs::path dir = node.as_string()->get();
  fs::path file = dir / "adapter_config.json";
  if (!isDirectory(dir) || !pathExists(dir / "adapter_model.safetensors"))
    return diag.at(node, "[peft] adapter '" + dir.string() + "' is not a PEFT adapter directory "
                         "(adapter_config.json and adapter_model.safetensors)");
  std::ifstream in(file);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object() || j.value("peft_type", "") != "LORA" || !j.contains("r") ||
      !j["r"].is_number_integer() || !j.contains("lora_alpha") || !j["lora_alpha"].is_number() ||
      !j.contains("target_modules"))
    return diag.at(node, file.string() + " is not a LoRA adapter config (peft_type \"LORA\", "
                         "r, lora_alpha, target_modules)");
  std::vector<std::string> targets;
  if (j["target_modules"].is_string()) {
    targets.push_back(j["target_modules"].get<std::string>());
  } else if (j["target_modules"].is_array()) {
    for (const nlohmann::json &t : j["target_modules"])
      if (t.is_string())
        targets.push_back(t.get<std::string>());
  }
  std::sort(targets.begin(), targets.end());
  // What the recipe says must be what the adapter was trained with.
  auto clash = [&](const char *key, const std::string &mine, const std::string &theirs)
      -> std::optional<Error> {
    const toml::node *n = get(root, "peft", key);
    if (n && mine != theirs)
      return diag.at(*n, "[peft] " + std::string(key) + " is " + mine + " but the adapter '" +
                             dir.string() + "' has " + theirs + "; remove the key (the "
                             "adapter's applies) or match it");
    return std::nullopt;
  };
  std::vector<std::string> mine = r.peft.targetModules;
  std::sort(mine.begin(), mine.end());
  auto list = [](const std::vector<std::string> &v) {
    std::string s;
    for (const std::string &e : v)
      s += (s.empty() ? "" : ",") + e;
    return "[" + s + "]";
  };
  int64_t rank = j["r"].get<int64_t>();
  double alpha = j["lora_alpha"].get<double>();
  bool rs = j.value("use_rslora", false);
  if (auto e = clash("r", std::to_string(r.peft.r), std::to_string(rank)))
    return e;
  if (auto e = clash("lora_alpha", formatNumber(r.peft.loraAlpha), formatNumber(alpha)))
    return e;
  if (auto e = clash("use_rslora", r.peft.useRslora ? "true" : "false", rs ? "true" : "false"))
    return e;
  if (!r.peft.targetModules.empty() && !(r.peft.targetModules.size() == 1 &&
                                         r.peft.targetModules[0] == "all-linear"))
    if (auto e = clash("target_modules", list(mine), list(targets)))
      return e;
  r.peft.r = rank;
  r.peft.loraAlpha = alpha;
  r.peft.useRslora = rs;
  r.peft.targetModules = targets;
  // lora_dropout is training, not structure: the recipe's wins, else the
  // adapter's (as PEFT trains a loaded adapter with its config's).
  if (!get(root, "peft", "lora_dropout") && j.contains("lora_dropout") &&
      j["lora_dropout"].is_number()) {
    double p = j["lora_dropout"].get<double>();
    if (!(p >= 0 && p < 1))
      return diag.at(node, file.string() + " has lora_dropout " + formatNumber(p) +
                               ", outside [0, 1); set [peft] lora_dropout");
    r.peft.loraDropout = p;
  }
  r.peft.adapter = fs::absolute(dir).lexically_normal().string();
  return std::nullopt;
}

std::optional<Error> Resolver::checkPeft(const toml::table &root, Recipe &r) {
  if (!r.peft.enabled)
    return std::nullopt;
  const toml::node *table = root.get("peft");
  // The modules trained whole: the model's non-linear ones, by name.
  bool gpt2 = r.model.config.family == ModelFamily::GPT2;
  std::vector<std::string> whole = gpt2 ? std::vector<std::string>{"wte", "wpe", "ln_f"}
                                        : std::vector<std::string>{"embed_tokens", "norm"};
  if (!gpt2 && !r.model.config.tieWordEmbeddings)
    whole.push_back("lm_head");
  if (r.method == Method::Reward)
    whole.push_back("score");
  if (const toml::node *n = get(root, "peft", "modules_to_save"))
    for (const std::string &m : r.peft.modulesToSave)
      if (std::find(whole.begin(), whole.end(), m) == whole.end()) {
        std::string list;
        for (const std::string &w : whole)
          list += (list.empty() ? "" : ", ") + w;
        return diag.at(*n, "[peft] modules_to_save names \"" + m + "\", which is not a module "
                           "this model can train whole (" + list + (m == "lm_head" && !gpt2
                           ? "; this model ties lm_head to embed_tokens" : "") + ")");
      }
  if (r.method == Method::Reward &&
      std::find(r.peft.modulesToSave.begin(), r.peft.modulesToSave.end(), "score") ==
          r.peft.modulesToSave.end())
    return diag.at(*table, "[peft] with method = \"reward\" trains the new score head whole: add "
                           "modules_to_save = [\"score\"] (as TRL advises)");
  auto unsupported = [&](const char *key, const std::string &why) -> std::optional<Error> {
    if (const toml::node *n = get(root, "peft", key))
      return diag.at(*n, "[peft] " + std::string(key) + " " + why);
    return std::nullopt;
  };
  if (const toml::node *n = get(root, "peft", "bias"))
    if (n->as_string()->get() != "none")
      return diag.at(*n, "[peft] bias = \"" + n->as_string()->get() +
                             "\" is not supported yet; only \"none\" (no bias trains)");
  const char *method = methodName(r.method);
  if (r.reference.modelPath)
    return diag.at(*get(root, method, "ref_model"),
                   std::string("[") + method + "] ref_model with [peft]: the reference is the "
                   "base model with the adapters off (as TRL's with PEFT), so remove ref_model");
  if (r.reference.precompute && !r.peft.initLoraWeights)
    return diag.at(*get(root, "peft", "init_lora_weights"),
                   "[peft] init_lora_weights = false with precompute_ref_log_probs: the "
                   "reference log-probabilities are computed with the adapters, which then "
                   "change the model; keep init_lora_weights = true (the update starts at 0)");
  if (const toml::node *n = get(root, "peft", "adapter")) {
    if (auto err = readAdapterConfig(root, *n, r))
      return err;
    if (r.reference.precompute)
      return diag.at(*n, "[peft] adapter with precompute_ref_log_probs: the reference "
                         "log-probabilities would be the adapted model's, not the base's; "
                         "remove one of them");
  }
  if (r.peft.loraDropout > 0 && r.train.disableDropout) {
    const toml::node *n = get(root, "peft", "lora_dropout"),
                     *d = get(root, "train", "disable_dropout");
    // (A default's node comes from no file and no --set.)
    bool given = d && (d->source().path || diag.where(*d).rfind("--set", 0) == 0);
    r.warnings.push_back((n ? diag.where(*n) : path) + ": warning: [peft] lora_dropout = " +
                         formatNumber(r.peft.loraDropout) + " has no effect: [train] "
                         "disable_dropout is true (" + (given ? std::string("set so")
                         : std::string(methodName(r.method)) + "'s default, as TRL's") +
                         "); set disable_dropout = false to use it");
  }
  // The model's linear layers, by module name.
  std::vector<std::string> linears =
      r.model.config.family == ModelFamily::GPT2
          ? std::vector<std::string>{"c_attn", "c_proj", "c_fc"}
          : std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj",
                                     "gate_proj", "up_proj", "down_proj"};
  std::string list;
  for (const std::string &l : linears)
    list += (list.empty() ? "" : ", ") + l;
  std::vector<std::string> &t = r.peft.targetModules;
  if (t.empty()) {  // PEFT's default for the architecture
    t = r.model.config.family == ModelFamily::GPT2
            ? std::vector<std::string>{"c_attn"}
            : std::vector<std::string>{"q_proj", "v_proj"};
  } else if (t.size() == 1 && t[0] == "all-linear") {
    t = linears;  // every linear but the output layer, as PEFT
  } else {
    const toml::node *n = get(root, "peft", "target_modules");
    if (!n)  // the adapter's own list
      n = get(root, "peft", "adapter");
    for (const std::string &m : t) {
      if (std::find(linears.begin(), linears.end(), m) != linears.end())
        continue;
      std::string msg = "[peft] target_modules names \"" + m + "\", which is not a linear "
                        "layer of this " + std::string(familyName(r.model.config.family)) +
                        " model; its linear layers are " + list + " (or \"all-linear\")";
      if (auto best = closestMatch(m, linears))
        msg += "; did you mean \"" + *best + "\"?";
      return diag.at(*n, msg);
    }
  }
  return std::nullopt;
}

/// A "python:FILE.py:FUNCTION" entry (a reward, or online DPO's judge):
/// FUNCTION an identifier, FILE an existing file, made absolute in `f`.
std::optional<Error> Resolver::resolvePython(const toml::node &node, std::string &f,
                                             const char *what) {
  std::string rest = f.substr(7);
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size() ||
      rest.substr(colon + 1).find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") !=
          std::string::npos ||
      std::isdigit(static_cast<unsigned char>(rest[colon + 1])))
    return diag.at(node, std::string("a Python ") + what +
                             " is named \"python:FILE.py:FUNCTION\", got \"" + f + "\"");
  std::string file = rest.substr(0, colon);
  if (!isRegularFile(file))
    return diag.at(node, std::string("the ") + what + " file '" + file +
                             "' does not exist (relative paths are relative to the current "
                             "directory, " + fs::current_path().string() + ")");
  f = "python:" + fs::absolute(file).lexically_normal().string() + ":" + rest.substr(colon + 1);
  return std::nullopt;
}

/// PPO's value model: [ppo] value_model (a directory with the policy's
/// vocabulary), else the first reward model (TRL's examples start the value
/// model from the reward model), else the policy's model, whose score head
/// then starts random as transformers initialises a missing one.
std::optional<Error> Resolver::resolveValueModel(const toml::table &root, Recipe &r) {
  const toml::node *node = get(root, "ppo", "value_model");
  if (node) {
    std::string dir = r.ppo.valueModelPath;
    if (!isDirectory(dir))
      return diag.at(*node, "[ppo] value_model '" + dir + "' is not a directory; give a "
                            "Hugging Face model directory (config.json, the weights)");
    auto config = configFromJsonFile(fs::path(dir) / "config.json");
    if (!config)
      return config.error();
    if (config->vocabSize != r.model.config.vocabSize)
      return diag.at(*node, "[ppo] value_model '" + dir + "' has vocab_size " +
                                std::to_string(config->vocabSize) + " but the policy has " +
                                std::to_string(r.model.config.vocabSize) +
                                "; the value model reads the policy's token ids");
    r.ppo.valueModelPath = fs::absolute(dir).lexically_normal().string();
    r.ppo.valueModelConfig = *config;
  } else if (!r.grpo.rewardModels.empty()) {
    r.ppo.valueModelPath = r.grpo.rewardModels.front().first;
    r.ppo.valueModelConfig = r.grpo.rewardModels.front().second;
  } else {
    r.ppo.valueModelPath =
        r.model.path ? fs::absolute(*r.model.path).lexically_normal().string() : "";
    r.ppo.valueModelConfig = r.model.config;
  }
  return std::nullopt;
}

/// A reward model of reward_funcs: a Hugging Face sequence-classification
/// directory (config.json with one label, the weights with score.weight)
/// of the policy's vocabulary, since trlc scores the token ids the policy
/// generated. Appends it to r.grpo.rewardModels.
std::optional<Error> Resolver::checkRewardModel(const toml::node &node, const std::string &dir,
                                                Recipe &r) {
  std::string what = "the reward model '" + dir + "'";
  if (!isDirectory(dir))
    return diag.at(node, what + " is not a directory; give a Hugging Face sequence-"
                               "classification model directory (config.json, the weights)");
  fs::path file = fs::path(dir) / "config.json";
  auto config = configFromJsonFile(file);
  if (!config)
    return config.error();
  int64_t labels = labelCount(file);
  if (labels != 1)
    return diag.at(node, what + " has " +
                             (labels < 0 ? std::string("no id2label") : std::to_string(labels) +
                                                                            " labels") +
                             " in its config.json; a reward model scores with one label "
                             "(num_labels = 1, as TRL loads it)");
  if (config->vocabSize != r.model.config.vocabSize)
    return diag.at(node, what + " has vocab_size " + std::to_string(config->vocabSize) +
                             " but the policy has " + std::to_string(r.model.config.vocabSize) +
                             "; trlc scores the policy's token ids, so the reward model must "
                             "share its tokenizer");
  int64_t bound = *r.data.maxPromptLength + *r.data.maxCompletionLength;
  if (config->family == ModelFamily::GPT2 && config->maxPositionEmbeddings < bound)
    return diag.at(node, what + " has " + std::to_string(config->maxPositionEmbeddings) +
                             " positions, fewer than max_prompt_length + "
                             "max_completion_length (" + std::to_string(bound) + ")");
  r.grpo.rewardModels.push_back({dir, *config});
  return std::nullopt;
}

/// [dpo] / [kto] ref_model: a model directory with the policy's
/// architecture (the reference runs the policy's graph on its own weights).
std::optional<Error> Resolver::checkReference(const toml::table &root, const Recipe &r) {
  if (!r.reference.modelPath)
    return std::nullopt;
  const char *section = r.method == Method::DPO ? "dpo" : "kto";
  const toml::node &node = *get(root, section, "ref_model");
  std::string key = std::string("[") + section + "] ref_model";
  fs::path dir = *r.reference.modelPath;
  if (!isDirectory(dir))
    return diag.at(node, key + " '" + dir.string() +
                             "' is not a directory; give a Hugging Face model directory "
                             "holding config.json and the weights");
  auto config = configFromJsonFile(dir / "config.json");
  if (!config)
    return config.error();
  const ModelConfig &a = r.model.config, &b = *config;
  std::vector<std::pair<std::string, std::pair<std::string, std::string>>> fields = {
      {"model_type", {familyName(b.family), familyName(a.family)}},
      {"hidden_size", {std::to_string(b.hiddenSize), std::to_string(a.hiddenSize)}},
      {"intermediate_size", {std::to_string(b.intermediateSize), std::to_string(a.intermediateSize)}},
      {"num_hidden_layers", {std::to_string(b.numLayers), std::to_string(a.numLayers)}},
      {"num_attention_heads", {std::to_string(b.numHeads), std::to_string(a.numHeads)}},
      {"num_key_value_heads", {std::to_string(b.numKvHeads), std::to_string(a.numKvHeads)}},
      {"head_dim", {std::to_string(b.headDim), std::to_string(a.headDim)}},
      {"vocab_size", {std::to_string(b.vocabSize), std::to_string(a.vocabSize)}},
      {"tie_word_embeddings", {b.tieWordEmbeddings ? "true" : "false",
                               a.tieWordEmbeddings ? "true" : "false"}},
      {"attention_bias", {b.attentionBias ? "true" : "false", a.attentionBias ? "true" : "false"}}};
  for (auto &[name, values] : fields)
    if (values.first != values.second)
      return diag.at(node, key + " '" + dir.string() + "' has " + name + " = " + values.first +
                               " but the policy has " + values.second +
                               "; the reference model must have the policy's architecture "
                               "(shapes), e.g. the model it was fine-tuned from");
  return std::nullopt;
}

std::optional<Error> Resolver::resolveModel(toml::table &root, Recipe &r) {
  toml::table *model = root["model"].as_table();
  const toml::node *inlineConfig = model ? model->get("config") : nullptr;
  const toml::node *pathNode = model ? model->get("path") : nullptr;
  if (pathNode && inlineConfig)
    return diag.at(*inlineConfig,
                   "[model] has both path and [model.config]; use path for a "
                   "Hugging Face model directory or [model.config] to train "
                   "from scratch, not both");
  if (!pathNode && !inlineConfig)
    return diag.at(model ? model->source() : root.source(),
                   "missing the model: set [model] path = \"DIR\" (a Hugging "
                   "Face model directory) or give a [model.config] table");
  if (inlineConfig) {
    if (!inlineConfig->is_table())
      return diag.at(*inlineConfig, "[model] config must be a table, got " +
                                        tomlTypeName(*inlineConfig));
    auto config = configFromToml(*inlineConfig->as_table(), diag);
    if (!config)
      return config.error();
    r.model.config = *config;
    return std::nullopt;
  }
  fs::path dir = pathNode->as_string()->get();
  if (!isDirectory(dir))
    return diag.at(*pathNode, "[model] path '" + dir.string() +
                                  "' is not a directory; give a Hugging Face "
                                  "model directory holding config.json");
  auto config = configFromJsonFile(dir / "config.json");
  if (!config)
    return config.error();
  r.model.config = *config;
  if (method == Method::Reward) {
    // A sequence classifier trains as a reward model only with one label;
    // a causal LM gets a new one-score head (TRL loads it with num_labels = 1).
    int64_t labels = labelCount(dir / "config.json");
    if (labels > 1 && isSequenceClassifier(dir / "config.json"))
      return diag.at(*pathNode, "[model] path '" + dir.string() + "' is a sequence "
                                "classifier with " + std::to_string(labels) +
                                " labels; a reward model has one (num_labels = 1): start from "
                                "its base model or a one-label checkpoint");
  }
  return std::nullopt;
}

std::string Resolver::printResolved(const toml::table &root, const Recipe &r) {
  std::ostringstream os;
  os << "# " << path << ", fully resolved (defaults included)\n";
  os << "method = \"" << methodName(r.method) << "\"\n";
  for (const char *section : kSections) {
    const toml::table *t = root[section].as_table();
    if (!t)
      continue;
    os << "\n[" << section << "]\n";
    for (const KeySpec &spec : schema()) {
      if (std::string_view(spec.section) != section ||
          !(spec.methods & maskOf(r.method)))
        continue;
      if (const toml::node *v = t->get(spec.key)) {
        os << spec.key << " = " << tomlValueText(*v) << "\n";
      } else if (std::string_view(spec.key) == "output_dir") {
        os << "output_dir = \"" << r.output.outputDir << "\"\n";
      } else {
        os << "# " << spec.key << " is not set: " << spec.help << "\n";
      }
    }
    if (std::string_view(section) == "model")
      os << "\n" << printModelConfig(r.model.config, r.model.path.has_value());
  }
  return os.str();
}

Expected<Recipe> Resolver::run(toml::table &root,
                               const std::vector<std::string> &overrides) {
  Recipe r;
  r.file = path;
  r.stem = fs::path(path).stem().string();
  if (auto err = applyOverrides(root, overrides))
    return *err;
  if (auto err = checkStructure(root))
    return *err;
  if (auto err = checkMethodApplicability(root))
    return *err;
  if (!get(root, "data", "train")) {
    const toml::node *data = root.get("data");
    return data ? diag.at(*data, "missing required key 'train' in [data]: "
                                 "the JSONL training file(s)")
                : diag.atFile("missing required table [data] with train = "
                              "\"FILE.jsonl\"");
  }
  if (auto err = checkContradictions(root))
    return *err;
  if (!root.contains("model"))
    return diag.atFile("missing the model: add a [model] table with path = "
                       "\"DIR\" or a [model.config] table");
  if (auto err = resolveModel(root, r))
    return *err;
  fillDefaults(root, method);
  fill(root, r);
  if (const toml::node *n = get(root, "memory", "recompute");
      n && !r.memory.gradientCheckpointing &&
      (n->source().path || diag.where(*n).rfind("--set", 0) == 0))
    r.warnings.push_back(diag.where(*n) + ": warning: [memory] recompute has no effect with "
                         "gradient_checkpointing = false");
  if (auto err = checkPositions(root, r))
    return *err;
  // A path the filesystem cannot hold is the recipe's mistake, said here.
  {
    fs::path out(r.output.outputDir);
    std::string tooLong;
    for (const fs::path &part : out)
      if (part.string().size() > 255)
        tooLong = "a path component of " + std::to_string(part.string().size()) + " characters";
    if (r.output.outputDir.size() > 4000)
      tooLong = std::to_string(r.output.outputDir.size()) + " characters";
    if (!tooLong.empty()) {
      std::string msg = "[output] output_dir is too long for the filesystem (" + tooLong +
                        "; at most 255 per component); choose a shorter path";
      if (const toml::node *at = get(root, "output", "output_dir"))
        return diag.at(*at, msg);
      return diag.atFile(msg);
    }
  }
  if (auto err = checkPeft(root, r))
    return *err;
  if (auto err = checkReference(root, r))
    return *err;
  if (auto err = checkRewards(root, r))
    return *err;
  r.resolvedToml = printResolved(root, r);
  return r;
}

} // namespace

std::optional<Error> checkInputFiles(const Recipe &recipe) {
  auto check = [](const std::vector<std::string> &files,
                  const std::string &where,
                  const char *key) -> std::optional<Error> {
    for (const std::string &file : files) {
      if (file.find_first_of("*?[") != std::string::npos || pathExists(file))
        continue;
      return Error{where + ": error: [data] " + key + " file '" + file +
                   "' does not exist (relative paths are relative to the " +
                   "current directory, " + fs::current_path().string() + ")"};
    }
    return std::nullopt;
  };
  if (auto err = check(recipe.data.train, recipe.data.trainWhere, "train"))
    return err;
  return check(recipe.data.eval, recipe.data.evalWhere, "eval");
}

Expected<Recipe> parseRecipe(const std::string &text, const std::string &path,
                             const std::vector<std::string> &overrides) {
  Diag diag(path);
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error &e) {
    return diag.at(e.source(), std::string(e.description()));
  }
  Resolver resolver(path, diag);
  return resolver.run(root, overrides);
}

Expected<Recipe> loadRecipe(const std::string &path,
                            const std::vector<std::string> &overrides) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    return Error{path + ": error: is a directory; give the recipe's TOML file (for example " +
                 (fs::path(path) / "tiny-sft.toml").string() + ")"};
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Error{path + ": error: cannot read the recipe (" +
                 (pathExists(path) ? std::string("permission denied")
                                   : std::string("no such file")) +
                 ")"};
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parseRecipe(buffer.str(), path, overrides);
}

} // namespace trlc
