//===- Fuzz.h - shared pieces of the fuzz targets -------------*- C++ -*-===//
//
// Each target in tests/fuzz defines LLVMFuzzerTestOneInput. Built with
// clang's -fsanitize=fuzzer (`make fuzz`) it is a libFuzzer binary; built
// with any compiler and Replay.cpp (`make test`) it runs the files of its
// corpus once each, so CI replays every input the fuzzers ever found.
//
// A target catches only the errors trlc reports to users (they carry the
// file and the fix); anything else escaping, a crash, a sanitizer report or
// a hang is a finding.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_TESTS_FUZZ_FUZZ_H
#define TRLC_TESTS_FUZZ_FUZZ_H

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

namespace trlc::fuzz {

/// A scratch directory of this process, made once.
inline const std::filesystem::path &scratch() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path d = std::filesystem::temp_directory_path() /
                              ("trlc-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline std::string writeScratch(const std::string &name, std::string_view bytes) {
  std::filesystem::path p = scratch() / name;
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return p.string();
}

/// The input split at its first NUL byte: (before, after).
inline std::pair<std::string_view, std::string_view> splitAtNul(const uint8_t *data, size_t size) {
  std::string_view all(reinterpret_cast<const char *>(data), size);
  size_t at = all.find('\0');
  if (at == std::string_view::npos)
    return {all, {}};
  return {all.substr(0, at), all.substr(at + 1)};
}

} // namespace trlc::fuzz

#endif // TRLC_TESTS_FUZZ_FUZZ_H
