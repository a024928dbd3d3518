//===- BFloat16.h - bf16 storage, on the host and the device ----*- C++ -*-===//
//
// bf16 is the top half of an IEEE f32. Rounding is to nearest, ties to
// even; NaNs stay NaNs. The CPU backend, the CUDA kernels' loads and
// stores, and the host emulation of the CUDA kernels all round here (on
// a GPU through the conversion instruction, which rounds the same way).
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_BFLOAT16_H
#define TRLC_RUNTIME_BFLOAT16_H

#include "trlc/ScalarMath.h" // TRLC_HD

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#endif

namespace trlc {

TRLC_HD inline float bf16ToFloat(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
#else
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

TRLC_HD inline uint16_t floatToBf16(float f) {
#if defined(__CUDA_ARCH__)
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
#else
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) // NaN: keep it quiet and a NaN
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
#endif
}

} // namespace trlc

#endif // TRLC_RUNTIME_BFLOAT16_H
