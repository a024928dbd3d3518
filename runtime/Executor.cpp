//===- Executor.cpp - runs the programs of a plan on a backend ------------===//

#include "trlc/Executor.h"
#include "trlc/Comm.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace trlc {

Executor::Executor(const artifact::Plan &plan, Backend &backend, Communicator *comm)
    : plan_(plan), backend(backend), comm(comm) {
  const char *env = std::getenv("TRLC_PROFILE");
  profile = env && *env && std::string(env) != "0";
  for (const auto &[name, prog] : plan.programs)
    for (const artifact::KernelCall &c : prog.calls) {
      if (isCollective(c.kernel)) {
        int64_t world = c.attrs.value("world_size", int64_t(1));
        int64_t have = comm ? comm->size() : 1;
        if (world != have)
          throw KernelError("program " + name + " has a " + kernelName(c.kernel) + " over " +
                            std::to_string(world) + " ranks but this run has " +
                            std::to_string(have) + "; run with --nproc " + std::to_string(world));
        for (int t : c.in)
          if (t >= 0 && plan.tensors.at(t).dtype != artifact::DType::F32)
            throw KernelError(std::string(kernelName(c.kernel)) + " in program " + name +
                              " supports f32 tensors only");
      }
    }
  scratchBytes = planScratchBytes(plan, backend.scratchTarget());
  arena = backend.allocate(plan.arenaBytes);
  scratch = scratchBytes ? backend.allocate(scratchBytes) : nullptr;
  if (!arena || (scratchBytes && !scratch))
    throw KernelError("cannot allocate the " + std::to_string(plan.arenaBytes) +
                      "-byte arena the plan needs");
  if (plan.hostBytes > 0) {
    hostPool = backend.allocateHost(plan.hostBytes);
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
      list.push_back({c.kernel, std::move(args), isCollective(c.kernel)});
    }
  }
}

Executor::~Executor() {
  if (commThread.joinable()) {
    {
      std::lock_guard<std::mutex> lock(commMutex);
      commStop = true;
    }
    commReady.notify_all();
    commThread.join();
  }
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
  if (hostPool)
    backend.releaseHost(hostPool);
}

void *Backend::allocateHost(int64_t bytes) {
  void *p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (p)
    std::memset(p, 0, bytes);
  return p;
}

void Backend::releaseHost(void *ptr) { std::free(ptr); }

TensorRef Executor::tensor(int id) const {
  const artifact::TensorDesc &d = plan_.tensors.at(id);
  return {static_cast<char *>(d.host ? hostPool : arena) + d.offset, &d};
}

void Executor::read(const TensorRef &t, void *host, int64_t offsetBytes, int64_t bytes) {
  if (offsetBytes < 0 || bytes < 0 || offsetBytes + bytes > t.desc->bytes())
    throw KernelError("reading bytes [" + std::to_string(offsetBytes) + ", " +
                      std::to_string(offsetBytes + bytes) + ") of a " +
                      std::to_string(t.desc->bytes()) + "-byte tensor");
  backend.copy(host, static_cast<const char *>(t.data) + offsetBytes, bytes);
  backend.synchronize();
}

void Executor::write(const TensorRef &t, const void *host, int64_t bytes) {
  if (bytes > t.desc->bytes())
    throw KernelError("writing " + std::to_string(bytes) + " bytes to a " +
                      std::to_string(t.desc->bytes()) + "-byte tensor");
  backend.copy(t.data, host, bytes < 0 ? t.desc->bytes() : bytes);
}

