//===- RunCommands.h - trlc run and trlc inspect ----------------*- C++ -*-===//
//
// The commands both builds of trlc have (the full one and the runtime-only
// one of a GPU machine): their options and their calls into the runtime.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_TOOLS_RUNCOMMANDS_H
#define TRLC_TOOLS_RUNCOMMANDS_H

#include "tools/Options.h"
#include "trlc/Run.h"

#include <string>

namespace trlc::cli {

/// run's options (train takes them too).
Options runOptions(RunOptions &options);

/// `trlc run ARTIFACT [options]` from argv[2..]: sets `usage` to the message
/// of a command-line mistake (and returns 2), else returns the run's exit
/// code.
int runCommand(int argc, char **argv, std::string &usage);

/// `trlc inspect ARTIFACT [--memory] [--json] [--timeline FILE.svg]`.
int inspectCommand(int argc, char **argv, std::string &usage);

/// `trlc merge ADAPTER_DIR -o OUT_DIR [--base DIR]`: a LoRA adapter merged
/// into its base model.
int mergeCommand(int argc, char **argv, std::string &usage);

} // namespace trlc::cli

#endif // TRLC_TOOLS_RUNCOMMANDS_H
