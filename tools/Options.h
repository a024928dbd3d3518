//===- Options.h - the one command-line parser of trlc ----------*- C++ -*-===//
//
// Every trlc command declares its options here and parses argv with them:
// `--name=value` and `--name value` for options with a value, `--name` for
// flags, anything else positional. The runtime-only build uses it too, so
// it depends on nothing but the C++ library.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_TOOLS_OPTIONS_H
#define TRLC_TOOLS_OPTIONS_H

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace trlc::cli {

class Options {
public:
  /// An option's handler: gets its value, returns an error message or "".
  using Setter = std::function<std::string(const std::string &value)>;

  /// `name` (with its dashes) takes a value.
  Options &value(const std::string &name, Setter set);
  /// `name` is a flag.
  Options &flag(const std::string &name, std::function<void()> set);
  /// Options of another set (train takes compile's and run's).
  Options &add(const Options &other);
  /// Positional arguments, in order.
  Options &positional(Setter set);
  /// How an unknown option is reported: gets the argument and every
  /// option's name, returns the message.
  Options &unknown(std::function<std::string(const std::string &arg,
                                             const std::vector<std::string> &names)> report);

  /// Parses argv[first, argc); returns the first error message, or "".
  std::string parse(int argc, char **argv, int first) const;
  std::vector<std::string> names() const;

private:
  struct Option {
    std::string name;
    bool takesValue;
    Setter set;
  };
  std::vector<Option> options;
  Setter onPositional;
  std::function<std::string(const std::string &, const std::vector<std::string> &)> onUnknown;
};

/// Value checks shared by the commands: a positive integer at most `max`
/// `unit` (the message names the option and what it got).
std::string positiveInteger(const std::string &option, const std::string &value,
                            int64_t max, const std::string &unit, int64_t &out);
/// --threads: at most the machine's cores (more only slows a run down, and
/// a huge count exhausts the OpenMP runtime).
std::string threadCount(const std::string &value, int &out);

} // namespace trlc::cli

#endif // TRLC_TOOLS_OPTIONS_H
