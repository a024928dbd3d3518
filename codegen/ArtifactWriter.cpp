//===- ArtifactWriter.cpp - writes a compiled artifact directory ----------===//

#include "codegen/ArtifactWriter.h"

#include "mlir/IR/AsmState.h"
#include "llvm/Support/raw_ostream.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace trlc {

namespace {
std::optional<Error> writeFile(const fs::path &file, const std::string &text) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out)
    return Error{file.string() + ": error: cannot write (check the directory "
                                 "permissions and free space)"};
  return std::nullopt;
}
} // namespace

std::optional<Error> writeArtifact(const std::string &outDir,
                                   artifact::Manifest manifest,
                                   const std::string &resolvedToml,
                                   mlir::ModuleOp module,
                                   const MemorySummary &summary,
                                   const artifact::Plan &plan) {
  fs::path dir(outDir);
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    // An empty directory or an earlier artifact may be replaced.
    bool ours = fs::is_directory(dir) &&
                (fs::is_empty(dir, ec) ||
                 fs::exists(dir / artifact::kManifestFile));
    if (!ours)
      return Error{outDir + ": error: exists and is not a trlc artifact; "
                            "choose another -o path or remove it"};
  }
  fs::create_directories(dir / artifact::kIrDir, ec);
  if (ec)
    return Error{outDir + ": error: cannot create the artifact directory (" +
                 ec.message() + ")"};

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
  if (auto err = writeFile(dir / artifact::kPlanFile,
                           plan.toJson().dump() + "\n"))
    return err;
  // The manifest goes last: a directory without one is an incomplete write.
  return writeFile(dir / artifact::kManifestFile, manifest.toJson().dump(2) + "\n");
}

} // namespace trlc
