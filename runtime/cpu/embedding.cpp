//===- embedding.cpp - token embeddings and their gradient ----------------===//
//
// The gradient adds each token's row into its id's row in token order
// (one thread per block of hidden columns), so it is deterministic.
//
//===----------------------------------------------------------------------===//

#include "cpu/common.h"

namespace trlc::cpu {

template <typename T> void embedding(const KernelArgs &a) {
  const TensorRef &table = a.in[0], &ids = a.in[1];
  int64_t v = table.dim(0), h = table.dim(1), n = ids.numel();
  for (int64_t i = 0; i < n; ++i)
    if (index(ids, i) < 0 || index(ids, i) >= v)
      throw KernelError("token id " + std::to_string(index(ids, i)) +
                        " is outside the vocabulary (size " + std::to_string(v) + ")");
  T *y = a.out[0].as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(y + i * h, table.as<T>() + index(ids, i) * h, h * sizeof(T));
}

template <typename T> void embeddingGrad(const KernelArgs &a) {
  const TensorRef &dy = a.in[0], &ids = a.in[1];
  T *dt = a.out[0].as<T>();
  int64_t h = a.out[0].dim(1), n = ids.numel();
  std::memset(dt, 0, a.out[0].desc->bytes());
  // One thread per column block: every row is summed in token order.
#pragma omp parallel
  {
    int t = omp_get_thread_num(), threads = omp_get_num_threads();
    int64_t lo = h * t / threads, hi = h * (t + 1) / threads;
    for (int64_t i = 0; i < n; ++i) {
      T *row = dt + index(ids, i) * h;
      const T *g = dy.as<T>() + i * h;
      for (int64_t j = lo; j < hi; ++j)
        row[j] += g[j];
    }
  }
}

TRLC_CPU_KERNEL(embedding)
TRLC_CPU_KERNEL(embeddingGrad)

} // namespace trlc::cpu
