//===- Files.h - crash-safe output files -------------------------*- C++ -*-===//
//
// Every file trlc writes goes through writeFileAtomic: the bytes go to a
// temporary name next to the target, every write is checked, the file is
// flushed and fsynced, then renamed over the target and the directory
// fsynced. A crash or a full disk leaves the old file (or none), never a
// partial one. Directories that must appear whole (checkpoints) are
// written under a temporary name and renamed (renameDirAtomic).
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_FILES_H
#define TRLC_RUNTIME_FILES_H

#include <cstddef>
#include <filesystem>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace trlc {

/// std::filesystem::exists / is_directory / is_regular_file that never
/// throw: a path the system cannot even look up (a component over 255
/// bytes, a loop of links) is simply absent, and the caller's own message
/// ("does not exist", "not a directory") names it.
inline bool pathExists(const std::filesystem::path &p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}
inline bool isDirectory(const std::filesystem::path &p) {
  std::error_code ec;
  return std::filesystem::is_directory(p, ec);
}
inline bool isRegularFile(const std::filesystem::path &p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

/// The suffix of the temporary files and directories trlc writes; what is
/// left of them after a crash is removed at the next run (removeStaleTemps).
inline constexpr const char *kTempSuffix = ".trlc-tmp";

/// Writes `bytes` to `path` atomically; on failure returns the reason
/// ("PATH: error: ...", naming disk space when the device is full) and
/// leaves `path` as it was.
std::optional<std::string> writeFileAtomic(const std::string &path, std::string_view bytes);

/// A file written piece by piece and then committed atomically: writes
/// go to a temporary name; commit() fsyncs and renames it over the target;
/// without commit() the temporary is removed. Errors throw
/// std::runtime_error with the reason.
class AtomicFile {
public:
  explicit AtomicFile(const std::string &path);
  ~AtomicFile();
  AtomicFile(const AtomicFile &) = delete;
  AtomicFile &operator=(const AtomicFile &) = delete;
  void write(const void *data, size_t bytes);
  void commit();

private:
  std::string path, tmp;
  int fd = -1;
};

/// Renames directory `from` to `to` (replacing an existing `to`, which is
/// removed first) and fsyncs the parent; returns the reason on failure.
std::optional<std::string> renameDirAtomic(const std::string &from, const std::string &to);

/// fsyncs a file or directory; returns the reason on failure.
std::optional<std::string> syncPath(const std::string &path);

/// Removes the `*.trlc-tmp` files and directories trlc left in `dir` (not
/// recursive); returns how many.
int removeStaleTemps(const std::string &dir);

/// An append-only text file whose every write is checked (metrics.jsonl):
/// a failed append or sync throws std::runtime_error naming the file.
class CheckedAppend {
public:
  /// Opens `path` for appending (emptied first with `truncate`).
  CheckedAppend(const std::string &path, bool truncate);
  ~CheckedAppend();
  CheckedAppend(const CheckedAppend &) = delete;
  CheckedAppend &operator=(const CheckedAppend &) = delete;
  void append(std::string_view line);
  void sync();

private:
  std::string path;
  int fd = -1;
};

} // namespace trlc

#endif // TRLC_RUNTIME_FILES_H
