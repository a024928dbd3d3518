//===- Rewards.cpp - built-in rewards and reward helper processes ---------===//

#include "trlc/Rewards.h"
#include "trlc/Run.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <regex>

using nlohmann::json;

namespace trlc {

namespace {

/// Runs one process per reward and talks JSON lines to it.
const char *kPythonHelper = R"PY(
import importlib.util, inspect, json, sys, traceback
path, name = sys.argv[1], sys.argv[2]
out = sys.stdout
sys.stdout = sys.stderr  # the function's prints go to the log, not the pipe
def reply(obj):
    out.write(json.dumps(obj) + "\n"); out.flush()
try:
    spec = importlib.util.spec_from_file_location("trlc_reward", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
except Exception:
    reply({"error": "cannot load " + path + ":\n" + traceback.format_exc()}); sys.exit(0)
fn = getattr(module, name, None)
if not callable(fn):
    reply({"error": path + " has no function '" + name + "'"}); sys.exit(0)
params = inspect.signature(fn).parameters
kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
missing = [a for a in ("prompts", "completions") if a not in params and not kwargs]
if missing:
    reply({"error": name + str(inspect.signature(fn)) + " does not take " + ", ".join(missing) +
           ": write it as def " + name + "(prompts, completions, completion_ids, **kwargs)"})
    sys.exit(0)
reply({"ready": True})
judge = len(sys.argv) > 3 and sys.argv[3] == "judge"
for line in sys.stdin:
    req = json.loads(line)
    if judge:  # a pairwise judge: the index of the better completion of each pair
        try:
            ranks = fn(prompts=req["prompts"], completions=req["completions"])
            reply({"ranks": [int(x) for x in ranks]})
        except Exception:
            reply({"error": traceback.format_exc()})
        continue
    args = dict(req["columns"])
    args.update(prompts=req["prompts"], completions=req["completions"],
                completion_ids=req["completion_ids"])
    if not kwargs:
        args = {k: v for k, v in args.items() if k in params}
    try:
        r = fn(**args)
        r = [None if x is None else float(x) for x in r]
        reply({"rewards": r})
    except Exception:
        reply({"error": traceback.format_exc()})
)PY";

std::string normalise(const std::string &s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space)
      out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string example(const RewardBatch &b) {
  if (b.prompts.empty())
    return "";
  std::string c = b.columns.empty() ? "{}" : b.columns[0].dump();
  return "\n  first example: prompt " + json(b.prompts[0]).dump() + ", completion " +
         json(b.completions[0]).dump() + ", columns " + c.substr(0, 300);
}

class Accuracy : public RewardFunction {
public:
  std::string name() const override { return "accuracy"; }
  std::vector<std::optional<double>> score(const RewardBatch &b) override {
    std::vector<std::optional<double>> out;
    for (size_t i = 0; i < b.completions.size(); ++i) {
      const json &c = b.columns[i];
      const char *key = c.contains("solution") ? "solution" : c.contains("answer") ? "answer" : nullptr;
      if (!key)
        throw RunError("error: the \"accuracy\" reward compares completions with a \"solution\" "
                       "or \"answer\" column, and this row has neither (its fields: " +
                       c.dump().substr(0, 200) + "); add one to the dataset or use another reward");
      std::string want = c[key].is_string() ? c[key].get<std::string>() : c[key].dump();
      out.push_back(normalise(b.completions[i]) == normalise(want) ? 1.0 : 0.0);
    }
    return out;
  }
};

class Format : public RewardFunction {
public:
  explicit Format(const std::string &pattern) : re(pattern, std::regex::ECMAScript) {}
  std::string name() const override { return "format"; }
  std::vector<std::optional<double>> score(const RewardBatch &b) override {
    std::vector<std::optional<double>> out;
    for (const std::string &c : b.completions)
      out.push_back(std::regex_match(c, re) ? 1.0 : 0.0);
    return out;
  }

private:
  std::regex re;
};

class Length : public RewardFunction {
public:
  explicit Length(int64_t most) : most(most) {}
  std::string name() const override { return "length"; }
  std::vector<std::optional<double>> score(const RewardBatch &b) override {
    std::vector<std::optional<double>> out;
    for (const auto &ids : b.completionIds)
      out.push_back(-static_cast<double>(ids.size()) / static_cast<double>(most));
    return out;
  }

private:
  int64_t most;
};

/// A helper process on two pipes.
class External : public RewardFunction {
public:
  External(std::string label, std::string metric, std::vector<std::string> argv, double timeout,
           bool handshake, std::string kind = "reward")
      : label(std::move(label)), metric(std::move(metric)), kind(std::move(kind)),
        timeout(timeout) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
      throw RunError("error: cannot start the " + this->kind + " " + this->label + ": " + std::strerror(errno));
    pid = fork();
    if (pid < 0)
      throw RunError("error: cannot start the " + this->kind + " " + this->label + ": " + std::strerror(errno));
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(in[0], 0);
      dup2(out[1], 1);
      std::vector<char *> args;
      for (std::string &a : argv)
        args.push_back(a.data());
      args.push_back(nullptr);
      execvp(args[0], args.data());
      std::fprintf(stderr, "trlc: cannot run %s: %s\n", args[0], std::strerror(errno));
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    toChild = in[1];
    fromChild = out[0];
    signal(SIGPIPE, SIG_IGN);  // a dead helper is an error reply, not a signal
    if (handshake) {
      json hello = readReply();
      if (hello.contains("error"))
        throw RunError("error: the " + this->kind + " " + this->label + " cannot run:\n" +
                       hello["error"].get<std::string>());
    }
  }
  ~External() override {
    close(toChild);
    close(fromChild);
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
  std::string name() const override { return metric; }

  std::vector<std::optional<double>> score(const RewardBatch &b) override {
    json cols = json::object();
    for (size_t i = 0; i < b.columns.size(); ++i)
      for (auto it = b.columns[i].begin(); it != b.columns[i].end(); ++it) {
        if (!cols.contains(it.key()))
          cols[it.key()] = json::array();
      }
    for (auto it = cols.begin(); it != cols.end(); ++it)
      for (size_t i = 0; i < b.columns.size(); ++i)
        it.value().push_back(b.columns[i].value(it.key(), json(nullptr)));
    json prompts = json::array(), completions = json::array();
    for (size_t i = 0; i < b.completions.size(); ++i) {
      bool chat = i < b.promptMessages.size() && !b.promptMessages[i].is_null();
      prompts.push_back(chat ? b.promptMessages[i] : json(b.prompts[i]));
      completions.push_back(chat ? json::array({{{"role", "assistant"},
                                                 {"content", b.completions[i]}}})
                                 : json(b.completions[i]));
    }
    json req = {{"prompts", prompts},
                {"completions", completions},
                {"completion_ids", b.completionIds},
                {"columns", cols}};
    json reply = ask(req, example(b));
    const json &r = reply.contains("rewards") ? reply["rewards"] : json();
    if (!r.is_array() || r.size() != b.completions.size())
      throw RunError("error: the " + kind + " " + label + " returned " +
                     (r.is_array() ? std::to_string(r.size()) + " rewards" : reply.dump().substr(0, 200)) +
                     " for " + std::to_string(b.completions.size()) + " completions" + example(b));
    std::vector<std::optional<double>> out;
    for (const json &x : r) {
      if (x.is_null())
        out.push_back(std::nullopt);
      else if (x.is_number() && std::isfinite(x.get<double>()))
        out.push_back(x.get<double>());
      else
        throw RunError("error: the " + kind + " " + label + " returned " + x.dump().substr(0, 80) +
                       ", not a finite number or None" + example(b));
    }
    return out;
  }

  /// Sends one request line and returns the reply (an "error" reply
  /// throws, with `context` appended).
  json ask(const json &req, const std::string &context) {
    std::string line = req.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    for (size_t done = 0; done < line.size();) {
      ssize_t n = write(toChild, line.data() + done, line.size() - done);
      if (n <= 0)
        throw RunError("error: the " + kind + " " + label + " stopped reading (it exited?)" + context);
      done += static_cast<size_t>(n);
    }
    json reply = readReply(context);
    if (reply.contains("error"))
      throw RunError("error: the " + kind + " " + label + " failed:\n" +
                     (reply["error"].is_string() ? reply["error"].get<std::string>()
                                                 : reply["error"].dump()) +
                     context);
    return reply;
  }

private:
  json readReply(const std::string &context = "") {
    auto start = std::chrono::steady_clock::now();
    while (true) {
      size_t nl = buffer.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        json j = json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object())
          throw RunError("error: the " + kind + " " + label + " wrote something other than a JSON "
                         "object: " + line.substr(0, 200) + context);
        return j;
      }
      double left = timeout - std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                            start).count();
      if (left <= 0)
        throw RunError("error: the " + kind + " " + label + " did not answer within " +
                       std::to_string(static_cast<int>(timeout)) +
                       " s (reward_timeout)" + context);
      pollfd p{fromChild, POLLIN, 0};
      int ready = poll(&p, 1, static_cast<int>(std::min(left, 1e6) * 1000) + 1);
      if (ready < 0 && errno == EINTR)
        continue;
      char chunk[65536];
      ssize_t n = ready > 0 ? read(fromChild, chunk, sizeof chunk) : 0;
      if (ready > 0 && n <= 0)
        throw RunError("error: the " + kind + " " + label + " exited without answering (see its "
                       "messages above)" + context);
      if (n > 0) {
        buffer.append(chunk, static_cast<size_t>(n));
        if (buffer.size() > (64u << 20))
          throw RunError("error: the " + kind + " " + label + " wrote a line over 64 MiB");
      }
    }
  }

  std::string label, metric, kind;  // kind: "reward" or "judge", for messages
  double timeout;
  pid_t pid = -1;
  int toChild = -1, fromChild = -1;
  std::string buffer;
};

