//===- Trainer.h - the training loop around a compiled plan -----*- C++ -*-===//
//
// Reads the artifact, initialises or loads the weights, feeds batches
// (trlc/Data.h) into train_step, runs optimizer_step every
// gradient_accumulation_steps micro-batches, logs metrics.jsonl, writes
// Hugging Face-layout checkpoints and the final model, and, when the recipe
// has [data] eval, greedily completes the held-out prompts.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_TRAINER_H
#define TRLC_RUNTIME_TRAINER_H

#include <cstdint>
#include <string>
#include <vector>

namespace trlc {

struct RunOptions {
  std::string artifact;
  int64_t maxSteps = -1;  // -1: the plan's total_steps
  int threads = 0;        // 0: all hardware threads
  bool quiet = false;
  /// Write the weights as initialised to this safetensors file and, after
  /// each step, "step N loss L grad_norm G" lines (for the PyTorch tests).
  std::string dumpInitial;
  std::string dumpGradients;  // accumulated gradients of the first step
  int nproc = 1;  // > 1: start that many local processes (Gloo), data parallel
  std::string resume;  // a checkpoint-STEP directory to continue from
  std::string device = "cpu";  // "cpu" or "cuda" (GPU LOCAL_RANK)
  /// Where checkpoints, metrics and the model go instead of the recipe's
  /// [output] output_dir (an artifact compiled on another machine).
  std::string outputDir;
};

/// OpenMP threads that spin after a parallel loop take the cores OpenBLAS's
/// threads need for the next matrix product (steps run 1.5x slower on two
/// cores). libgomp reads OMP_WAIT_POLICY before main, so when it is unset
/// this sets it to PASSIVE and re-executes the process; an explicit setting
/// is left alone, and if re-executing fails the run goes on as it is.
void preferPassiveOpenMP(char **argv);

/// Runs the artifact; returns the process exit code. Errors are printed
/// with the file and the fix.
int runArtifact(const RunOptions &options);

/// Parses one `trlc run` option at argv[i] (advancing i past its value);
/// false when argv[i] is not a run option. Sets `err` for a bad value.
bool parseRunOption(int &i, int argc, char **argv, RunOptions &options,
                    std::string &err);

/// `trlc run ARTIFACT [options]` from argv[2..]; sets `err` (and returns 2)
/// for a command-line mistake, else returns runArtifact's exit code.
int runCommand(int argc, char **argv, std::string &err);

/// `trlc inspect OUT.trlc [--memory] [--json] [--timeline FILE.svg]`: the
/// artifact's memory plan (trlc/MemoryReport.h). Sets `err` for usage
/// mistakes.
int inspectCommand(int argc, char **argv, std::string &err);

} // namespace trlc

#endif // TRLC_RUNTIME_TRAINER_H
