//===- Executor.cpp - runs the programs of a plan on a backend ------------===//

#include "trlc/Executor.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace trlc {

Executor::Executor(const artifact::Plan &plan, Backend &backend)
    : plan_(plan), backend(backend) {
  const char *env = std::getenv("TRLC_PROFILE");
  profile = env && *env && std::string(env) != "0";
  for (const auto &[name, prog] : plan.programs)
    for (const artifact::KernelCall &c : prog.calls) {
      if (!backend.supports(c.kernel))
        throw KernelError("the " + backend.name() + " backend cannot run kernel '" +
                          c.kernel + "' of program " + name);
      scratchBytes = std::max(scratchBytes, backend.scratchBytes(c, plan));
    }
  arena = backend.allocate(plan.arenaBytes);
  scratch = scratchBytes ? backend.allocate(scratchBytes) : nullptr;
  if (!arena || (scratchBytes && !scratch))
    throw KernelError("cannot allocate the " + std::to_string(plan.arenaBytes) +
                      "-byte arena the plan needs");
  std::memset(arena, 0, plan.arenaBytes);
  if (plan.hostBytes > 0) {
    hostPool = std::aligned_alloc(64, (plan.hostBytes + 63) / 64 * 64);
    if (!hostPool)
      throw KernelError("cannot allocate the " + std::to_string(plan.hostBytes) +
                        "-byte host pool the plan needs");
  }
  for (const auto &[name, prog] : plan.programs) {
    auto &list = calls[name];
    for (const artifact::KernelCall &c : prog.calls) {
      KernelArgs args;
      for (int t : c.in)
        args.in.push_back(t < 0 ? TensorRef{} : tensor(t));
      for (int t : c.out)
        args.out.push_back(tensor(t));
      args.attrs = &c.attrs;
      args.scratch = scratch;
      list.push_back({c.kernel, std::move(args)});
    }
  }
}

Executor::~Executor() {
  if (profile) {
    std::vector<std::pair<double, std::string>> rows;
    double total = 0;
    for (auto &[k, t] : kernelSeconds) {
      rows.push_back({t, k});
      total += t;
    }
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr, "kernel time (TRLC_PROFILE):\n");
    for (auto &[t, k] : rows)
      std::fprintf(stderr, "  %-34s %9.3f s  %5.1f%%\n", k.c_str(), t, 100 * t / total);
  }
  backend.release(arena);
  if (scratch)
    backend.release(scratch);
  std::free(hostPool);
}

TensorRef Executor::tensor(int id) const {
  const artifact::TensorDesc &d = plan_.tensors.at(id);
  return {static_cast<char *>(d.host ? hostPool : arena) + d.offset, &d};
}

void Executor::run(const std::string &program) {
  if (!profile) {
    for (auto &[kernel, args] : calls.at(program))
      backend.run(kernel, args);
    backend.synchronize();
    return;
  }
  for (auto &[kernel, args] : calls.at(program)) {
    auto t0 = std::chrono::steady_clock::now();
    backend.run(kernel, args);
    backend.synchronize();
    kernelSeconds[kernel] +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
}

TensorRef Executor::named(const std::string &program, bool input,
                          const std::string &name) const {
  const artifact::Program &p = plan_.programs.at(program);
  const auto &names = input ? p.inputs : p.outputs;
  auto it = names.find(name);
  if (it == names.end())
    throw KernelError("program " + program + " has no " +
                      (input ? "input" : "output") + " '" + name + "'");
  return tensor(it->second);
}

} // namespace trlc
