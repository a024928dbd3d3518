//===- mma.h - WMMA for the host emulation (see emu.h) ------*- C++ -*-===//
//
// A lane's matrix_a and matrix_b fragments hold the whole 16x16 tile; an
// accumulator's elements are spread over the lanes (lane l owns elements
// l, l + 32, ... in row-major order; a layout of our own, which no kernel
// may assume, just as it may not assume the GPU's). Loads and stores check
// WMMA's rules (32-byte aligned pointers, ldm a multiple of 16 bytes).
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_TESTS_CUDAEMU_MMA_H
#define TRLC_TESTS_CUDAEMU_MMA_H

#include "emu.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename L = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "only 16x16x16");
  float x[16][16]; // (row, column) of the operand
  static constexpr int num_elements = 256;
};

namespace detail {
template <typename T> float get(const T &v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(v);
  else
    return v;
}
template <typename T> void check(const T *p, unsigned ldm) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || (ldm * sizeof(T)) % 16 != 0) {
    std::fprintf(stderr,
                 "wmma: pointer %p or ldm %u breaks the alignment rules\n",
                 static_cast<const void *>(p), ldm);
    std::abort();
  }
}
} // namespace detail

template <typename Use, typename T, typename L>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, L> &f, const T *p,
                      unsigned ldm) {
  detail::check(p, ldm);
  bool colMajor = std::is_same_v<L, col_major>;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      f.x[r][c] = detail::get(colMajor ? p[c * ldm + r] : p[r * ldm + c]);
}
template <typename T>
void load_matrix_sync(fragment<accumulator, 16, 16, 16, T, void> &f, const T *p,
                      unsigned ldm, layout_t layout) {
  detail::check(p, ldm);
  for (int e = threadIdx.x % 32; e < 256; e += 32) {
    int r = e / 16, c = e % 16;
    f.x[r][c] = layout == mem_col_major ? p[c * ldm + r] : p[r * ldm + c];
  }
}
template <typename T>
void store_matrix_sync(T *p,
                       const fragment<accumulator, 16, 16, 16, T, void> &f,
                       unsigned ldm, layout_t layout) {
  detail::check(p, ldm);
  for (int e = threadIdx.x % 32; e < 256; e += 32) {
    int r = e / 16, c = e % 16;
    (layout == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]) = f.x[r][c];
  }
}
template <typename Use, typename T, typename L>
void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, float v) {
  for (auto &row : f.x)
    for (float &e : row)
      e = v;
}
template <typename TA, typename LA, typename TB, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float, void> &d,
              const fragment<matrix_a, 16, 16, 16, TA, LA> &a,
              const fragment<matrix_b, 16, 16, 16, TB, LB> &b,
              const fragment<accumulator, 16, 16, 16, float, void> &c) {
  for (int e = threadIdx.x % 32; e < 256; e += 32) {
    int r = e / 16, n = e % 16;
    float acc = c.x[r][n];
    for (int k = 0; k < 16; ++k)
      acc += a.x[r][k] * b.x[k][n];
    d.x[r][n] = acc;
  }
}

} // namespace nvcuda::wmma

#endif // TRLC_TESTS_CUDAEMU_MMA_H
