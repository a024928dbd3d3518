//===- Diag.h - positioned errors for TOML input ----------------*- C++ -*-===//

#ifndef TRLC_FRONTEND_DIAG_H
#define TRLC_FRONTEND_DIAG_H

#include "frontend/Recipe.h"

#include <toml++/toml.h>

#include <map>
#include <string>

namespace trlc {

/// Formats `file:line:col: error: ...` at a TOML node, or `--set ARG: error:`
/// for values that came from the command line.
class Diag {
public:
  explicit Diag(std::string file) : file(std::move(file)) {}

  void noteOverride(const toml::node *node, std::string arg) {
    overrides[node] = std::move(arg);
  }
  /// "file:line:col" of a node, or "--set ARG" for a command-line value.
  std::string where(const toml::node &node) const;
  Error at(const toml::source_region &where, const std::string &msg) const;
  Error at(const toml::node &node, const std::string &msg) const;
  Error atFile(const std::string &msg) const {
    return Error{file + ": error: " + msg};
  }

private:
  std::string file;
  std::map<const toml::node *, std::string> overrides;
};

/// "a string", "an integer", ... for type errors.
std::string tomlTypeName(const toml::node &node);
/// The value as TOML writes it.
std::string tomlValueText(const toml::node &node);

} // namespace trlc

#endif // TRLC_FRONTEND_DIAG_H