void Executor::collective(const Call &call) {
  const Kernel kernel = call.kernel;
  const KernelArgs &args = call.args;
  const TensorRef &x = args.in[0], &y = args.out[0];
  float *out = y.as<float>();
  if (!comm || comm->size() == 1) {
    backend.copy(out, x.data, y.desc->bytes());
    return;
  }
  backend.synchronize();  // the kernels that wrote `x` have finished
  if (kernel == Kernel::AllReduce) {
    backend.copy(out, x.data, y.desc->bytes());
    comm->allReduceSum(out, y.numel());
    return;
  }
  bool prefetch = args.attrs->contains("prefetch");
  auto task = [this, kernel, x, out, n = y.numel()] {
    if (kernel == Kernel::AllGather)
      comm->allGather(x.as<float>(), out, x.numel());
    else  // reduce_scatter: its input is an activation nothing reads after
      comm->reduceScatterSum(x.as<float>(), out, n);
  };
  if (!commThread.joinable())
    commThread = std::thread([this] {
      for (;;) {
        std::packaged_task<void()> job;
        {
          std::unique_lock<std::mutex> lock(commMutex);
          commReady.wait(lock, [this] { return commStop || !commQueue.empty(); });
          if (commQueue.empty())
            return;
          job = std::move(commQueue.front());
          commQueue.pop_front();
        }
        job();
      }
    });
  std::packaged_task<void()> job(task);
  std::future<void> done = job.get_future();
  {
    std::lock_guard<std::mutex> lock(commMutex);
    commQueue.push_back(std::move(job));
  }
  commReady.notify_one();
  const char *lo = static_cast<const char *>(y.data);
  inFlight.push_back({std::move(done), lo, lo + y.desc->bytes()});
  if (!prefetch)
    settle(nullptr, true);
}

void Executor::settle(const KernelArgs *args, bool all) {
  size_t wait = 0;  // in order: the collectives finish in order anyway
  if (all) {
    wait = inFlight.size();
  } else {
    auto touches = [&](const InFlight &f) {
      for (const auto *list : {&args->in, &args->out})
        for (const TensorRef &t : *list) {
          if (!t)
            continue;
          const char *lo = static_cast<const char *>(t.data);
          if (lo < f.hi && f.lo < lo + t.desc->bytes())
            return true;
        }
      return false;
    };
    for (size_t i = 0; i < inFlight.size(); ++i)
      if (touches(inFlight[i]))
        wait = i + 1;
  }
  for (size_t i = 0; i < wait; ++i) {
    InFlight f = std::move(inFlight.front());
    inFlight.pop_front();
    f.done.get();  // rethrows a CommError
  }
}

void Executor::issue(const Call &c) {
  if (!inFlight.empty())
    settle(&c.args, false);
  if (c.collective)
    collective(c);
  else
    backend.run(c.kernel, c.args);
}

bool Executor::hasCollectives(const std::string &program) const {
  auto it = calls.find(program);
  return it != calls.end() &&
         std::any_of(it->second.begin(), it->second.end(), [](const Call &c) { return c.collective; });
}

void Executor::run(const std::string &program) {
  ++runCount;
  if (!profile) {
    if (replayed(program))
      return;
    for (const Call &c : calls.at(program))
      issue(c);
    settle(nullptr, true);
    backend.synchronize();
    return;
  }
  for (const Call &c : calls.at(program)) {
    auto t0 = std::chrono::steady_clock::now();
    issue(c);
    if (c.collective)
      settle(nullptr, true);
    backend.synchronize();
    kernelSeconds[kernelName(c.kernel)] +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
}

bool Executor::replayed(const std::string &program) {
  Recording &r = recordings[program];
  if (r.id >= 0) {
    backend.replay(r.id);
    backend.synchronize();
    return true;
  }
  // The first run warms up (library plans, lazily loaded kernels) with
  // plain launches; the second records and replays.
  if (r.off || !backend.canRecord() || ++r.runs < 2)
    return false;
  auto fallBack = [&](const std::string &why) {
    r.off = true;
    std::fprintf(stderr, "trlc: program %s runs with plain kernel launches, not a CUDA graph: %s\n",
                 program.c_str(), why.c_str());
    return false;
  };
  if (const char *env = std::getenv("TRLC_CUDA_GRAPHS"); env && std::string(env) == "0")
    return fallBack("TRLC_CUDA_GRAPHS=0");
  const std::vector<Call> &list = calls.at(program);
  if (comm && comm->size() > 1)
    for (const Call &c : list)
      if (c.collective)
        return fallBack(std::string("it has ") + kernelName(c.kernel) +
                        " collectives between processes");
  std::string why;
  backend.beginRecording();
  try {
    for (const Call &c : list)
      issue(c);
  } catch (const std::exception &e) {
    why = e.what();
  }
  std::string ended;
  int id = backend.endRecording(ended);
  if (!why.empty() || id < 0)
    return fallBack(why.empty() ? ended : why);
  r.id = id;
  backend.replay(id);
  backend.synchronize();
  return true;
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
