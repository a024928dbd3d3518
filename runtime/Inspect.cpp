//===- Inspect.cpp - trlc inspect: read what an artifact will do ----------===//

#include "trlc/Artifact.h"
#include "trlc/Kernels.h"
#include "trlc/MemoryReport.h"
#include "trlc/Trainer.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace trlc {

int inspectCommand(int argc, char **argv, std::string &err) {
  std::string artifactDir, timeline;
  bool asJson = false, memory = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--memory") {
      memory = true;
    } else if (a == "--json") {
      asJson = true;
    } else if (a == "--timeline" || a.rfind("--timeline=", 0) == 0) {
      if (a == "--timeline") {
        if (i + 1 >= argc) {
          err = "--timeline needs a file name: --timeline FILE.svg";
          return 2;
        }
        timeline = argv[++i];
      } else {
        timeline = a.substr(11);
      }
    } else if (!a.empty() && a[0] == '-') {
      err = "unknown option '" + a + "' (inspect takes --memory, --json, --timeline FILE.svg)";
      return 2;
    } else if (artifactDir.empty()) {
      artifactDir = a;
    } else {
      err = "more than one artifact given ('" + artifactDir + "' and '" + a + "')";
      return 2;
    }
  }
  if (artifactDir.empty()) {
    err = "inspect needs an artifact: trlc inspect OUT.trlc --memory";
    return 2;
  }
  (void)memory;  // the memory plan is what inspect shows today
  artifact::Plan plan;
  std::string error;
  if (!artifact::readPlan(artifactDir, plan, error)) {
    std::cerr << error << "\n";
    return 1;
  }
  MemoryReport report = memoryReport(plan, planScratchBytes(plan, {ScratchTarget::Cpu, 1}));

  // What each memory pass changed, recorded by the compiler.
  json passes = json::array();
  fs::path memoryPlan = fs::path(artifactDir) / "memory_plan.json";
  if (fs::exists(memoryPlan)) {
    try {
      json mp = json::parse(std::ifstream(memoryPlan));
      passes = mp.value("passes", json::array());
    } catch (const std::exception &) {
    }
  }

  if (!timeline.empty()) {
    std::ofstream out(timeline);
    out << memoryTimelineSvg(report, fs::path(artifactDir).filename().string());
    if (!out) {
      std::cerr << timeline << ": error: cannot write the timeline\n";
      return 1;
    }
  }
  if (asJson) {
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
      std::snprintf(line, sizeof line, "  %-24s %14lld bytes\n",
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
