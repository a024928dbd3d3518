//===- GenerateCommand.h - trlc generate ------------------------*- C++ -*-===//
#ifndef TRLC_TOOLS_GENERATECOMMAND_H
#define TRLC_TOOLS_GENERATECOMMAND_H

#include <string>

namespace trlc::cli {

/// trlc generate ARTIFACT.trlc (--prompt TEXT | --prompts FILE.jsonl) ...:
/// completions from the artifact's generation programs (trlc/Generate.h),
/// with the initial weights or those of --model DIR. Returns the exit code;
/// sets `usage` to a usage error instead.
int generateCommand(int argc, char **argv, std::string &usage);

} // namespace trlc::cli

#endif // TRLC_TOOLS_GENERATECOMMAND_H
