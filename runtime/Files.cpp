//===- Files.cpp - crash-safe output files --------------------------------===//

#include "trlc/Files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace fs = std::filesystem;

namespace trlc {

namespace {

std::string reason(const std::string &path, int err, const char *what) {
  std::string msg = path + ": error: cannot " + what + " (" + std::strerror(err) + ")";
  if (err == ENOSPC || err == EDQUOT)
    msg += "; the disk is full: free space or choose another output_dir";
  return msg;
}

/// Writes all of `bytes` to `fd`, retrying short writes.
int writeAll(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno;
    }
    done += static_cast<size_t>(n);
  }
  return 0;
}

std::string parentOf(const std::string &path) {
  fs::path p = fs::path(path).parent_path();
  return p.empty() ? "." : p.string();
}

} // namespace

std::optional<std::string> syncPath(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return reason(path, errno, "open");
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some filesystems refuse fsync on directories; that is not a failure.
  if (rc != 0 && err != EINVAL && err != EROFS)
    return reason(path, err, "sync");
  return std::nullopt;
}

AtomicFile::AtomicFile(const std::string &path)
    : path(path), tmp(path + "." + std::to_string(::getpid()) + kTempSuffix) {
  fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error(reason(path, errno, "create"));
}

AtomicFile::~AtomicFile() {
  if (fd >= 0) {
    ::close(fd);
    ::unlink(tmp.c_str());
  }
}

void AtomicFile::write(const void *data, size_t bytes) {
  if (int err = writeAll(fd, std::string_view(static_cast<const char *>(data), bytes)))
    throw std::runtime_error(reason(path, err, "write"));
}

void AtomicFile::commit() {
  int err = ::fsync(fd) != 0 ? errno : 0;
  if (::close(fd) != 0 && !err)
    err = errno;
  fd = -1;
  if (!err && ::rename(tmp.c_str(), path.c_str()) != 0)
    err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    throw std::runtime_error(reason(path, err, "write"));
  }
  if (auto e = syncPath(parentOf(path)))
    throw std::runtime_error(*e);
}

std::optional<std::string> writeFileAtomic(const std::string &path, std::string_view bytes) {
  try {
    AtomicFile f(path);
    f.write(bytes.data(), bytes.size());
    f.commit();
  } catch (const std::runtime_error &e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

std::optional<std::string> renameDirAtomic(const std::string &from, const std::string &to) {
  std::error_code ec;
  if (fs::exists(to, ec)) {
    // Move the old one aside first, so `to` is never half removed.
    std::string old = to + "." + std::to_string(::getpid()) + ".old" + kTempSuffix;
    fs::rename(to, old, ec);
    if (ec)
      return to + ": error: cannot replace (" + ec.message() + ")";
    fs::rename(from, to, ec);
    if (ec)
      return to + ": error: cannot rename " + from + " (" + ec.message() + ")";
    fs::remove_all(old, ec);
  } else {
    fs::rename(from, to, ec);
    if (ec)
      return to + ": error: cannot rename " + from + " (" + ec.message() + ")";
  }
  return syncPath(parentOf(to));
}

int removeStaleTemps(const std::string &dir) {
  std::error_code ec;
  int removed = 0;
  std::string suffix = kTempSuffix;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      std::error_code rm;
      fs::remove_all(it->path(), rm);
      removed += !rm;
    }
  }
  return removed;
}

CheckedAppend::CheckedAppend(const std::string &path, bool truncate) : path(path) {
  fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0),
              0644);
  if (fd < 0)
    throw std::runtime_error(reason(path, errno, "open for appending"));
}

CheckedAppend::~CheckedAppend() {
  if (fd >= 0)
    ::close(fd);
}

void CheckedAppend::append(std::string_view line) {
  if (int err = writeAll(fd, line))
    throw std::runtime_error(reason(path, err, "append"));
}

void CheckedAppend::sync() {
  if (::fsync(fd) != 0 && errno != EINVAL)
    throw std::runtime_error(reason(path, errno, "sync"));
}

} // namespace trlc
