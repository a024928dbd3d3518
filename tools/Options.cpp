//===- Options.cpp - the one command-line parser of trlc ------------------===//

#include "tools/Options.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace trlc::cli {

Options &Options::value(const std::string &name, Setter set) {
  options.push_back({name, true, std::move(set)});
  return *this;
}

Options &Options::flag(const std::string &name, std::function<void()> set) {
  options.push_back({name, false, [set = std::move(set)](const std::string &) {
                       set();
                       return std::string();
                     }});
  return *this;
}

Options &Options::add(const Options &other) {
  options.insert(options.end(), other.options.begin(), other.options.end());
  return *this;
}

Options &Options::positional(Setter set) {
  onPositional = std::move(set);
  return *this;
}

Options &Options::unknown(
    std::function<std::string(const std::string &, const std::vector<std::string> &)> report) {
  onUnknown = std::move(report);
  return *this;
}

std::vector<std::string> Options::names() const {
  std::vector<std::string> out;
  for (const Option &o : options)
    out.push_back(o.name);
  return out;
}

std::string Options::parse(int argc, char **argv, int first) const {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    const Option *match = nullptr;
    std::string value;
    for (const Option &o : options) {
      if (arg == o.name) {
        match = &o;
        if (o.takesValue) {
          if (i + 1 >= argc)
            return o.name + " needs a value" +
                   (o.name == "--set" ? std::string(": --set SECTION.KEY=VALUE, for example "
                                                    "--set train.learning_rate=1e-4")
                                      : std::string());
          value = argv[++i];
        }
        break;
      }
      if (o.takesValue && arg.rfind(o.name + "=", 0) == 0) {
        match = &o;
        value = arg.substr(o.name.size() + 1);
        break;
      }
    }
    std::string error;
    if (match)
      error = match->set(value);
    else if (!arg.empty() && arg[0] == '-')
      error = onUnknown ? onUnknown(arg, names()) : "unknown option '" + arg + "'";
    else
      error = onPositional ? onPositional(arg) : "unexpected argument '" + arg + "'";
    if (!error.empty())
      return error;
  }
  return "";
}

std::string positiveInteger(const std::string &option, const std::string &value,
                            int64_t max, const std::string &unit, int64_t &out) {
  char *end = nullptr;
  long long n = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end || n <= 0)
    return option + " needs a positive integer, got '" + value + "'";
  if (n > max)
    return option + " " + value + ": at most " + std::to_string(max) + " " + unit;
  out = n;
  return "";
}

std::string threadCount(const std::string &value, int &out) {
  int64_t n = 0, cores = std::max(1u, std::thread::hardware_concurrency());
  std::string err =
      positiveInteger("--threads", value, cores, "threads, the cores this machine has", n);
  out = static_cast<int>(n);
  return err;
}

} // namespace trlc::cli
