//===- NcclComm.cpp - the NCCL communicator (GPU ranks) -------------------===//
//
// Collectives on device memory, on a stream of their own. Each call waits
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
    if (stream_)
      cudaStreamDestroy(stream_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }
  void allReduceSum(float *data, size_t n) override {
    nccl(ncclAllReduce(data, data, n, ncclFloat32, ncclSum, comm_, stream_), "all_reduce");
    wait("all_reduce");
  }
  void allReduceSum(double *data, size_t n) override {
    nccl(ncclAllReduce(data, data, n, ncclFloat64, ncclSum, comm_, stream_), "all_reduce");
    wait("all_reduce");
  }
  void allGather(const float *shard, float *out, size_t count) override {
    nccl(ncclAllGather(shard, out, count, ncclFloat32, comm_, stream_), "all_gather");
    wait("all_gather");
  }
  void reduceScatterSum(float *in, float *out, size_t count) override {
    nccl(ncclReduceScatter(in, out, count, ncclFloat32, ncclSum, comm_, stream_),
         "reduce_scatter");
    wait("reduce_scatter");
  }
  void barrier() override { allReduceSum(one_, 1); }

private:
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
