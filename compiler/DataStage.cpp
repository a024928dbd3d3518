//===- DataStage.cpp - the data plan of a compile -------------------------===//

#include "compiler/DataStage.h"

#include "trlc/Files.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

namespace fs = std::filesystem;
using nlohmann::json;

namespace trlc::compiler {

namespace {

std::vector<std::string> absolutePaths(std::vector<std::string> files) {
  for (std::string &f : files)
    f = fs::absolute(f).lexically_normal().string();
  return files;
}

/// The facts of an index (fresh or reused).
DataFacts factsOf(const json &index) {
  DataFacts f;
  f.rows = index.value("train_rows", int64_t(0));
  f.tokens = index.value("tokens", int64_t(0));
  f.longest = index.value("max_length", int64_t(0));
  f.evalLongest = index.value("eval_max_length", int64_t(0));
  f.longestBatch = index.value("longest_batch", int64_t(0));
  json histogram = index.value("length_histogram", json::object());
  for (auto &[bucket, n] : histogram.items())
    f.lengthHistogram[std::stoll(bucket)] = n.get<int64_t>();
  f.hash = index.value("hash", std::string());
  return f;
}

std::vector<TokenRow> tokenRows(std::vector<data::Row> rows) {
  std::vector<TokenRow> out;
  out.reserve(rows.size());
  for (data::Row &r : rows)
    out.push_back({std::move(r.ids), std::move(r.mask), std::move(r.seqLengths)});
  return out;
}

} // namespace

data::DataConfig dataConfig(const Recipe &r, bool eval) {
  data::DataConfig c;
  // Evaluation is greedy generation on prompt-completion rows, whatever
  // the method trains on.
  c.method = eval ? "sft" : methodName(r.method);
  c.files = eval ? r.data.eval : r.data.train;
  c.where = eval ? r.data.evalWhere : r.data.trainWhere;
  c.format = r.data.format;
  c.datasetTextField = r.data.datasetTextField;
  c.skipBadRows = r.data.onBadRow == "skip";
  if (r.model.tokenizer)
    c.tokenizer = *r.model.tokenizer;
  else if (r.model.path)
    c.tokenizer = *r.model.path;
  c.chatTemplatePath = r.data.chatTemplatePath.value_or("");
  c.maxLength = r.data.maxLength;
  if (eval && isOnline(r.method) && r.data.maxPromptLength && r.data.maxCompletionLength)
    c.maxLength = *r.data.maxPromptLength + *r.data.maxCompletionLength;  // the step's bound
  c.maxPromptLength = r.data.maxPromptLength;
  c.maxCompletionLength = r.data.maxCompletionLength;
  c.truncation = r.data.truncationMode == "keep_end" ? data::TruncationMode::KeepEnd
                                                     : data::TruncationMode::KeepStart;
  c.packing = r.data.packing && !eval;
  c.packingStrategy = r.data.packingStrategy;
  c.paddingFree = r.data.paddingFree && !eval;
  c.completionOnlyLoss = r.data.completionOnlyLoss;
  c.assistantOnlyLoss = r.data.assistantOnlyLoss;
  c.vocabSize = r.model.config.vocabSize;
  c.batchSize = r.train.perDeviceTrainBatchSize;
  return c;
}

std::optional<Error> PreparedData::write(const std::string &artifact) const {
  if (reused)
    return std::nullopt;
  fs::path dir = fs::path(artifact) / "data";
  std::error_code ec;
  fs::create_directories(dir, ec);
  try {
    writeShard((dir / "train.bin").string(), train);
    if (!eval.empty())
      writeShard((dir / "eval.bin").string(), eval);
    else
      fs::remove(dir / "eval.bin", ec);
  } catch (const std::exception &e) {
    return Error{e.what()};
  }
  if (!vocab.empty()) {
    if (auto e = writeFileAtomic((dir / "vocab.json").string(), json(vocab).dump() + "\n"))
      return Error{*e};
  } else {
    fs::remove(dir / "vocab.json", ec);
  }
  if (!columns.empty()) {
    std::string text;
    for (const std::string &c : columns)
      text += c + "\n";
    if (auto e = writeFileAtomic((dir / "columns.jsonl").string(), text))
      return Error{*e};
  } else {
    fs::remove(dir / "columns.jsonl", ec);
  }
  if (auto e = writeFileAtomic((dir / "index.json").string(), index.dump(1) + "\n"))
    return Error{*e};
  return std::nullopt;
}

Expected<PreparedData> prepareData(const Recipe &r, const std::string &artifact) {
  PreparedData d;
  data::DataConfig train = dataConfig(r, false), eval = dataConfig(r, true);
  // Packed rows feed the step through trl-packing-layout (SFT); so do
  // padding-free rows (one batch of examples back to back per row).
  train.packing = train.packing && r.method == Method::SFT;
  train.paddingFree = train.paddingFree && !train.packing && r.method == Method::SFT;
  std::vector<std::string> sources, evalSources;
  try {
    sources = data::expandFiles(train.files, train.where);
    if (!eval.files.empty())
      evalSources = data::expandFiles(eval.files, eval.where);
  } catch (const data::InputError &e) {
    return Error{e.what()};
  }
  std::vector<std::string> hashed = sources;
  hashed.insert(hashed.end(), evalSources.begin(), evalSources.end());
  std::vector<std::string> tokenizerFiles;
  if (!train.tokenizer.empty())
    for (const char *f : {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"})
      if (pathExists(fs::path(train.tokenizer) / f))
        tokenizerFiles.push_back((fs::path(train.tokenizer) / f).string());
  if (!train.chatTemplatePath.empty())
    tokenizerFiles.push_back(train.chatTemplatePath);
  json settings = {
      {"method", train.method}, {"format", train.format},
      {"dataset_text_field", train.datasetTextField}, {"skip_bad_rows", train.skipBadRows},
      {"max_length", train.maxLength.value_or(-1)},
      {"max_prompt_length", train.maxPromptLength.value_or(-1)},
      {"max_completion_length", train.maxCompletionLength.value_or(-1)},
      {"truncation_mode", r.data.truncationMode},
      {"completion_only_loss", train.completionOnlyLoss.value_or(true)},
      {"assistant_only_loss", train.assistantOnlyLoss}, {"vocab_size", train.vocabSize},
      {"packing", train.packing}, {"packing_strategy", train.packingStrategy},
      {"padding_free", train.paddingFree}, {"batch_size", train.batchSize},
      {"tokenizer", hashFiles(tokenizerFiles)}, {"data_plan_version", 4}};
  std::string hash = hashFiles(hashed);
  d.shards.trainShard = "data/train.bin";
  d.shards.evalShard = evalSources.empty() ? "" : "data/eval.bin";
  d.shards.sources = absolutePaths(hashed);
  d.shards.hash = hash;

  fs::path dataDir = fs::path(artifact) / "data";
  if (pathExists(dataDir / "index.json")) {
    try {
      json old = json::parse(std::ifstream(dataDir / "index.json"));
      if (old.value("hash", "") == hash && old.value("settings", json()) == settings &&
          pathExists(dataDir / "train.bin") &&
          (evalSources.empty() || pathExists(dataDir / "eval.bin")) &&
          (!isOnline(r.method) || pathExists(dataDir / "columns.jsonl"))) {
        d.index = old;
        d.facts = factsOf(old);
        d.reused = true;
        if ((!evalSources.empty() || isOnline(r.method)) &&
            pathExists(dataDir / "vocab.json"))
          d.shards.vocab = "data/vocab.json";
        if (isOnline(r.method))
          d.shards.columns = "data/columns.jsonl";
        d.summary = "data: unchanged since the last compile (hash " + hash +
                    "), reusing the token shards\n";
        return d;
      }
    } catch (const std::exception &) {
      // Damaged index: rebuild.
    }
  }

  try {
    data::DataPlan plan = data::runDataPlan(train);
    int64_t rows;
    if (r.method == Method::SFT) {
      d.train = tokenRows(std::move(plan.rows));
      rows = static_cast<int64_t>(d.train.size());
    } else {
      // One row per example: DPO's (and reward modelling's) chosen and
      // rejected sequences, KTO's example and its KL pair, each as a
      // document of the row.
      bool twoDocs = r.method == Method::DPO || r.method == Method::KTO ||
                     r.method == Method::Reward;
      for (data::PairedExample &e : plan.examples) {
        int64_t length = static_cast<int64_t>(e.chosen.ids.size());
        TokenRow row{std::move(e.chosen.ids), std::move(e.chosen.mask), {length}, e.label};
        if (twoDocs) {
          row.ids.insert(row.ids.end(), e.rejected.ids.begin(), e.rejected.ids.end());
          row.mask.insert(row.mask.end(), e.rejected.mask.begin(), e.rejected.mask.end());
          row.seqLengths.push_back(static_cast<int64_t>(e.rejected.ids.size()));
        }
        d.train.push_back(std::move(row));
        if (isOnline(r.method))
          d.columns.push_back(e.columns.empty() ? "{}" : e.columns);
      }
      rows = static_cast<int64_t>(plan.examples.size());
      if (isOnline(r.method))
        d.shards.columns = "data/columns.jsonl";
    }
    if (!evalSources.empty())
      d.eval = tokenRows(data::runDataPlan(eval).rows);
    // The vocabulary decodes eval completions and, for GRPO, the
    // completions its rewards read.
    if (!evalSources.empty() || isOnline(r.method)) {
      if (!eval.tokenizer.empty()) {
        data::Tokenizer tokenizer = data::Tokenizer::load(eval.tokenizer);
        // Each token's text as the tokenizer decodes it alone (byte-level
        // "Ġthe" is " the"), so the eval prints readable completions.
        for (int64_t id = 0; id < tokenizer.vocabSize(); ++id)
          d.vocab.push_back(tokenizer.decode({static_cast<int32_t>(id)}));
        d.shards.vocab = "data/vocab.json";
      }
    }
    int64_t tokens = 0, longest = 0;
    std::map<int64_t, int64_t> histogram;
    // Over the sequences the step holds: SFT rows; the documents of a
    // preference row (KTO's KL pair counts towards the longest only).
    auto count = [&](int64_t len, bool trained) {
      longest = std::max(longest, len);
      if (!trained)
        return;
      tokens += len;
      int64_t bucket = 1;
      while (bucket < len)
        bucket *= 2;
      ++histogram[bucket];
    };
    for (const TokenRow &row : d.train) {
      if (r.method == Method::SFT) {
        count(static_cast<int64_t>(row.ids.size()), true);
        continue;
      }
      for (size_t k = 0; k < row.seqLengths.size(); ++k)
        count(row.seqLengths[k], !(r.method == Method::KTO && k == 1));
    }
    json hist = json::object();
    for (auto [b, n] : histogram)
      hist[std::to_string(b)] = n;
    int64_t skipped = 0, dropped = 0;
    for (auto &[k, n] : plan.stats.skipped)
      skipped += n;
    for (auto &[k, n] : plan.stats.dropped)
      dropped += n;
    // The batch of the longest rows (every sequence of a row counted).
    std::vector<int64_t> rowTokens;
    for (const TokenRow &row : d.train)
      rowTokens.push_back(static_cast<int64_t>(row.ids.size()));
    size_t top = std::min(rowTokens.size(), static_cast<size_t>(std::max<int64_t>(train.batchSize, 1)));
    std::partial_sort(rowTokens.begin(), rowTokens.begin() + top, rowTokens.end(),
                      std::greater<int64_t>());
    int64_t longestBatch = 0;
    for (size_t k = 0; k < top; ++k)
      longestBatch += rowTokens[k];
    int64_t evalLongest = 0;
    for (const TokenRow &row : d.eval)
      evalLongest = std::max<int64_t>(evalLongest, static_cast<int64_t>(row.ids.size()));
    d.index = {{"hash", hash}, {"settings", settings}, {"sources", absolutePaths(hashed)},
               {"eval_max_length", evalLongest}, {"longest_batch", longestBatch},
               {"format", plan.stats.format}, {"train_rows", rows},
               {"eval_rows", d.eval.size()}, {"tokens", tokens},
               {"max_length", longest}, {"length_histogram", hist},
               {"rows_read", plan.stats.rowsRead}, {"bad_rows_skipped", skipped},
               {"examples_dropped", dropped}, {"examples_truncated", plan.stats.truncated},
               {"packing", train.packing}, {"padding_free", train.paddingFree}};
    d.facts = factsOf(d.index);
    if (rows == 0) {
      std::string why;
      for (auto &[k, n] : plan.stats.dropped)
        why += (why.empty() ? "" : ", ") + k + ": " + std::to_string(n);
      for (auto &[k, n] : plan.stats.skipped)
        why += (why.empty() ? "" : ", ") + k + " (skipped): " + std::to_string(n);
      return Error{train.where + ": error: no training example is left after the data "
                   "plan: " + std::to_string(plan.stats.rowsRead) + " rows read, none kept (" +
                   why + "); check [data] max_length, truncation_mode and "
                   "completion_only_loss (trlc data --stats shows the plan)"};
    }
    d.summary = "data: " + std::to_string(plan.stats.rowsRead) + " rows read (" +
                plan.stats.format + "), " + std::to_string(rows) + " training rows, " +
                std::to_string(tokens) + " tokens, longest " + std::to_string(longest) +
                (skipped ? ", " + std::to_string(skipped) + " bad rows skipped" : "") +
                (dropped ? ", " + std::to_string(dropped) + " examples dropped" : "") + "\n";
  } catch (const data::InputError &e) {
    return Error{e.what()};
  }
  return d;
}

// --- trlc data -------------------------------------------------------------

namespace {

/// Padding when batches of `batch` rows are padded to their longest row.
double paddingFraction(const std::vector<int64_t> &lengths, int64_t batch) {
  int64_t tokens = 0, padded = 0;
  for (size_t k = 0; k < lengths.size(); k += batch) {
    int64_t longest = 0, n = 0;
    for (size_t j = k; j < std::min(lengths.size(), k + size_t(batch)); ++j, ++n) {
      longest = std::max(longest, lengths[j]);
      tokens += lengths[j];
    }
    padded += longest * n;
  }
  return padded ? 1.0 - double(tokens) / double(padded) : 0.0;
}

void printDataStats(std::ostream &out, const Recipe &r, const data::DataConfig &c,
                    const data::DataPlan &plan) {
  const data::DataStats &st = plan.stats;
  auto pct = [](double x) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%.1f%%", 100 * x);
    return std::string(buf);
  };
  out << "format: " << st.format << (st.conversational ? " (conversational)" : "") << "\n"
      << "examples read: " << st.rowsRead << "\n";
  // "LABEL: TOTAL (reason: n) ..."
  auto counts = [&](const char *label, const auto &byReason) {
    int64_t total = 0;
    for (auto &[why, n] : byReason)
      total += n;
    out << label << ": " << total;
    for (auto &[why, n] : byReason)
      out << " (" << why << ": " << n << ")";
    out << "\n";
  };
  counts("bad rows skipped", st.skipped);
  counts("examples dropped", st.dropped);
  out << "examples truncated: " << st.truncated << "\n";

  std::vector<int64_t> docs, rows;
  int64_t tokens = 0;
  if (r.method == Method::SFT) {
    for (const data::Row &row : plan.rows) {
      rows.push_back(static_cast<int64_t>(row.ids.size()));
      tokens += rows.back();
      if (row.seqLengths.empty())
        docs.push_back(rows.back());
      for (int64_t len : row.seqLengths)
        docs.push_back(len);
    }
  } else {
    for (const data::PairedExample &e : plan.examples) {
      for (const data::Sequence *s : {&e.chosen, &e.rejected}) {
        if (s->ids.empty())
          continue;
        docs.push_back(static_cast<int64_t>(s->ids.size()));
        rows.push_back(docs.back());
        tokens += docs.back();
      }
    }
  }
  out << "tokens: " << tokens << "\n"
      << "rows: " << rows.size();
  if (c.packing)
    out << " (packed, " << c.packingStrategy << ", seq_length " << plan.maxLength << ")";
  else if (c.paddingFree)
    out << " (padding-free, " << c.batchSize << " examples per row)";
  out << "\n";
  int64_t batch = r.train.perDeviceTrainBatchSize;
  out << "padding before packing: " << pct(paddingFraction(docs, batch)) << "\n"
      << "padding after packing: " << pct(c.paddingFree ? 0.0 : paddingFraction(rows, batch))
      << "\n";
  std::map<int64_t, int64_t> histogram;  // power-of-two bucket -> sequences
  for (int64_t len : docs) {
    int64_t bucket = 1;
    while (bucket < len)
      bucket *= 2;
    ++histogram[bucket];
  }
  out << "sequence lengths (up to):";
  for (auto [bucket, count] : histogram)
    out << " " << bucket << ":" << count;
  out << "\n";
}

json rowJson(const data::Row &row) {
  std::vector<int> mask(row.mask.begin(), row.mask.end());
  return {{"input_ids", row.ids},
          {"seq_lengths", row.seqLengths},
          {"position_ids", row.positions()},
          {"completion_mask", mask}};
}

} // namespace

int dataCommand(const DataRequest &request, std::ostream &out, std::ostream &err) {
  auto recipe = loadRecipe(request.recipe, request.overrides);
  if (!recipe) {
    err << recipe.error().message << "\n";
    return 1;
  }
  if (auto e = checkInputFiles(*recipe)) {
    err << e->message << "\n";
    return 1;
  }
  const Recipe &r = *recipe;
  data::DataConfig config = dataConfig(r, false);
  data::DataPlan plan;
  try {
    plan = data::runDataPlan(config);
  } catch (const data::InputError &e) {
    err << e.what() << "\n";
    return 1;
  }
  if (request.jsonl) {
    int64_t n = 0;
    auto more = [&] { return request.limit < 0 || n++ < request.limit; };
    if (r.method == Method::SFT) {
      for (const data::Row &row : plan.rows) {
        if (!more())
          break;
        json j = rowJson(row);
        if (config.paddingFree || config.packing) {
          std::vector<int64_t> cu{0};
          for (int64_t len : row.seqLengths)
            cu.push_back(cu.back() + len);
          if (row.seqLengths.empty())  // wrapped: one attention span
            cu.push_back(static_cast<int64_t>(row.ids.size()));
          j["cu_seqlens"] = cu;
        }
        out << j.dump() << "\n";
      }
    } else {
      auto seqRow = [](const data::Sequence &s) {
        return data::Row{s.ids, s.mask, {static_cast<int64_t>(s.ids.size())}};
      };
      for (size_t k = 0; k < plan.examples.size() && more(); ++k) {
        const data::PairedExample &e = plan.examples[k];
        json j = rowJson(seqRow(e.chosen));
        j["example"] = k;
        if (r.method == Method::DPO || r.method == Method::Reward) {
          j["kind"] = "chosen";
          out << j.dump() << "\n";
          if (!more())
            break;
          j = rowJson(seqRow(e.rejected));
          j["example"] = k;
          j["kind"] = "rejected";
        } else if (r.method == Method::KTO) {
          j["label"] = e.label;
          j["kl_input_ids"] = e.rejected.ids;
        }
        out << j.dump() << "\n";
      }
    }
  }
  if (request.stats)
    printDataStats(request.jsonl ? err : out, r, config, plan);
  return 0;
}

} // namespace trlc::compiler
