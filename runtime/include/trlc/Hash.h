//===- Hash.h - FNV-1a, the one content hash of trlc ------------*- C++ -*-===//
//
// 64-bit FNV-1a: the recipe hash of the manifest, the dataset and
// tokenizer hashes of the data plan, and the per-parameter seeds of random
// initialisation all use it. Not cryptographic: it detects edits, it does
// not resist forgery.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_HASH_H
#define TRLC_RUNTIME_HASH_H

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace trlc {

inline constexpr uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ull;

/// Folds `n` bytes into the running hash `h`.
inline uint64_t fnv1a(const void *data, size_t n, uint64_t h = kFnvOffsetBasis) {
  const auto *p = static_cast<const unsigned char *>(data);
  for (size_t k = 0; k < n; ++k) {
    h ^= p[k];
    h *= 1099511628211ull;
  }
  return h;
}

inline uint64_t fnv1a(std::string_view text, uint64_t h = kFnvOffsetBasis) {
  return fnv1a(text.data(), text.size(), h);
}

/// A hash as 16 lower-case hex digits.
inline std::string hashHex(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

} // namespace trlc

#endif // TRLC_RUNTIME_HASH_H
