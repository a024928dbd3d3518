//===- Driver.h - trlc compile, stage by stage ------------------*- C++ -*-===//
//
// A compile is a session of stages, each feeding the next (Driver.cpp's
// run() shows them in order):
//
//   recipe ─► data plan (token shards) ─► step shape ─► schedule
//          ─► module (frontend graph builders) ─► pipeline, first half
//          ─► budget search ─► pipeline, second half ─► lowering
//          ─► memory accounting ─► artifact
//
// The command line (tools/trlc.cpp) only fills a CompileRequest.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_COMPILER_DRIVER_H
#define TRLC_COMPILER_DRIVER_H

#include <iosfwd>
#include <string>
#include <vector>

namespace trlc::compiler {

struct CompileRequest {
  std::string recipe;                   // path of the recipe
  std::vector<std::string> overrides;   // --set section.key=value
  std::string output;                   // -o ("": RECIPE_NAME.trlc)
  int worldSize = 1;                    // --nproc
  /// Where to stop: the artifact, or print the module before autodiff
  /// (Forward), after the pipeline (Mlir), the plan (Plan), the resolved
  /// recipe (Config).
  enum class Emit { Artifact, Forward, Mlir, Plan, Config } emit = Emit::Artifact;
  bool printIrAfterAll = false;
  std::vector<std::string> printIrAfter;  // pass names
};

/// How a compile ended.
struct CompileResult {
  int exitCode = 0;        // 0, 1 (bad input), 2 (usage), 3 (internal error)
  std::string usageError;  // with exitCode 2: the command-line mistake
  std::string artifact;    // the directory written
};

/// Runs a compile; messages go to `out` and `err`.
CompileResult compile(const CompileRequest &request, std::ostream &out, std::ostream &err);

} // namespace trlc::compiler

#endif // TRLC_COMPILER_DRIVER_H
