//===- Expected.h - errors as values, for every layer -----------*- C++ -*-===//
//
// The one error type of trlc's boundaries (recipes, datasets, model files,
// artifacts): a message already formatted for the user, naming the file,
// the place and the fix. Header-only and dependency-free, so the compiler
// and the runtime both use it.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_EXPECTED_H
#define TRLC_RUNTIME_EXPECTED_H

#include <string>
#include <utility>
#include <variant>

namespace trlc {

/// An error in user input, already formatted as `file:line:col: error: ...`.
struct Error {
  std::string message;
};

/// A value or an Error.
template <typename T> class Expected {
public:
  Expected(T value) : storage(std::move(value)) {}
  Expected(Error error) : storage(std::move(error)) {}
  explicit operator bool() const { return storage.index() == 0; }
  T &operator*() { return std::get<0>(storage); }
  const T &operator*() const { return std::get<0>(storage); }
  T *operator->() { return &std::get<0>(storage); }
  const T *operator->() const { return &std::get<0>(storage); }
  const Error &error() const { return std::get<1>(storage); }

private:
  std::variant<T, Error> storage;
};

} // namespace trlc

#endif // TRLC_RUNTIME_EXPECTED_H
