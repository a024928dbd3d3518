//===- Launch.cpp - the processes of a run --------------------------------===//

#include "trlc/Launch.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>
#include <vector>

namespace trlc {

int launchRanks(const RunOptions &o) {
  char dirTemplate[] = "/tmp/trlc-rendezvous-XXXXXX";
  if (!mkdtemp(dirTemplate)) {
    std::cerr << "error: cannot create a rendezvous directory in /tmp\n";
    return 1;
  }
  std::string dir = dirTemplate;
  int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int threads = o.threads > 0 ? o.threads : std::max(1, hw / o.nproc);
  std::vector<std::string> args = {"trlc", "run", o.artifact, "--threads",
                                   std::to_string(threads)};
  if (o.maxSteps > 0)
    args.insert(args.end(), {"--max-steps", std::to_string(o.maxSteps)});
  if (o.quiet)
    args.push_back("--quiet");
  if (!o.dumpInitial.empty())
    args.insert(args.end(), {"--dump-initial", o.dumpInitial});
  if (!o.dumpGradients.empty())
    args.insert(args.end(), {"--dump-gradients", o.dumpGradients});
  if (!o.resume.empty())
    args.insert(args.end(), {"--resume", o.resume});
  if (!o.outputDir.empty())
    args.insert(args.end(), {"--output-dir", o.outputDir});
  if (o.device != "cpu")
    args.insert(args.end(), {"--device", o.device});
  std::vector<pid_t> pids;
  pid_t launcher = getpid();
  for (int r = 0; r < o.nproc; ++r) {
    pid_t pid = fork();
    if (pid < 0) {
      std::cerr << "error: cannot start process " << r << "\n";
      for (pid_t p : pids)
        kill(p, SIGTERM);
      return 1;
    }
    if (pid == 0) {
      // A rank ends with its launcher, even one killed with SIGKILL (the
      // signal survives the exec); a launcher that died before this line
      // is caught by the parent check.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != launcher)
        std::_Exit(1);
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      setenv("TRLC_RENDEZVOUS_DIR", dir.c_str(), 1);
      std::vector<char *> argv;
      for (std::string &a : args)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      execv("/proc/self/exe", argv.data());
      std::_Exit(127);
    }
    pids.push_back(pid);
  }
  int rc = 0;
  size_t running = pids.size();
  while (running > 0) {
    int status = 0;
    pid_t done = waitpid(-1, &status, 0);
    if (done < 0)
      break;
    --running;
    int r = static_cast<int>(std::find(pids.begin(), pids.end(), done) - pids.begin());
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && rc == 0) {
      rc = 1;
      std::cerr << "error: rank " << r << " of " << o.nproc << " "
                << (WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                        : "exited with status " + std::to_string(WEXITSTATUS(status)))
                << "; stopping the other ranks\n";
      for (pid_t p : pids)
        if (p != done)
          kill(p, SIGTERM);
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return rc;
}

void preferPassiveOpenMP(char **argv) {
  if (std::getenv("OMP_WAIT_POLICY"))
    return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);
}

} // namespace trlc
