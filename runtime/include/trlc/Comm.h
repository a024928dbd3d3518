//===- Comm.h - communicators for data-parallel runs ------------*- C++ -*-===//
//
// One interface, implemented by the existing collective libraries (never a
// home-made transport): none (one process), Gloo (CPU processes over TCP)
// and NCCL (GPUs; built with the CUDA toolkit). A process learns its place from the torchrun variables RANK and
// WORLD_SIZE; the ranks meet through a rendezvous directory
// (TRLC_RENDEZVOUS_DIR: `trlc run --nproc N` makes one; a shared
// filesystem path for other launchers). Collectives give up after
// TRLC_COMM_TIMEOUT seconds (default 60) with an error naming the cause,
// so a rank that died never leaves the others hanging.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_COMM_H
#define TRLC_RUNTIME_COMM_H

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace trlc {

struct CommError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Communicator {
public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;
  /// In-place elementwise sums across the ranks.
  virtual void allReduceSum(float *data, size_t n) = 0;
  virtual void allReduceSum(double *data, size_t n) = 0;
  /// Every rank's `count` elements, rank 0's first: `out` holds
  /// size() x count.
  virtual void allGather(const float *shard, float *out, size_t count) = 0;
  /// Sums `in` (size() x count elements) over the ranks and writes this
  /// rank's `count` of them to `out`. `in` is clobbered (Gloo reduces in
  /// place with an all-reduce; NCCL has a native reduce-scatter).
  virtual void reduceScatterSum(float *in, float *out, size_t count) = 0;
  virtual void barrier() = 0;
};

/// The communicator for this process, from the environment: none when
/// WORLD_SIZE is unset or 1 on the CPU, Gloo for several CPU processes,
/// NCCL for the "cuda" backend (its pointers are device memory). Throws
/// CommError with the fix.
std::unique_ptr<Communicator> makeCommunicator(const std::string &backend = "cpu");

#ifdef TRLC_HAVE_NCCL
/// NCCL (runtime/NcclComm.cpp): `id` is rank 0's ncclUniqueId as bytes.
std::vector<char> ncclIdBytes();
std::unique_ptr<Communicator> makeNcclComm(int rank, int size, const std::vector<char> &id,
                                           int timeoutSeconds);
#endif

} // namespace trlc

#endif // TRLC_RUNTIME_COMM_H
