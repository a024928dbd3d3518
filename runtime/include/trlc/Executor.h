//===- Executor.h - runs the programs of a plan on a backend ----*- C++ -*-===//

#ifndef TRLC_RUNTIME_EXECUTOR_H
#define TRLC_RUNTIME_EXECUTOR_H

#include "trlc/Backend.h"

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

namespace trlc {

class Communicator;

/// Owns the plan's arena. Everything a step needs is allocated and resolved
/// when the executor is built: running a program allocates nothing.
/// TRLC_PROFILE=1 in the environment prints the time spent per kernel.
/// On a backend that records (CUDA graphs), a program runs call by call the
/// first time, is recorded the second and replayed from then on;
/// TRLC_CUDA_GRAPHS=0 keeps every run call by call.
class Executor {
public:
  /// Collectives of the plan (all_gather, reduce_scatter, all_reduce) go
  /// through `comm`; without one they run as a world of one process.
  Executor(const artifact::Plan &plan, Backend &backend, Communicator *comm = nullptr);
  ~Executor();
  Executor(const Executor &) = delete;
  Executor &operator=(const Executor &) = delete;

  void run(const std::string &program);
  /// Programs run so far (a caller that keeps values in the activation
  /// region between its own programs sees whether another ran since).
  uint64_t runs() const { return runCount; }
  bool hasProgram(const std::string &program) const {
    return calls.count(program) > 0;
  }
  /// Whether `program` runs collectives: every rank must then run it the
  /// same number of times.
  bool hasCollectives(const std::string &program) const;
  /// The ranks (null: one process).
  Communicator *communicator() const { return comm; }
  TensorRef tensor(int id) const;
  /// A program input or output by name; throws when the plan has none.
  TensorRef input(const std::string &program, const std::string &name) const {
    return named(program, true, name);
  }
  TensorRef output(const std::string &program, const std::string &name) const {
    return named(program, false, name);
  }
  bool hasInput(const std::string &program, const std::string &name) const {
    auto it = plan_.programs.find(program);
    return it != plan_.programs.end() && it->second.inputs.count(name) > 0;
  }
  bool hasOutput(const std::string &program, const std::string &name) const {
    auto it = plan_.programs.find(program);
    return it != plan_.programs.end() && it->second.outputs.count(name) > 0;
  }
  /// The host reaches tensors only through these: the arena may be device
  /// memory it cannot address. read() waits for the kernels issued before
  /// it; write() (of the first `bytes`, -1: all) is ordered before the next
  /// program. `from` and `count` are in elements of T (count -1: to the end).
  void read(const TensorRef &t, void *host, int64_t offsetBytes, int64_t bytes);
  void write(const TensorRef &t, const void *host, int64_t bytes = -1);
  template <typename T>
  std::vector<T> read(const TensorRef &t, int64_t from = 0, int64_t count = -1) {
    if (count < 0)
      count = t.desc->bytes() / static_cast<int64_t>(sizeof(T)) - from;
    std::vector<T> v(count);
    read(t, v.data(), from * sizeof(T), count * sizeof(T));
    return v;
  }
  template <typename T> T scalar(const TensorRef &t) { return read<T>(t, 0, 1)[0]; }
  template <typename T> void setScalar(const TensorRef &t, T value) {
    write(t, &value, sizeof(T));
  }
  const artifact::Plan &plan() const { return plan_; }
  int64_t reservedBytes() const { return plan_.arenaBytes + scratchBytes; }
  /// What the backend has measured holding at most.
  int64_t allocatedPeakBytes() const { return backend.allocatedPeakBytes(); }

private:
  struct Call {
    Kernel kernel;
    KernelArgs args;
    bool collective;  // through the communicator, not the backend
  };
  /// Runs one call: on the backend, or a collective through `comm`.
  void issue(const Call &call);
  void collective(const Call &call);
  /// Runs `program` as a recorded whole (CUDA graph) when the backend can;
  /// false when it must be issued call by call.
  bool replayed(const std::string &program);
  /// Waits for in-flight prefetched collectives that write what `args`
  /// touches (all of them when `all`).
  void settle(const KernelArgs *args, bool all);
  TensorRef named(const std::string &program, bool input,
                  const std::string &name) const;

  const artifact::Plan &plan_;
  Backend &backend;
  void *arena = nullptr;
  void *scratch = nullptr;
  void *hostPool = nullptr;  // offloaded activations (host memory)
  int64_t scratchBytes = 0;
  std::map<std::string, std::vector<Call>> calls;
  Communicator *comm = nullptr;
  uint64_t runCount = 0;
  /// One thread issues every collective, in plan order (all ranks must
  /// issue them in the same order); prefetched gathers (attribute
  /// `prefetch`) run there while the next kernels compute.
  struct InFlight {
    std::future<void> done;
    const char *lo, *hi;  // the bytes it writes
  };
  std::deque<InFlight> inFlight;
  std::thread commThread;
  std::mutex commMutex;
  std::condition_variable commReady;
  std::deque<std::packaged_task<void()>> commQueue;
  bool commStop = false;
  bool profile = false;  // TRLC_PROFILE=1: time every kernel, print at exit
  struct Recording {
    int runs = 0;      // plain runs so far
    int id = -1;       // the backend's recording, once made
    bool off = false;  // this program cannot be recorded
  };
  std::map<std::string, Recording> recordings;
  std::map<std::string, double> kernelSeconds;
};

} // namespace trlc

#endif // TRLC_RUNTIME_EXECUTOR_H
