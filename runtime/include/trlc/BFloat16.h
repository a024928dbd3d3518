//===- BFloat16.h - bf16 storage on the host -------------------------------===//
//
// bf16 is the top half of an IEEE f32. Rounding is to nearest, ties to
// even (as __float2bfloat16_rn on a GPU); NaNs stay NaNs.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_BFLOAT16_H
#define TRLC_RUNTIME_BFLOAT16_H

#include <cstdint>
#include <cstring>

namespace trlc {

inline float bf16ToFloat(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t floatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) // NaN: keep it quiet and a NaN
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

} // namespace trlc

#endif // TRLC_RUNTIME_BFLOAT16_H
