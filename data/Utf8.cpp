//===- Utf8.cpp - small UTF-8 helpers for the data plan -------------------===//

#include "data/Utf8.h"

#include <algorithm>

namespace trlc::data::utf8 {

namespace {
/// How many bytes at s[i] begin a well-formed sequence (Rust's from_utf8
/// rules: no overlongs, no surrogates, nothing above U+10FFFF), and whether
/// they complete it. 0 when s[i] cannot start one.
size_t wellFormedPrefix(std::string_view s, size_t i, bool &complete) {
  unsigned char c = s[i];
  complete = c < 0x80;
  if (complete)
    return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c == 0xE0) { n = 3; lo = 0xA0; }
  else if (c >= 0xE1 && c <= 0xEC) n = 3;
  else if (c == 0xED) { n = 3; hi = 0x9F; }
  else if (c >= 0xEE && c <= 0xEF) n = 3;
  else if (c == 0xF0) { n = 4; lo = 0x90; }
  else if (c >= 0xF1 && c <= 0xF3) n = 4;
  else if (c == 0xF4) { n = 4; hi = 0x8F; }
  else return 0;
  if (i + 1 >= s.size() || static_cast<unsigned char>(s[i + 1]) < lo ||
      static_cast<unsigned char>(s[i + 1]) > hi)
    return 1;
  size_t k = 2;
  while (k < n && i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80)
    ++k;
  complete = k == n;
  return k;
}

/// Length of the valid sequence at s[i], or 0.
size_t validAt(std::string_view s, size_t i) {
  bool complete;
  size_t k = wellFormedPrefix(s, i, complete);
  return complete ? k : 0;
}

/// Bytes Rust's lossy decoder replaces by one U+FFFD at an invalid s[i]:
/// the longest prefix of a valid sequence (at least one byte).
size_t invalidRun(std::string_view s, size_t i) {
  bool complete;
  return std::max<size_t>(1, wellFormedPrefix(s, i, complete));
}
} // namespace

bool valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = validAt(s, i);
    if (!n)
      return false;
    i += n;
  }
  return true;
}

std::string lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = validAt(s, i);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += invalidRun(s, i);
    }
  }
  return out;
}

bool isSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 ||
         cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

std::string_view trimLeft(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (!isSpace(next(s, j)))
      break;
    i = j;
  }
  return s.substr(i);
}

std::string_view trimRight(std::string_view s) {
  size_t end = 0;  // end of the last non-space character
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = next(s, i);
    if (!isSpace(cp))
      end = i;
  }
  return s.substr(0, end);
}

} // namespace trlc::data::utf8
