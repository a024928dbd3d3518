//===- Run.h - trlc run: an artifact from start to finish -------*- C++ -*-===//
//
// `trlc run`: reads and checks the artifact (trlc/Artifact.h), starts the
// ranks of a data-parallel run (trlc/Launch.h), opens the device
// (trlc/Backend.h) and the communicator (trlc/Comm.h), and hands them to
// the training loop (trlc/Trainer.h). Every error it reports names the
// file and the fix.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_RUN_H
#define TRLC_RUNTIME_RUN_H

#include <cstdint>
#include <stdexcept>
#include <string>

namespace trlc {

struct RunOptions {
  std::string artifact;
  int64_t maxSteps = -1;  // -1: the plan's total_steps
  int threads = 0;        // 0: all hardware threads
  bool quiet = false;
  /// Write the weights as initialised to this safetensors file (for the
  /// PyTorch tests).
  std::string dumpInitial;
  std::string dumpGradients;  // accumulated gradients of the first step
  int nproc = 1;  // > 1: start that many local processes, data parallel
  std::string resume;  // a checkpoint-STEP directory to continue from
  std::string device = "cpu";  // "cpu" or "cuda" (GPU LOCAL_RANK)
  /// Where checkpoints, metrics and the model go instead of the recipe's
  /// [output] output_dir (an artifact compiled on another machine).
  std::string outputDir;
};

/// A run that cannot go on, with the file and the fix in the message.
struct RunError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Runs the artifact; returns the process exit code. Errors are printed
/// with the file and the fix.
int runArtifact(const RunOptions &options);

} // namespace trlc

#endif // TRLC_RUNTIME_RUN_H
