//===- Comm.cpp - communicators for data-parallel runs --------------------===//

#include "trlc/Comm.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>

#ifdef TRLC_HAVE_GLOO
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>
#endif

namespace trlc {
namespace {

class NoComm : public Communicator {
public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "none"; }
  void allReduceSum(float *, size_t) override {}
  void allReduceSum(double *, size_t) override {}
  void allGather(const float *shard, float *out, size_t count) override {
    std::copy(shard, shard + count, out);
  }
  void reduceScatterSum(float *in, float *out, size_t count) override {
    std::copy(in, in + count, out);
  }
  void barrier() override {}
};

#ifdef TRLC_HAVE_GLOO
class GlooComm : public Communicator {
public:
  GlooComm(int rank, int size, const std::string &dir, int timeoutSeconds) {
    // A peer that died closes its sockets: writing to one must fail the
    // collective with an error, not kill this process with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    try {
      gloo::transport::tcp::attr attr;
      const char *host = std::getenv("TRLC_HOST");
      attr.hostname = host && *host ? host : "127.0.0.1";
      device_ = gloo::transport::tcp::CreateDevice(attr);
      gloo::rendezvous::FileStore files(dir);
      gloo::rendezvous::PrefixStore store("trlc", files);
      context_ = std::make_shared<gloo::rendezvous::Context>(rank, size);
      context_->setTimeout(std::chrono::seconds(timeoutSeconds));
      context_->connectFullMesh(store, device_);
    } catch (const std::exception &e) {
      throw CommError("rank " + std::to_string(rank) + ": cannot connect to the other " +
                      std::to_string(size - 1) + " ranks through " + dir + " within " +
                      std::to_string(timeoutSeconds) + " s: " + e.what());
    }
  }
  int rank() const override { return context_->rank; }
  int size() const override { return context_->size; }
  std::string name() const override { return "gloo"; }
  void allReduceSum(float *data, size_t n) override { reduce(data, n); }
  void allReduceSum(double *data, size_t n) override { reduce(data, n); }
  void allGather(const float *shard, float *out, size_t count) override {
    try {
      gloo::AllgatherOptions opts(context_);
      opts.setInput(const_cast<float *>(shard), count);
      opts.setOutput(out, count * context_->size);
      gloo::allgather(opts);
    } catch (const std::exception &e) {
      fail(e);
    }
  }
  void reduceScatterSum(float *in, float *out, size_t count) override {
    reduce(in, count * context_->size);
    const float *mine = in + count * context_->rank;
    std::copy(mine, mine + count, out);
  }
  void barrier() override {
    try {
      gloo::BarrierOptions opts(context_);
      gloo::barrier(opts);
    } catch (const std::exception &e) {
      fail(e);
    }
  }

private:
  template <typename T> void reduce(T *data, size_t n) {
    if (n == 0)
      return;
    try {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data, n);
      void (*sum)(void *, const void *, const void *, size_t) = &gloo::sum<T>;
      opts.setReduceFunction(sum);
      gloo::allreduce(opts);
    } catch (const std::exception &e) {
      fail(e);
    }
  }
  [[noreturn]] void fail(const std::exception &e) {
    throw CommError("rank " + std::to_string(context_->rank) +
                    ": a collective with the other ranks failed (did a rank exit or "
                    "stop responding?): " + e.what());
  }
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::rendezvous::Context> context_;
};
#endif

int envInt(const char *name, int fallback) {
  const char *v = std::getenv(name);
  if (!v || !*v)
    return fallback;
  char *end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end || x < 0)
    throw CommError(std::string(name) + "='" + v + "' is not a non-negative integer");
  return static_cast<int>(x);
}

} // namespace

std::unique_ptr<Communicator> makeCommunicator() {
  int size = envInt("WORLD_SIZE", 1);
  if (size <= 1)
    return std::make_unique<NoComm>();
  int rank = envInt("RANK", -1);
  if (rank < 0 || rank >= size)
    throw CommError("WORLD_SIZE is " + std::to_string(size) +
                    " but RANK is unset or out of range; set RANK to 0.." +
                    std::to_string(size - 1));
  const char *dir = std::getenv("TRLC_RENDEZVOUS_DIR");
  if (!dir || !*dir)
    throw CommError("WORLD_SIZE is " + std::to_string(size) +
                    " but TRLC_RENDEZVOUS_DIR is unset: the ranks meet through a "
                    "directory they all see (a shared filesystem across machines); "
                    "`trlc run --nproc N` sets it for local runs");
#ifdef TRLC_HAVE_GLOO
  return std::make_unique<GlooComm>(rank, size, dir, envInt("TRLC_COMM_TIMEOUT", 60));
#else
  throw CommError("this trlc was built without Gloo (libgloo-dev), so it cannot run "
                  "several processes");
#endif
}

} // namespace trlc