/// Online DPO's pairwise judge: a Python function or a command over the
/// same helper, asked for the better completion of each pair.
class HelperJudge : public PairwiseJudge {
public:
  explicit HelperJudge(std::unique_ptr<External> helper) : helper(std::move(helper)) {}
  std::vector<int> judge(const std::vector<std::string> &prompts,
                         const std::vector<std::pair<std::string, std::string>> &pairs) override {
    json completions = json::array();
    for (const auto &[a, b] : pairs)
      completions.push_back({a, b});
    std::string context = prompts.empty() ? std::string()
                                          : "\n  first pair: prompt " + json(prompts[0]).dump() +
                                                ", completions " + completions[0].dump();
    json reply = helper->ask({{"prompts", prompts}, {"completions", completions}}, context);
    const json &r = reply.contains("ranks") ? reply["ranks"] : json();
    if (!r.is_array() || r.size() != pairs.size())
      throw RunError("error: the judge " + helper->name() + " returned " +
                     (r.is_array() ? std::to_string(r.size()) + " ranks"
                                   : reply.dump().substr(0, 200)) +
                     " for " + std::to_string(pairs.size()) + " pairs" + context);
    std::vector<int> out;
    for (const json &x : r) {
      if (!x.is_number_integer() || (x.get<int64_t>() != 0 && x.get<int64_t>() != 1))
        throw RunError("error: the judge " + helper->name() + " returned " +
                       x.dump().substr(0, 80) + ", not 0 (the first completion is better) or 1" +
                       context);
      out.push_back(static_cast<int>(x.get<int64_t>()));
    }
    return out;
  }

private:
  std::unique_ptr<External> helper;
};

} // namespace

