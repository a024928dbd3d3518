//===- trlc-runtime.cpp - trlc built without the compiler -----------------===//
//
// With -DTRLC_COMPILER=OFF (a GPU machine without MLIR), `trlc` runs and
// inspects artifacts compiled elsewhere:  trlc run OUT.trlc [options]
//
//===----------------------------------------------------------------------===//

#include "tools/RunCommands.h"
#include "trlc/Launch.h"

#include <iostream>
#include <string>

int main(int argc, char **argv) {
  const char *usage =
      "usage: trlc run ARTIFACT.trlc [--device cpu|cuda] [--output-dir DIR] [--max-steps N]\n"
      "                [--nproc N] [--threads N] [--quiet] [--resume CHECKPOINT]\n"
      "                [--dump-initial FILE] [--dump-gradients FILE]\n"
      "       trlc inspect ARTIFACT.trlc [--memory] [--json] [--timeline FILE.svg]\n"
      "       trlc merge ADAPTER_DIR -o OUT_DIR [--base DIR]\n"
      "(this trlc was built with TRLC_COMPILER=OFF: compile recipes with a\n"
      "full build and copy the artifact here)\n";
  std::string command = argc > 1 ? argv[1] : "";
  if (command == "-h" || command == "--help" || command == "help") {
    std::cout << usage;
    return 0;
  }
  if (command == "merge") {
    std::string err;
    int rc = trlc::cli::mergeCommand(argc, argv, err);
    if (err.empty())
      return rc;
    std::cerr << "trlc: error: " << err << "\n\n" << usage;
    return 2;
  }
  if (command == "run" || command == "inspect") {
    if (command == "run")
      trlc::preferPassiveOpenMP(argv);
    std::string err;
    int rc = command == "run" ? trlc::cli::runCommand(argc, argv, err)
                              : trlc::cli::inspectCommand(argc, argv, err);
    if (err.empty())
      return rc;
    std::cerr << "trlc: error: " << err << "\n\n" << usage;
    return 2;
  }
  std::cerr << "trlc: error: "
            << (command.empty() ? std::string("missing command")
                                : "'" + command + "' needs the compiler, and "
                                  "this trlc was built with TRLC_COMPILER=OFF")
            << "\n\n" << usage;
  return 2;
}
