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

/// Writes the artifact directory `outDir` (format: runtime/include/trlc/
/// Artifact.h): the manifest (its recipe hash taken from `resolvedToml`),
/// the resolved recipe, the module, the memory summary and the plan.
/// Refuses to write into an existing directory that is not a trlc
/// artifact, so nothing the user wrote is overwritten.
std::optional<Error> writeArtifact(const std::string &outDir,
                                   artifact::Manifest manifest,
                                   const std::string &resolvedToml,
                                   mlir::ModuleOp module,
                                   const MemorySummary &summary,
                                   const artifact::Plan &plan);

} // namespace trlc

#endif // TRLC_CODEGEN_ARTIFACTWRITER_H
