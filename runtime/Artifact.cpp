//===- Artifact.cpp - reading the artifact manifest -----------------------===//

#include "trlc/Artifact.h"
#include "trlc/Hash.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace trlc::artifact {

std::string contentHash(const std::string &text) { return hashHex(fnv1a(text)); }

bool readManifest(const std::string &dir, Manifest &m, std::string &error) {
  namespace fs = std::filesystem;
  fs::path file = fs::path(dir) / kManifestFile;
  if (!fs::is_directory(dir)) {
    error = dir + ": error: not a trlc artifact directory (compile one with "
                  "`trlc compile RECIPE.toml -o " + dir + "`)";
    return false;
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    error = file.string() + ": error: missing; " + dir +
            " is not a trlc artifact (recompile it with `trlc compile`)";
    return false;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto j = nlohmann::json::parse(buffer.str(), nullptr, false);
  auto fail = [&](const std::string &msg) {
    error = file.string() + ": error: " + msg;
    return false;
  };
  if (j.is_discarded() || !j.is_object())
    return fail("not valid JSON; recompile the artifact with `trlc compile`");
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
  return str("recipe", m.recipe) && str("recipe_hash", m.recipeHash) &&
         str("method", m.method) && str("model_type", m.modelType) &&
         num("world_size", m.worldSize) && num("batch_size", m.batchSize) &&
         num("sequence_bound", m.sequenceBound) &&
         num("parameters", m.parameters);
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

int64_t TensorDesc::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

nlohmann::json planToJson(const Plan &plan) {
  using nlohmann::json;
  json tensors = json::array();
  for (const TensorDesc &t : plan.tensors) {
    json d = {{"offset", t.offset}, {"shape", t.shape}, {"dtype", dtypeName(t.dtype)}};
    if (t.host)
      d["host"] = true;
    if (t.viewOf >= 0)
      d["view_of"] = t.viewOf;
    tensors.push_back(std::move(d));
  }
  json params = json::array();
  for (const ParamDesc &p : plan.params)
    params.push_back({{"name", p.name}, {"set", p.set},
                      {"trainable", p.trainable},
                      {"hf_transposed", p.hfTransposed}, {"tensor", p.tensor},
                      {"grad", p.grad}, {"exp_avg", p.expAvg},
                      {"exp_avg_sq", p.expAvgSq}});
  json programs = json::object();
  for (const auto &[name, prog] : plan.programs) {
    json calls = json::array();
    for (const KernelCall &c : prog.calls)
      calls.push_back({{"kernel", kernelName(c.kernel)}, {"in", c.in}, {"out", c.out},
                       {"attrs", c.attrs}});
    programs[name] = {{"inputs", prog.inputs},
                      {"outputs", prog.outputs},
                      {"calls", calls}};
  }
  return {{"format_version", kFormatVersion},
          {"arena_bytes", plan.arenaBytes},
          {"host_bytes", plan.hostBytes},
          {"tensors", tensors},
          {"params", params},
          {"programs", programs},
          {"run", plan.run},
          {"zero", plan.zero}};
}

bool readPlan(const std::string &dir, Plan &plan, std::string &error) {
  namespace fs = std::filesystem;
  fs::path file = fs::path(dir) / kPlanFile;
  auto fail = [&](const std::string &msg) {
    error = file.string() + ": error: " + msg +
            "; recompile the artifact with `trlc compile`";
    return false;
  };
  std::ifstream in(file, std::ios::binary);
  if (!in)
    return fail("missing");
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto j = nlohmann::json::parse(buffer.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return fail("not valid JSON");
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
      for (int64_t dim : d.shape)
        if (dim < 0)
          return fail("tensor " + std::to_string(plan.tensors.size()) +
                      " has a negative dimension");
      if (d.viewOf < -1 || d.viewOf >= static_cast<int>(plan.tensors.size()))
        return fail("tensor " + std::to_string(plan.tensors.size()) +
                    " is a view of a tensor that does not precede it");
      if (d.offset < 0 || d.offset % 64 != 0 ||
          d.offset + d.bytes() > (d.host ? plan.hostBytes : plan.arenaBytes))
        return fail("tensor " + std::to_string(plan.tensors.size()) +
                    " lies outside the arena or is misaligned");
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
        p.calls.push_back(std::move(k));
      }
      for (const auto *m : {&p.inputs, &p.outputs})
        for (const auto &[io, t] : *m)
          if (!valid(t, false))
            return fail("program " + name + ": '" + io +
                        "' names a tensor that does not exist");
      plan.programs[name] = std::move(p);
    }
    plan.run = j.at("run");
    plan.zero = j.value("zero", nlohmann::json::object());
  } catch (const nlohmann::json::exception &e) {
    return fail(std::string("malformed (") + e.what() + ")");
  }
  return true;
}

} // namespace trlc::artifact
