//===- ArtifactWriter.h - writes a compiled artifact directory -*- C++ -*-===//

#ifndef TRLC_CODEGEN_ARTIFACTWRITER_H
#define TRLC_CODEGEN_ARTIFACTWRITER_H

#include "codegen/MemorySummary.h"
#include "trlc/Artifact.h"
#include "trlc/Expected.h"

#include "mlir/IR/BuiltinOps.h"

#include <optional>
#include <string>

namespace trlc {

/// Makes `outDir` the artifact's directory: new, empty or an earlier
/// artifact (nothing the user wrote is overwritten). Call it before
/// anything is written there (the token shards, then writeArtifact).
std::optional<Error> claimArtifactDir(const std::string &outDir);

/// Writes the artifact's files into the claimed `outDir` (format:
/// runtime/include/trlc/Artifact.h), each atomically: the resolved recipe,
/// the module, the memory summary, the plan and last the manifest (its
/// recipe hash taken from `resolvedToml`, the hashes of the plan and of
/// the data files already written).
std::optional<Error> writeArtifact(const std::string &outDir,
                                   artifact::Manifest manifest,
                                   const std::string &resolvedToml,
                                   mlir::ModuleOp module,
                                   const MemorySummary &summary,
                                   artifact::Plan plan);

} // namespace trlc

#endif // TRLC_CODEGEN_ARTIFACTWRITER_H
