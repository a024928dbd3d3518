//===- matmul.cpp - linear layers over OpenBLAS ---------------------------===//
//
// y = x W^T (+ b), W [out, in] as Hugging Face stores nn.Linear. The
// backward writes dx and dW (added to an accumulator when the call has one)
// and db.
//
//===----------------------------------------------------------------------===//

#include "cpu/common.h"

namespace trlc::cpu {

template <typename T> void linear(const KernelArgs &a) {
  const TensorRef &x = a.in[0], &w = a.in[1];
  int64_t m = rowsOf(x), k = x.dim(-1), n = w.dim(0);
  T *y = a.out[0].as<T>();
  gemm<T>(false, true, m, n, k, x.as<T>(), k, w.as<T>(), k, T(0), y, n);
  if (a.in.size() > 2 && a.in[2]) {
    const T *b = a.in[2].as<T>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < n; ++j)
        y[r * n + j] += b[j];
  }
}

template <typename T> void linearGrad(const KernelArgs &a) {
  const TensorRef &dy = a.in[0], &x = a.in[1], &w = a.in[2];
  int64_t m = rowsOf(x), k = x.dim(-1), n = w.dim(0);
  gemm<T>(false, false, m, k, n, dy.as<T>(), n, w.as<T>(), k, T(0),
          a.out[0].as<T>(), k);
  // With an accumulator (in[3]): dW = acc + dy^T x, by the product itself.
  bool accumulate = a.in.size() > 3 && a.in[3];
  if (accumulate && a.out[1].data != a.in[3].data)
    std::memcpy(a.out[1].data, a.in[3].data, a.out[1].desc->bytes());
  gemm<T>(true, false, n, k, m, dy.as<T>(), n, x.as<T>(), k,
          accumulate ? T(1) : T(0), a.out[1].as<T>(), k);
  if (a.out.size() > 2) {
    T *db = a.out[2].as<T>();
    const T *g = dy.as<T>();
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; ++j) {
      T s = 0;
      for (int64_t r = 0; r < m; ++r)
        s += g[r * n + j];
      db[j] = s;
    }
  }
}

TRLC_CPU_KERNEL(linear)
TRLC_CPU_KERNEL(linearGrad)

} // namespace trlc::cpu
