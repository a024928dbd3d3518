//===- Merge.cpp - a PEFT LoRA adapter merged into its base model ---------===//

#include "trlc/Merge.h"
#include "trlc/Checkpoint.h"
#include "trlc/Files.h"
#include "trlc/Run.h"
#include "trlc/Safetensors.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace trlc {

namespace {

json readJsonFile(const fs::path &file) {
  std::ifstream in(file);
  if (!in)
    throw RunError(file.string() + ": error: cannot read it; a PEFT adapter directory holds "
                   "adapter_config.json and adapter_model.safetensors");
  json j = json::parse(in, nullptr, false);
  if (!j.is_object())
    throw RunError(file.string() + ": error: not a JSON object");
  return j;
}

} // namespace

int mergeAdapter(const MergeOptions &o) {
  fs::path adapter(o.adapter);
  json config = readJsonFile(adapter / "adapter_config.json");
  if (config.value("peft_type", "") != "LORA")
    throw RunError((adapter / "adapter_config.json").string() +
                   ": error: peft_type is not \"LORA\"; trlc merges LoRA adapters only");
  auto number = [&](const char *key) -> double {
    if (!config.contains(key) || !config[key].is_number())
      throw RunError((adapter / "adapter_config.json").string() + ": error: '" + key +
                     "' is missing or not a number");
    return config[key].get<double>();
  };
  double r = number("r"), alpha = number("lora_alpha");
  if (r < 1 || !(alpha > 0))
    throw RunError((adapter / "adapter_config.json").string() +
                   ": error: r must be at least 1 and lora_alpha positive");
  double scale = alpha / (config.value("use_rslora", false) ? std::sqrt(r) : r);
  bool fanInFanOut = config.value("fan_in_fan_out", false);
  std::string baseDir = o.base;
  if (baseDir.empty() && config.contains("base_model_name_or_path") &&
      config["base_model_name_or_path"].is_string())
    baseDir = config["base_model_name_or_path"].get<std::string>();
  if (baseDir.empty() || !fs::is_directory(baseDir))
    throw RunError((adapter / "adapter_config.json").string() + ": error: the base model " +
                   (baseDir.empty() ? std::string("is not named (a model trained from "
                                                  "[model.config])")
                                    : "'" + baseDir + "' is not a directory") +
                   "; give it with --base DIR");
  if (fs::exists(o.output))
    throw RunError(o.output + ": error: already exists; trlc merge writes a new directory "
                   "(choose another -o, or remove it)");

  std::map<std::string, safetensors::Tensor> base, lora;
  std::string error;
  if (!safetensors::readModelDir(baseDir, base, error) ||
      !safetensors::readFile((adapter / "adapter_model.safetensors").string(), lora, error))
    throw RunError(error);
  const std::string prefix = "base_model.model.";
  int merged = 0;
  for (const auto &[key, a] : lora) {
    const std::string suffix = ".lora_A.weight";
    if (key.size() <= suffix.size() || key.compare(key.size() - suffix.size(), suffix.size(),
                                                   suffix) != 0)
      continue;
    std::string module = key.substr(0, key.size() - suffix.size());
    auto bIt = lora.find(module + ".lora_B.weight");
    std::string weight = (module.rfind(prefix, 0) == 0 ? module.substr(prefix.size()) : module) +
                         ".weight";
    auto wIt = base.find(weight);
    if (bIt == lora.end() || wIt == base.end())
      throw RunError((adapter / "adapter_model.safetensors").string() + ": error: " + key +
                     (bIt == lora.end() ? " has no lora_B" : " adapts '" + weight +
                                                                 "', which the base model lacks"));
    const safetensors::Tensor &b = bIt->second;
    safetensors::Tensor &w = wIt->second;
    if (a.shape.size() != 2 || b.shape.size() != 2)
      throw RunError((adapter / "adapter_model.safetensors").string() + ": error: " + module +
                     "'s lora_A and lora_B must be matrices");
    int64_t rank = a.shape[0], in = a.shape[1], out = b.shape[0];
    // W is [out, in], or [in, out] for a Conv1D (fan_in_fan_out).
    std::vector<int64_t> want = fanInFanOut ? std::vector<int64_t>{in, out}
                                            : std::vector<int64_t>{out, in};
    if (b.shape.size() != 2 || b.shape[1] != rank || w.shape != want)
      throw RunError((adapter / "adapter_model.safetensors").string() + ": error: the shapes of " +
                     module + " (A, B) do not fit " + weight + " of the base model");
    for (int64_t i = 0; i < out; ++i)
      for (int64_t j = 0; j < in; ++j) {
        double d = 0;
        for (int64_t k = 0; k < rank; ++k)
          d += double(b.data[i * rank + k]) * double(a.data[k * in + j]);
        w.data[fanInFanOut ? j * out + i : i * in + j] += static_cast<float>(scale * d);
      }
    ++merged;
  }
  if (!merged)
    throw RunError((adapter / "adapter_model.safetensors").string() +
                   ": error: holds no lora_A / lora_B pair");
  // Modules trained whole (modules_to_save) replace the base's.
  for (auto &[key, t] : lora) {
    bool pair = key.find(".lora_A.") != std::string::npos ||
                key.find(".lora_B.") != std::string::npos;
    if (pair)
      continue;
    std::string name = key.rfind(prefix, 0) == 0 ? key.substr(prefix.size()) : key;
    auto it = base.find(name);
    if (it != base.end() && it->second.shape != t.shape)
      throw RunError((adapter / "adapter_model.safetensors").string() + ": error: " + key +
                     " does not have the shape of " + name + " in the base model");
    base[name] = std::move(t);
    ++merged;
  }

  fs::create_directories(o.output);
  std::vector<safetensors::Entry> entries;
  for (const auto &[name, t] : base)
    entries.push_back({name, t.shape, t.data.data()});
  if (!safetensors::writeFile((fs::path(o.output) / "model.safetensors").string(), entries, error))
    throw RunError(error);
  for (const char *f : {"config.json", "generation_config.json", "tokenizer.json",
                        "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                        "merges.txt"}) {
    fs::path from = fs::exists(fs::path(baseDir) / f) ? fs::path(baseDir) / f : adapter / f;
    if (!fs::exists(from))
      continue;
    std::ifstream in(from, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    writeText((fs::path(o.output) / f).string(), bytes);
  }
  return merged;
}

} // namespace trlc
