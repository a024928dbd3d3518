//===- artifact.cpp - fuzz the artifact loader (plan.json + manifest) ------===//
// Input: plan.json, then optionally a NUL byte and manifest.json (the demo
// artifact's manifest otherwise). The harness seals what it writes as the
// compiler would (recipe, plan and identity hashes), so the fuzzer reaches
// every check behind the hashes: contracts, sizes, offsets, settings.
#include "trlc/Artifact.h"
#include "trlc/Kernels.h"
#include "trlc/MemoryReport.h"
#include "Fuzz.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>

namespace {
const char *kManifest = R"({"batch_size":32,"files":{"data/eval.bin":"d1d710eccbe1e02d",
"data/train.bin":"593f1ece204a8600","data/vocab.json":"bbd2683e71458ff7"},
"format":"trlc-artifact","format_version":0,"method":"sft","model_type":"llama",
"parameters":94528,"plan_hash":"","recipe":"recipes/tiny-sft.toml","recipe_hash":"",
"sequence_bound":16,"world_size":1})";
const char *kRecipe = "method = \"sft\"\n";
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using nlohmann::json;
  namespace art = trlc::artifact;
  auto [planText, manifestText] = trlc::fuzz::splitAtNul(data, size);
  std::string dir = (trlc::fuzz::scratch() / "a.trlc").string();
  trlc::fuzz::writeScratch("a.trlc/recipe.toml", kRecipe);
  json manifest = json::parse(manifestText.empty() ? std::string_view(kManifest) : manifestText,
                              nullptr, false);
  if (manifestText.empty())
    manifest["format_version"] = art::kFormatVersion;  // the demo's, at this version
  json plan = json::parse(planText, nullptr, false);
  std::string planBytes(planText);
  if (manifest.is_object()) {
    manifest["recipe_hash"] = art::contentHash(kRecipe);
    trlc::fuzz::writeScratch("a.trlc/manifest.json", manifest.dump());
    art::Manifest m;
    std::string error;
    if (plan.is_object() && art::readManifest(dir, m, error)) {
      plan["manifest_hash"] = m.identityHash();
      planBytes = plan.dump();
    }
    manifest["plan_hash"] = art::contentHash(planBytes);
    trlc::fuzz::writeScratch("a.trlc/manifest.json", manifest.dump());
  } else {
    trlc::fuzz::writeScratch("a.trlc/manifest.json", manifestText);
  }
  trlc::fuzz::writeScratch("a.trlc/plan.json", planBytes);
  auto read = art::readArtifact(dir);
  if (std::getenv("TRLC_FUZZ_VERBOSE"))
    std::fprintf(stderr, "%s\n", read ? "accepted" : read.error().message.c_str());
  if (!read) {
    if (read.error().message.empty())
      __builtin_trap();  // a refusal without a message
    return 0;
  }
  // What `trlc inspect` computes from an accepted plan.
  const art::Plan &p = read->plan;
  trlc::MemoryReport report =
      trlc::memoryReport(p, trlc::planScratchBytes(p, {trlc::ScratchTarget::Cpu, 1}),
                         read->manifest.worldSize);
  (void)trlc::memoryReportText(report);
  return 0;
}
