//===- GenerateCommand.cpp - trlc generate --------------------------------===//
//
// Prompts are encoded as the data plan encodes them (data/Dataset.cpp): a
// string with the tokenizer's special tokens, a list of messages with the
// chat template and the generation prompt; a --prompts row may give token
// ids instead ("prompt_ids"). Completions are decoded without special
// tokens: plain text for --prompt, one JSON line per row of --prompts
// (with the ids; without a tokenizer, the ids only).
//
//===----------------------------------------------------------------------===//

#include "tools/GenerateCommand.h"
#include "data/Chat.h"
#include "tools/Options.h"
#include "trlc/Artifact.h"
#include "trlc/Backend.h"
#include "trlc/Checkpoint.h"
#include "trlc/Comm.h"
#include "trlc/Evaluate.h"
#include "trlc/Executor.h"
#include "trlc/Generate.h"
#include "trlc/Run.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

namespace trlc::cli {

namespace {

using ojson = nlohmann::ordered_json;

struct GenerateOptions {
  std::string artifact, model, promptsFile, device = "cpu";
  std::vector<std::string> prompts;
  int64_t maxNewTokens = -1;  // -1: every slot the prompt leaves
  int64_t eos = -2;           // -2: the model config's eos_token_id
  int threads = 0;
  uint64_t seed = 0;
  bool sample = false;
  bool timing = false;  // one JSON line on stderr: tokens, seconds
  Sampling sampling;
};

std::string number(const std::string &option, const std::string &v, double lo, double hi,
                   bool loOpen, double &out) {
  char *end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  bool ok = !v.empty() && end && *end == 0 && std::isfinite(x) && (loOpen ? x > lo : x >= lo) &&
            x <= hi;
  if (!ok)
    return option + " must be a number in " + (loOpen ? "(" : "[") + std::to_string(lo) + ", " +
           std::to_string(hi) + "], got '" + v + "'";
  out = x;
  return "";
}

/// One prompt as given: a string, or a conversation (messages).
struct Prompt {
  ojson original;
  std::vector<int64_t> ids;
};

std::vector<int64_t> widen(const std::vector<int32_t> &v) { return {v.begin(), v.end()}; }

std::vector<Prompt> readPrompts(const GenerateOptions &g, const data::Tokenizer *tokenizer,
                                const std::string &artifact, int64_t vocab) {
  std::optional<data::ChatTemplate> chat;
  auto encode = [&](const ojson &p, const std::string &where) {
    if (!tokenizer)
      throw RunError(where + ": error: a text prompt needs a tokenizer, and " + artifact +
                     " names none ([model] tokenizer); give token ids as \"prompt_ids\"");
    const data::Tokenizer &tok = *tokenizer;
    if (p.is_string())
      return widen(tok.encode(p.get<std::string>(), true));
    if (!p.is_array())
      throw RunError(where + ": error: \"prompt\" must be a string or a list of messages");
    if (tok.chatTemplate.empty())
      throw RunError(where + ": error: the prompt is a conversation but the tokenizer (" +
                     tok.source + ") has no chat_template");
    if (!chat)
      chat.emplace(tok.chatTemplate, tok.chatTemplateSource, tok);
    try {
      return widen(chat->encode(p, nullptr, true, false).ids);
    } catch (const std::exception &e) {
      throw RunError(where + ": error: " + e.what());
    }
  };
  std::vector<Prompt> out;
  for (const std::string &p : g.prompts)
    out.push_back({p, encode(ojson(p), "--prompt")});
  if (!g.promptsFile.empty()) {
    std::ifstream in(g.promptsFile, std::ios::binary);
    if (!in)
      throw RunError(g.promptsFile + ": error: cannot read the prompts file");
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos)
        continue;
      std::string where = g.promptsFile + ":" + std::to_string(n);
      ojson row = ojson::parse(line, nullptr, false);
      if (!row.is_discarded() && row.is_object() && row.contains("prompt_ids")) {
        const ojson &ids = row["prompt_ids"];
        std::vector<int64_t> v;
        for (const ojson &t : ids.is_array() ? ids : ojson::array()) {
          if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= vocab)
            throw RunError(where + ": error: \"prompt_ids\" must hold token ids in [0, " +
                           std::to_string(vocab) + ")");
          v.push_back(t.get<int64_t>());
        }
        if (v.empty())
          throw RunError(where + ": error: \"prompt_ids\" must be a non-empty list of token ids");
        out.push_back({ids, std::move(v)});
        continue;
      }
      if (row.is_discarded() || !row.is_object() || !row.contains("prompt"))
        throw RunError(where + ": error: each line must be a JSON object with a \"prompt\" "
                       "(a string or a list of messages) or \"prompt_ids\" (token ids)");
      out.push_back({row["prompt"], encode(row["prompt"], where)});
    }
  }
  if (out.empty())
    throw RunError("error: no prompt given (--prompt TEXT or --prompts FILE.jsonl)");
  return out;
}

