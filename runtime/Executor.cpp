//===- Executor.cpp - runs the programs of a plan on a backend ------------===//

#include "trlc/Executor.h"

#include <cstring>

namespace trlc {

Executor::Executor(const artifact::Plan &plan, Backend &backend)
    : plan_(plan), backend(backend) {
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
  backend.release(arena);
  if (scratch)
    backend.release(scratch);
}

TensorRef Executor::tensor(int id) const {
  const artifact::TensorDesc &d = plan_.tensors.at(id);
  return {static_cast<char *>(arena) + d.offset, &d};
}

void Executor::run(const std::string &program) {
  for (auto &[kernel, args] : calls.at(program))
    backend.run(kernel, args);
  backend.synchronize();
}

TensorRef Executor::input(const std::string &program,
                          const std::string &name) const {
  const auto &inputs = plan_.programs.at(program).inputs;
  auto it = inputs.find(name);
  if (it == inputs.end())
    throw KernelError("program " + program + " has no input '" + name + "'");
  return tensor(it->second);
}

TensorRef Executor::output(const std::string &program,
                           const std::string &name) const {
  const auto &outputs = plan_.programs.at(program).outputs;
  auto it = outputs.find(name);
  if (it == outputs.end())
    throw KernelError("program " + program + " has no output '" + name + "'");
  return tensor(it->second);
}

} // namespace trlc
