//===- NcclTest.cpp - the NCCL communicator on one GPU --------------------===//
//
// World size 1: every collective must give what the no-communicator run
// computes (a copy, or the input itself), on device buffers and on host
// buffers (staged). Skipped without a GPU.

#include "trlc/Comm.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

namespace {

bool haveGpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

template <typename T> T *upload(const std::vector<T> &host) {
  T *d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, host.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
            cudaSuccess);
  return d;
}

template <typename T> std::vector<T> download(const T *d, size_t n) {
  std::vector<T> host(n);
  EXPECT_EQ(cudaMemcpy(host.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return host;
}

TEST(Nccl, WorldOfOneMatchesNoCommunicator) {
  if (!haveGpu())
    GTEST_SKIP() << "no GPU";
  std::unique_ptr<trlc::Communicator> comm = trlc::makeCommunicator("cuda");
  ASSERT_EQ(comm->name(), "nccl");
  ASSERT_EQ(comm->size(), 1);
  std::vector<float> x = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f};
  float *in = upload(x), *out = upload(std::vector<float>(x.size(), -1.0f));
  comm->allGather(in, out, x.size());
  EXPECT_EQ(download(out, x.size()), x);
  float *scratch = upload(x);
  comm->reduceScatterSum(scratch, out, x.size());
  EXPECT_EQ(download(out, x.size()), x);
  comm->allReduceSum(in, x.size());
  EXPECT_EQ(download(in, x.size()), x);
  std::vector<double> y = {0.125, -4.0};
  double *dy = upload(y);
  comm->allReduceSum(dy, y.size());
  EXPECT_EQ(download(dy, y.size()), y);
  comm->barrier();
  // Host buffers pass through the communicator's device staging buffer.
  std::vector<double> totals = {2.5, 40.0};
  comm->allReduceSum(totals.data(), totals.size());
  EXPECT_EQ(totals, (std::vector<double>{2.5, 40.0}));
  std::vector<float> gathered(x.size(), -1.0f);
  comm->allGather(x.data(), gathered.data(), x.size());
  EXPECT_EQ(gathered, x);
  std::vector<float> summed(x.size(), -1.0f), input = x;
  comm->reduceScatterSum(input.data(), summed.data(), x.size());
  EXPECT_EQ(summed, x);
  for (void *p : {static_cast<void *>(in), static_cast<void *>(out), static_cast<void *>(scratch),
                  static_cast<void *>(dy)})
    cudaFree(p);
}

} // namespace
