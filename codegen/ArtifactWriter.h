//===- ArtifactWriter.h - writes a compiled artifact directory -*- C++ -*-===//

#ifndef TRLC_CODEGEN_ARTIFACTWRITER_H
#define TRLC_CODEGEN_ARTIFACTWRITER_H

#include "codegen/MemorySummary.h"
#include "frontend/Recipe.h"
#include "trlc/Artifact.h"

#include "mlir/IR/BuiltinOps.h"

namespace trlc {

/// Writes the artifact directory `outDir` (format: runtime/include/trlc/
/// Artifact.h). Refuses to write into an existing directory that is not a
/// trlc artifact, so nothing the user wrote is overwritten.
std::optional<Error> writeArtifact(const std::string &outDir,
                                   const Recipe &recipe, mlir::ModuleOp module,
                                   const MemorySummary &summary,
                                   const artifact::Plan &plan);

} // namespace trlc

#endif // TRLC_CODEGEN_ARTIFACTWRITER_H
