//===- Utf8.h - small UTF-8 helpers for the data plan -----------*- C++ -*-===//

#ifndef TRLC_DATA_UTF8_H
#define TRLC_DATA_UTF8_H

#include <cstdint>
#include <string>
#include <string_view>

namespace trlc::data::utf8 {

/// Bytes of the character whose first byte is `lead` (1 for a stray byte).
inline size_t length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

inline void append(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// Decodes the character at s[i], advancing i; invalid bytes give U+FFFD.
inline uint32_t next(std::string_view s, size_t &i) {
  unsigned char c = s[i];
  size_t n = length(c);
  if (n == 1 || i + n > s.size()) {
    ++i;
    return c < 0x80 ? c : 0xFFFD;
  }
  uint32_t cp = c & (0xFF >> (n + 1));
  for (size_t k = 1; k < n; ++k) {
    unsigned char d = s[i + k];
    if ((d & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (d & 0x3F);
  }
  i += n;
  return cp;
}

template <typename F> void forEach(std::string_view s, F &&f) {
  for (size_t i = 0; i < s.size();)
    f(next(s, i));
}

inline bool isAscii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80)
      return false;
  return true;
}

/// Strict validity (overlongs and surrogates refused).
bool valid(std::string_view s);
/// `s` with every invalid sequence replaced by U+FFFD, as Rust's
/// String::from_utf8_lossy does.
std::string lossy(std::string_view s);
/// Unicode White_Space, as Rust's char::is_whitespace.
bool isSpace(uint32_t cp);
std::string_view trimLeft(std::string_view s);
std::string_view trimRight(std::string_view s);

} // namespace trlc::data::utf8

#endif // TRLC_DATA_UTF8_H
