//===- NcclComm.cpp - the NCCL communicator (GPU ranks) -------------------===//
//
// Collectives on device memory, on a stream of their own. NCCL reads and
// writes device memory only: host buffers (the trainer's loss totals, the
// gathers that build a checkpoint) pass through a device buffer of the
// communicator's own. Each call waits
// for its collective by polling, so a peer that died or hangs is noticed:
// NCCL's asynchronous error, or TRLC_COMM_TIMEOUT seconds without progress,
// aborts the communicator and throws CommError instead of hanging.
//
//===----------------------------------------------------------------------===//

#include "trlc/Comm.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace trlc {
namespace {

class NcclComm : public Communicator {
public:
  NcclComm(int rank, int size, const std::vector<char> &idBytes, int timeoutSeconds)
      : rank_(rank), size_(size), timeout_(timeoutSeconds) {
    ncclUniqueId id;
    if (idBytes.size() != sizeof id)
      throw CommError("the NCCL id from the rendezvous has " + std::to_string(idBytes.size()) +
                      " bytes, not " + std::to_string(sizeof id));
    std::memcpy(&id, idBytes.data(), sizeof id);
    cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating its stream");
    cuda(cudaMalloc(&one_, sizeof(float)), "allocating the barrier word");
    nccl(ncclCommInitRank(&comm_, size, id, rank), "joining the other ranks");
  }
  ~NcclComm() override {
    if (comm_)
      ncclCommDestroy(comm_);
    if (one_)
      cudaFree(one_);
    if (staging_)
      cudaFree(staging_);
    if (stream_)
      cudaStreamDestroy(stream_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }
  void allReduceSum(float *data, size_t n) override {
    run("all_reduce", data, n * sizeof(float), data, n * sizeof(float),
        [&](const void *in, void *out) {
          return ncclAllReduce(in, out, n, ncclFloat32, ncclSum, comm_, stream_);
        });
  }
  void allReduceSum(double *data, size_t n) override {
    run("all_reduce", data, n * sizeof(double), data, n * sizeof(double),
        [&](const void *in, void *out) {
          return ncclAllReduce(in, out, n, ncclFloat64, ncclSum, comm_, stream_);
        });
  }
  void allGather(const float *shard, float *out, size_t count) override {
    run("all_gather", shard, count * sizeof(float), out, count * sizeof(float) * size_,
        [&](const void *in, void *to) {
          return ncclAllGather(in, to, count, ncclFloat32, comm_, stream_);
        });
  }
  void reduceScatterSum(float *in, float *out, size_t count) override {
    run("reduce_scatter", in, count * sizeof(float) * size_, out, count * sizeof(float),
        [&](const void *from, void *to) {
          return ncclReduceScatter(from, to, count, ncclFloat32, ncclSum, comm_, stream_);
        });
  }
  void barrier() override { allReduceSum(one_, 1); }

private:
  /// Issues one NCCL call, `issue(in, out)`, and waits for it. Host
  /// buffers pass through the staging buffer: `in` (inBytes) is copied in
  /// first and `out` (outBytes) back after; the same buffer when in place.
  template <typename Issue>
  void run(const char *what, const void *in, size_t inBytes, void *out, size_t outBytes,
           Issue issue) {
    if (onDevice(in) && onDevice(out)) {
      nccl(issue(in, out), what);
      return wait(what);
    }
    bool inPlace = in == out;
    char *from = staging(inPlace ? inBytes : inBytes + outBytes);
    char *to = inPlace ? from : from + inBytes;
    cuda(cudaMemcpyAsync(from, in, inBytes, cudaMemcpyDefault, stream_), "staging a host buffer");
    nccl(issue(from, to), what);
    wait(what);
    cuda(cudaMemcpyAsync(out, to, outBytes, cudaMemcpyDefault, stream_), "staging a host buffer");
    cuda(cudaStreamSynchronize(stream_), "staging a host buffer");
  }
  static bool onDevice(const void *p) {
    cudaPointerAttributes a{};
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
  }
  /// The communicator's device buffer, grown to `bytes`.
  char *staging(size_t bytes) {
    if (bytes > stagingBytes_) {
      if (staging_)
        cuda(cudaFree(staging_), "freeing its staging buffer");
      staging_ = nullptr;
      cuda(cudaMalloc(&staging_, bytes), "allocating a staging buffer for host memory");
      stagingBytes_ = bytes;
    }
    return static_cast<char *>(staging_);
  }
  void cuda(cudaError_t e, const char *what) {
    if (e != cudaSuccess)
      throw CommError("rank " + std::to_string(rank_) + ": CUDA error " + what + ": " +
                      cudaGetErrorString(e));
  }
  void nccl(ncclResult_t r, const char *what) {
    if (r != ncclSuccess && r != ncclInProgress)
      throw CommError("rank " + std::to_string(rank_) + ": NCCL " + what + " failed: " +
                      ncclGetErrorString(r));
  }
  /// Until the stream is idle; a dead or stuck peer aborts the communicator.
  void wait(const char *what) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_);
    for (;;) {
      cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess)
        return;
      if (e != cudaErrorNotReady)
        cuda(e, what);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      bool late = std::chrono::steady_clock::now() > deadline;
      if (async != ncclSuccess || late) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        throw CommError("rank " + std::to_string(rank_) + ": NCCL " + what +
                        (late ? " made no progress for " + std::to_string(timeout_) +
                                    " s (did a rank exit or stop responding?)"
                              : std::string(" failed: ") + ncclGetErrorString(async)));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  int rank_, size_, timeout_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  float *one_ = nullptr;
  void *staging_ = nullptr;
  size_t stagingBytes_ = 0;
};

} // namespace

std::vector<char> ncclIdBytes() {
  ncclUniqueId id;
  ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess)
    throw CommError(std::string("NCCL cannot make a communicator id: ") + ncclGetErrorString(r));
  return std::vector<char>(reinterpret_cast<char *>(&id), reinterpret_cast<char *>(&id) + sizeof id);
}

std::unique_ptr<Communicator> makeNcclComm(int rank, int size, const std::vector<char> &id,
                                           int timeoutSeconds) {
  return std::make_unique<NcclComm>(rank, size, id, timeoutSeconds);
}

} // namespace trlc