int generate(const GenerateOptions &g) {
  try {
    auto read = artifact::readArtifact(g.artifact);
    if (!read)
      throw RunError(read.error().message);
    artifact::Artifact &a = *read;
    if (a.manifest.worldSize != 1)
      throw RunError(g.artifact + ": error: compiled for " +
                     std::to_string(a.manifest.worldSize) +
                     " processes; trlc generate runs one: compile the recipe without --nproc");
    const artifact::RunInfo &run = a.plan.run;
    std::optional<data::Tokenizer> tok;
    if (!run.tokenizer.empty())
      tok.emplace(data::Tokenizer::load(run.tokenizer));
    int64_t vocab = run.modelConfig.at("vocab_size").get<int64_t>();
    std::vector<Prompt> prompts = readPrompts(g, tok ? &*tok : nullptr, g.artifact, vocab);

    int threads = g.threads > 0 ? g.threads
                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::unique_ptr<Backend> backend =
        g.device == "cuda" ? makeCudaBackend(0) : makeCpuBackend(threads);
    std::unique_ptr<Communicator> comm = makeCommunicator(g.device);
    Executor ex(a.plan, *backend, comm.get());
    ModelState state(a, ex, *comm);
    state.initialize();
    if (!g.model.empty())
      state.loadPolicyFrom(g.model);

    int64_t eos = specialTokens(a).eos;
    if (eos < 0 && tok && tok->eosId)
      eos = *tok->eosId;
    if (g.eos != -2) {
      if (g.eos < 0 || g.eos >= vocab)
        throw RunError("error: --eos-token-id " + std::to_string(g.eos) +
                       " is not a token id of the model (vocab_size " + std::to_string(vocab) +
                       ")");
      eos = g.eos;
    }
    Generator gen(ex, eos, run.padTokenId);
    Sampling s = g.sampling;
    s.greedy = !g.sample;
    std::mt19937_64 rng(g.seed);
    for (size_t p = 0; p < prompts.size(); ++p)
      if (static_cast<int64_t>(prompts[p].ids.size()) >=
          std::min(gen.slots(), gen.longestPrompt() + 1))
        throw RunError((g.promptsFile.empty() ? "--prompt" : g.promptsFile) + ": error: prompt " +
                       std::to_string(p + 1) + " has " + std::to_string(prompts[p].ids.size()) +
                       " tokens, but the artifact takes prompts of at most " +
                       std::to_string(std::min(gen.slots() - 1, gen.longestPrompt())) +
                       " tokens (its sequence bound leaves room for the completion, GRPO's "
                       "max_prompt_length); shorten it or raise those bounds");
    double seconds = 0;
    int64_t tokens = 0;
    for (size_t start = 0; start < prompts.size(); start += gen.batch()) {
      size_t n = std::min<size_t>(gen.batch(), prompts.size() - start);
      std::vector<std::vector<int64_t>> ids;
      for (size_t r = 0; r < n; ++r)
        ids.push_back(prompts[start + r].ids);
      auto t0 = std::chrono::steady_clock::now();
      std::vector<Completion> got =
          gen.generate(ids, g.maxNewTokens < 0 ? gen.slots() : g.maxNewTokens, s, rng);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      for (const Completion &c : got)
        tokens += static_cast<int64_t>(c.tokens.size());
      for (size_t r = 0; r < n; ++r) {
        std::vector<int32_t> t(got[r].tokens.begin(), got[r].tokens.end());
        std::string text = tok ? tok->decode(t, true) : std::string();
        if (g.promptsFile.empty()) {
          std::cout << text << "\n";
          continue;
        }
        ojson line{{"prompt", prompts[start + r].original}};
        if (tok)
          line["completion"] = text;
        line["completion_ids"] = got[r].tokens;
        line["finished"] = got[r].finished;
        std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      }
    }
    if (g.timing)
      std::cerr << ojson{{"tokens", tokens}, {"seconds", seconds},
                         {"tokens_per_second", tokens / std::max(seconds, 1e-9)}}
                       .dump()
                << "\n";
    return 0;
  } catch (const RunError &e) {
    std::cerr << e.what() << "\n";
  } catch (const data::InputError &e) {
    std::cerr << e.what() << "\n";
  } catch (const KernelError &e) {
    std::cerr << g.artifact << ": error: " << e.what() << "\n";
  } catch (const nlohmann::json::exception &e) {
    std::cerr << g.artifact << "/plan.json: error: malformed run section (" << e.what()
              << "); recompile the artifact with `trlc compile`\n";
  }
  return 1;
}

} // namespace

