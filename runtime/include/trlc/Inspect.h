//===- Inspect.h - trlc inspect: what an artifact will do -------*- C++ -*-===//

#ifndef TRLC_RUNTIME_INSPECT_H
#define TRLC_RUNTIME_INSPECT_H

#include <string>

namespace trlc {

struct InspectOptions {
  std::string artifact;
  bool json = false;      // the report as JSON instead of text
  std::string timeline;   // write an SVG of live bytes over the step here
};

/// The artifact's memory plan (trlc/MemoryReport.h) and the effect of each
/// memory pass the compiler recorded; returns the exit code.
int inspectArtifact(const InspectOptions &options);

} // namespace trlc

#endif // TRLC_RUNTIME_INSPECT_H