namespace {
/// The helper process of a "python:FILE:FUNCTION" or "command:PROGRAM"
/// entry (a reward, or with kind "judge" online DPO's judge); null for
/// another entry.
std::unique_ptr<External> helperOf(const std::string &f, const artifact::GrpoRun &g,
                                   const std::string &kind) {
  if (f.rfind("python:", 0) == 0) {
    std::string rest = f.substr(7);
    size_t colon = rest.rfind(':');
    if (colon == std::string::npos)
      throw RunError("error: a Python " + kind + " is named \"python:FILE.py:FUNCTION\", got \"" +
                     f + "\"");
    std::string file = rest.substr(0, colon), fn = rest.substr(colon + 1);
    const char *py = std::getenv("TRLC_PYTHON");
    std::vector<std::string> argv{py && *py ? py : "python3", "-u", "-c", kPythonHelper, file, fn};
    if (kind == "judge")
      argv.push_back("judge");
    return std::make_unique<External>("\"" + f + "\"", fn, argv, g.rewardTimeout, true, kind);
  }
  if (f.rfind("command:", 0) == 0)
    return std::make_unique<External>("\"" + f + "\"", f.substr(8),
                                      std::vector<std::string>{"/bin/sh", "-c", f.substr(8)},
                                      g.rewardTimeout, false, kind);
  return nullptr;
}
} // namespace

std::unique_ptr<PairwiseJudge> makeJudge(const artifact::GrpoRun &g) {
  if (std::unique_ptr<External> helper = helperOf(g.judge, g, "judge"))
    return std::make_unique<HelperJudge>(std::move(helper));
  throw RunError("error: unknown judge \"" + g.judge + "\" in the artifact");
}

std::vector<std::unique_ptr<RewardFunction>> makeRewards(
    const artifact::GrpoRun &g,
    const std::function<std::unique_ptr<RewardFunction>(size_t, const std::string &)> &model) {
  std::vector<std::unique_ptr<RewardFunction>> out;
  size_t models = 0;
  for (const std::string &f : g.rewardFuncs) {
    if (f.rfind("model:", 0) == 0) {
      out.push_back(model(models++, f.substr(6)));
    } else if (f == "accuracy") {
      out.push_back(std::make_unique<Accuracy>());
    } else if (f == "format") {
      try {
        out.push_back(std::make_unique<Format>(g.formatPattern));
      } catch (const std::regex_error &e) {
        throw RunError("error: [grpo] format_pattern is not a valid regular expression (" +
                       std::string(e.what()) + ")");
      }
    } else if (f == "length") {
      out.push_back(std::make_unique<Length>(g.maxCompletionLength));
    } else if (std::unique_ptr<External> helper = helperOf(f, g, "reward")) {
      out.push_back(std::move(helper));
    } else {
      throw RunError("error: unknown reward function \"" + f + "\" in the artifact");
    }
  }
  return out;
}

} // namespace trlc