int generateCommand(int argc, char **argv, std::string &usage) {
  GenerateOptions g;
  Options o;
  auto real = [&](const char *name, double lo, double hi, bool loOpen, double &field) {
    return [&g, name, lo, hi, loOpen, &field](const std::string &v) {
      g.sample = true;
      return number(name, v, lo, hi, loOpen, field);
    };
  };
  o.value("--prompt",
          [&g](const std::string &v) {
            g.prompts.push_back(v);
            return std::string();
          })
      .value("--prompts",
             [&g](const std::string &v) {
               g.promptsFile = v;
               return std::string();
             })
      .value("--model",
             [&g](const std::string &v) {
               g.model = v;
               return std::string();
             })
      .value("--device",
             [&g](const std::string &v) {
               if (v != "cpu" && v != "cuda")
                 return "--device must be cpu or cuda, got '" + v + "'";
               g.device = v;
               return std::string();
             })
      .value("--max-new-tokens",
             [&g](const std::string &v) {
               return positiveInteger("--max-new-tokens", v, 1 << 20, "tokens", g.maxNewTokens);
             })
      .value("--threads", [&g](const std::string &v) { return threadCount(v, g.threads); })
      .value("--seed",
             [&g](const std::string &v) {
               int64_t n = 0;
               std::string err = v == "0" ? "" : positiveInteger("--seed", v, INT64_MAX, "", n);
               g.seed = static_cast<uint64_t>(n);
               return err;
             })
      .value("--temperature", real("--temperature", 0, 100, true, g.sampling.temperature))
      .value("--top-p", real("--top-p", 0, 1, true, g.sampling.topP))
      .value("--min-p", real("--min-p", 0, 1, false, g.sampling.minP))
      .value("--repetition-penalty",
             real("--repetition-penalty", 0, 100, true, g.sampling.repetitionPenalty))
      .value("--top-k",
             [&g](const std::string &v) {
               g.sample = true;
               return positiveInteger("--top-k", v, 1 << 24, "tokens", g.sampling.topK);
             })
      .value("--eos-token-id",
             [&g](const std::string &v) {
               int64_t n = 0;
               std::string err =
                   v == "0" ? "" : positiveInteger("--eos-token-id", v, INT64_MAX, "", n);
               g.eos = n;
               return err;
             })
      .flag("--sample", [&g] { g.sample = true; })
      .flag("--timing", [&g] { g.timing = true; })
      .positional([&g](const std::string &arg) {
        if (!g.artifact.empty())
          return "more than one artifact given ('" + g.artifact + "' and '" + arg + "')";
        g.artifact = arg;
        return std::string();
      })
      .unknown([](const std::string &arg, const std::vector<std::string> &names) {
        std::string list;
        for (const std::string &n : names)
          list += (list.empty() ? "" : ", ") + n;
        return "unknown option '" + arg + "' (generate takes " + list + ")";
      });
  usage = o.parse(argc, argv, 2);
  if (usage.empty() && g.artifact.empty())
    usage = "generate needs an artifact: trlc generate OUT.trlc --prompt TEXT";
  if (usage.empty() && g.prompts.empty() && g.promptsFile.empty())
    usage = "generate needs --prompt TEXT or --prompts FILE.jsonl";
  return usage.empty() ? generate(g) : 2;
}

} // namespace trlc::cli
