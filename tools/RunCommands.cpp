//===- RunCommands.cpp - trlc run and trlc inspect ------------------------===//

#include "tools/RunCommands.h"
#include "trlc/Inspect.h"
#include "trlc/Merge.h"

#include <iostream>

#include <limits>
#include <algorithm>
#include <thread>

namespace trlc::cli {

namespace {
/// An option's value into `field`.
auto text(std::string &field) {
  return [&field](const std::string &v) {
    field = v;
    return std::string();
  };
}
} // namespace

Options runOptions(RunOptions &r) {
  Options o;
  o.value("--device",
          [&r](const std::string &v) {
            if (v != "cpu" && v != "cuda")
              return "--device must be cpu or cuda, got '" + v + "'";
            r.device = v;
            return std::string();
          })
      .value("--output-dir",
             [&r](const std::string &v) {
               if (v.empty())
                 return std::string("--output-dir needs a directory");
               r.outputDir = v;
               return std::string();
             })
      .value("--max-steps",
             [&r](const std::string &v) {
               return positiveInteger("--max-steps", v, std::numeric_limits<int64_t>::max(),
                                      "steps", r.maxSteps);
             })
      .value("--nproc",
             [&r](const std::string &v) {
               int64_t n = 0;
               std::string err = positiveInteger("--nproc", v, 256, "local processes", n);
               r.nproc = static_cast<int>(n);
               return err;
             })
      .value("--threads", [&r](const std::string &v) { return threadCount(v, r.threads); })
      .flag("--quiet", [&r] { r.quiet = true; })
      .value("--resume", text(r.resume))
      .value("--dump-initial", text(r.dumpInitial))
      .value("--dump-gradients", text(r.dumpGradients));
  return o;
}

int runCommand(int argc, char **argv, std::string &usage) {
  RunOptions r;
  Options o = runOptions(r);
  o.positional([&r](const std::string &arg) {
     if (!r.artifact.empty())
       return "more than one artifact given ('" + r.artifact + "' and '" + arg + "')";
     r.artifact = arg;
     return std::string();
   }).unknown([](const std::string &arg, const std::vector<std::string> &names) {
    std::string list;
    for (const std::string &n : names)
      list += (list.empty() ? "" : ", ") + n;
    return "unknown option '" + arg + "' (run takes " + list + ")";
  });
  usage = o.parse(argc, argv, 2);
  if (usage.empty() && r.artifact.empty())
    usage = "run needs an artifact: trlc run OUT.trlc";
  return usage.empty() ? runArtifact(r) : 2;
}

int inspectCommand(int argc, char **argv, std::string &usage) {
  InspectOptions r;
  Options o;
  o.flag("--memory", [] {})  // the memory plan is what inspect shows
      .flag("--json", [&r] { r.json = true; })
      .value("--timeline",
             [&r](const std::string &v) {
               r.timeline = v;
               return std::string();
             })
      .positional([&r](const std::string &arg) {
        if (!r.artifact.empty())
          return "more than one artifact given ('" + r.artifact + "' and '" + arg + "')";
        r.artifact = arg;
        return std::string();
      })
      .unknown([](const std::string &arg, const std::vector<std::string> &) {
        return "unknown option '" + arg + "' (inspect takes --memory, --json, --timeline FILE.svg)";
      });
  usage = o.parse(argc, argv, 2);
  if (usage.empty() && r.artifact.empty())
    usage = "inspect needs an artifact: trlc inspect OUT.trlc --memory";
  return usage.empty() ? inspectArtifact(r) : 2;
}

int mergeCommand(int argc, char **argv, std::string &usage) {
  MergeOptions m;
  Options o;
  o.value("-o", text(m.output))
      .value("--output", text(m.output))
      .value("--base", text(m.base))
      .positional([&m](const std::string &arg) {
        if (!m.adapter.empty())
          return "more than one adapter given ('" + m.adapter + "' and '" + arg + "')";
        m.adapter = arg;
        return std::string();
      })
      .unknown([](const std::string &arg, const std::vector<std::string> &) {
        return "unknown option '" + arg + "' (merge takes -o OUT_DIR and --base DIR)";
      });
  usage = o.parse(argc, argv, 2);
  if (usage.empty() && (m.adapter.empty() || m.output.empty()))
    usage = "merge needs an adapter and an output: trlc merge ADAPTER_DIR -o OUT_DIR";
  if (!usage.empty())
    return 2;
  try {
    int n = mergeAdapter(m);
    std::cout << "merged " << n << " adapted weights into " << m.output << "\n";
    return 0;
  } catch (const RunError &e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}

} // namespace trlc::cli
