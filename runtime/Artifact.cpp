//===- Artifact.cpp - reading the artifact manifest -----------------------===//

#include "trlc/Artifact.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace trlc::artifact {

std::string contentHash(const std::string &text) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64-bit offset basis
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

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

} // namespace trlc::artifact
