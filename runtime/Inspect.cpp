//===- Inspect.cpp - trlc inspect: read what an artifact will do ----------===//

#include "trlc/Artifact.h"
#include "trlc/Files.h"
#include "trlc/Kernels.h"
#include "trlc/MemoryReport.h"
#include "trlc/Inspect.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace trlc {

int inspectArtifact(const InspectOptions &o) {
  const std::string &artifactDir = o.artifact;
  const std::string &timeline = o.timeline;
  auto read = artifact::readArtifact(artifactDir);
  if (!read) {
    std::cerr << read.error().message << "\n";
    return 1;
  }
  const artifact::Plan &plan = read->plan;
  MemoryReport report = memoryReport(plan, planScratchBytes(plan, {ScratchTarget::Cpu, 1}),
                                     read->manifest.worldSize);
  // What each memory pass changed, recorded by the compiler.
  json passes = json::array();
  fs::path memoryPlan = fs::path(artifactDir) / "memory_plan.json";
  if (pathExists(memoryPlan)) {
    try {
      json mp = json::parse(std::ifstream(memoryPlan));
      passes = mp.value("passes", json::array());
    } catch (const std::exception &) {
    }
  }

  if (!timeline.empty()) {
    if (auto err = writeFileAtomic(
            timeline, memoryTimelineSvg(report, fs::path(artifactDir).filename().string()))) {
      std::cerr << timeline << ": error: cannot write the timeline: " << *err << "\n";
      return 1;
    }
  }
  if (o.json) {
    json j = memoryReportJson(report);
    j["passes"] = passes;
    std::cout << j.dump(1) << "\n";
    return 0;
  }
  std::cout << memoryReportText(report);
  if (!passes.empty()) {
    std::cout << "effect of each memory pass (planned device bytes, cpu):\n";
    for (const json &p : passes) {
      char line[200];
      std::snprintf(line, sizeof line, "  %-40s %14lld bytes\n",
                    p.value("pass", "").c_str(),
                    static_cast<long long>(p.value("device_bytes", int64_t(0))));
      std::cout << line;
    }
  }
  if (!timeline.empty())
    std::cout << "timeline written to " << timeline << "\n";
  return 0;
}

} // namespace trlc
