//===- ArtifactWriter.cpp - writes a compiled artifact directory ----------===//

#include "codegen/ArtifactWriter.h"
#include "trlc/Files.h"

#include "mlir/IR/AsmState.h"
#include "llvm/Support/raw_ostream.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace trlc {

namespace {
std::optional<Error> writeFile(const fs::path &file, const std::string &text) {
  if (auto error = writeFileAtomic(file.string(), text))
    return Error{*error};
  return std::nullopt;
}

std::string fileHash(const fs::path &file) {
  std::ifstream in(file, std::ios::binary);
  return artifact::contentHash(std::string((std::istreambuf_iterator<char>(in)), {}));
}
} // namespace

std::optional<Error> claimArtifactDir(const std::string &outDir) {
  fs::path dir(outDir);
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    // An empty directory or an earlier artifact may be replaced.
    bool ours = isDirectory(dir) &&
                (fs::is_empty(dir, ec) || pathExists(dir / artifact::kManifestFile));
    if (!ours)
      return Error{outDir + ": error: exists and is not a trlc artifact; "
                            "choose another -o path or remove it"};
  }
  fs::create_directories(dir / artifact::kIrDir, ec);
  if (ec)
    return Error{outDir + ": error: cannot create the artifact directory (" +
                 ec.message() + ")"};
  return std::nullopt;
}

std::optional<Error> writeArtifact(const std::string &outDir,
                                   artifact::Manifest manifest,
                                   const std::string &resolvedToml,
                                   mlir::ModuleOp module,
                                   const MemorySummary &summary,
                                   artifact::Plan plan) {
  fs::path dir(outDir);
  std::string ir;
  llvm::raw_string_ostream os(ir);
  module.print(os);
  os.flush();

  manifest.recipeHash = artifact::contentHash(resolvedToml);
  manifest.parameters = summary.trainableParameters;
  if (auto err = writeFile(dir / artifact::kRecipeFile, resolvedToml))
    return err;
  if (auto err = writeFile(dir / artifact::kIrDir / artifact::kStepIrFile, ir))
    return err;
  if (auto err = writeFile(dir / artifact::kMemoryPlanFile,
                           memorySummaryJson(summary)))
    return err;
  // The data files (written before) and the plan, each hashed into the
  // manifest; the plan records the manifest's identity.
  const artifact::DataShards &data = plan.run.data;
  for (const std::string &f : {data.trainShard, data.evalShard, data.vocab, data.columns})
    if (!f.empty())
      manifest.files[f] = fileHash(dir / f);
  plan.manifestHash = manifest.identityHash();
  std::string planText = plan.toJson().dump() + "\n";
  manifest.planHash = artifact::contentHash(planText);
  if (auto err = writeFile(dir / artifact::kPlanFile, planText))
    return err;
  // The manifest goes last: a directory without one is an incomplete write.
  return writeFile(dir / artifact::kManifestFile, manifest.toJson().dump(2) + "\n");
}

} // namespace trlc
