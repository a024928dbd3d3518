//===- Run.cpp - trlc run: an artifact from start to finish ---------------===//

#include "trlc/Run.h"
#include "trlc/Artifact.h"
#include "trlc/Backend.h"
#include "trlc/Comm.h"
#include "trlc/Executor.h"
#include "trlc/Launch.h"
#include "trlc/Trainer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

namespace fs = std::filesystem;

namespace trlc {

int runArtifact(const RunOptions &o) {
  const char *worldEnv = std::getenv("WORLD_SIZE");
  bool launched = worldEnv && *worldEnv;  // by `--nproc` or an outside launcher
  if (o.nproc > 1 && launched && std::to_string(o.nproc) != worldEnv) {
    std::cerr << "error: --nproc " << o.nproc << " but WORLD_SIZE is " << worldEnv
              << " (set by the launcher that started this process); drop --nproc\n";
    return 2;
  }
  try {
    auto read = artifact::readArtifact(o.artifact);
    if (!read)
      throw RunError(read.error().message);
    artifact::Artifact &a = *read;
    if (!o.outputDir.empty())
      a.plan.run.outputDir = fs::absolute(o.outputDir).string();
    int64_t compiled = a.manifest.worldSize;
    int64_t world = launched ? std::atoll(worldEnv) : std::max(1, o.nproc);
    if (world != compiled)
      throw RunError(o.artifact + ": error: compiled for " + std::to_string(compiled) +
                     " process(es) but run with " + std::to_string(world) +
                     "; compile again with --nproc " + std::to_string(world) +
                     " (the step count, LR schedule and sharding depend on it)");
    if (world > 1 && !launched)
      return launchRanks(o);
    int threads = o.threads > 0 ? o.threads
                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::unique_ptr<Backend> backend;
    if (o.device == "cuda") {
      const char *local = std::getenv("LOCAL_RANK");
      backend = makeCudaBackend(local && *local ? std::atoi(local) : 0);
    } else {
      backend = makeCpuBackend(threads);
    }
    std::unique_ptr<Communicator> comm = makeCommunicator(o.device);
    Executor ex(a.plan, *backend, comm.get());
    return train(o, a, ex, *comm);
  } catch (const RunError &e) {
    std::cerr << e.what() << "\n";
    return 1;
  } catch (const CommError &e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const KernelError &e) {
    std::cerr << o.artifact << ": error: " << e.what() << "\n";
    return 1;
  } catch (const nlohmann::json::exception &e) {
    std::cerr << o.artifact << "/plan.json: error: malformed run section (" << e.what()
              << "); recompile the artifact with `trlc compile`\n";
    return 1;
  } catch (const fs::filesystem_error &e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

} // namespace trlc
