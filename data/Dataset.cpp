//===- Dataset.cpp - the data plan: JSONL rows to training rows -----------===//

#include "data/Dataset.h"
#include "trlc/Files.h"
#include "data/Chat.h"

#include <nlohmann/json.hpp>
#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <glob.h>
#include <memory>

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace trlc::data {
namespace {

enum class Format { LanguageModeling, PromptCompletion, Preference, UnpairedPreference,
                    PromptOnly, Tokenized };

const char *formatName(Format f) {
  switch (f) {
  case Format::LanguageModeling: return "language_modeling";
  case Format::PromptCompletion: return "prompt_completion";
  case Format::Preference: return "preference";
  case Format::UnpairedPreference: return "unpaired_preference";
  case Format::PromptOnly: return "prompt_only";
  case Format::Tokenized: return "tokenized";
  }
  return "";
}

/// A row problem: the reason (for counts) and the message.
struct BadRow {
  std::string reason, message;
};

ojson toJson(simdjson::dom::element e) {
  using T = simdjson::dom::element_type;
  switch (e.type()) {
  case T::OBJECT: {
    ojson o = ojson::object();
    simdjson::dom::object obj = e.get_object().value_unsafe();
    for (auto field : obj)
      o[std::string(field.key)] = toJson(field.value);
    return o;
  }
  case T::ARRAY: {
    ojson a = ojson::array();
    simdjson::dom::array arr = e.get_array().value_unsafe();
    for (auto x : arr)
      a.push_back(toJson(x));
    return a;
  }
  case T::STRING: return std::string(e.get_string().value_unsafe());
  case T::INT64: return e.get_int64().value_unsafe();
  case T::UINT64: return e.get_uint64().value_unsafe();
  case T::DOUBLE: return e.get_double().value_unsafe();
  case T::BOOL: return e.get_bool().value_unsafe();
  default: return nullptr;
  }
}

/// A text field: a string, or a conversation (list of messages).
struct Text {
  bool conversational = false;
  std::string str;
  ojson messages;
};

std::vector<int64_t> widen(const std::vector<int32_t> &ids) {
  return std::vector<int64_t>(ids.begin(), ids.end());
}

size_t commonPrefix(const std::vector<int64_t> &a, const std::vector<int64_t> &b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n])
    ++n;
  return n;
}

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// REFERENCE.md's DPO truncation of one side: prompt keeps its end
/// (max_prompt_length), the completion its start (max_completion_length),
/// then max_length over both by truncation_mode. `cut` is set when
/// anything was cut.
Sequence truncatePair(const DataConfig &c, std::vector<int64_t> prompt,
                      std::vector<int64_t> completion, bool &cut) {
  if (c.maxPromptLength && static_cast<int64_t>(prompt.size()) > *c.maxPromptLength) {
    prompt.erase(prompt.begin(), prompt.end() - *c.maxPromptLength);
    cut = true;
  }
  if (c.maxCompletionLength && static_cast<int64_t>(completion.size()) > *c.maxCompletionLength) {
    completion.resize(*c.maxCompletionLength);
    cut = true;
  }
  Sequence s;
  s.ids = prompt;
  s.ids.insert(s.ids.end(), completion.begin(), completion.end());
  s.mask.assign(prompt.size(), 0);
  s.mask.insert(s.mask.end(), completion.size(), 1);
  if (c.maxLength && static_cast<int64_t>(s.ids.size()) > *c.maxLength) {
    cut = true;
    if (c.truncation == TruncationMode::KeepStart) {
      s.ids.resize(*c.maxLength);
      s.mask.resize(*c.maxLength);
    } else {
      size_t drop = s.ids.size() - *c.maxLength;
      s.ids.erase(s.ids.begin(), s.ids.begin() + drop);
      s.mask.erase(s.mask.begin(), s.mask.begin() + drop);
    }
  }
  return s;
}

/// Tokenizes one row of the dataset for one method.
class RowEncoder {
public:
  RowEncoder(const DataConfig &c, const Tokenizer *tok, const ChatTemplate *chat, Format f)
      : c_(c), tok_(tok), chat_(chat), format_(f) {}

  /// Fills `seq` (sft) or `ex` (others); returns the problem, if any.
  std::optional<BadRow> encode(simdjson::dom::object obj, Sequence &seq,
                               PairedExample &ex) const {
    try {
      switch (format_) {
      case Format::Tokenized:
        if (c_.method == "dpo" || c_.method == "reward")
          return tokenizedPreference(obj, ex);
        if (c_.method == "kto")
          return tokenizedUnpaired(obj, ex);
        return tokenized(obj, seq);
      case Format::LanguageModeling: return languageModeling(obj, seq);
      case Format::PromptCompletion:
        if (c_.method == "kto")
          return unpaired(obj, ex);
        return promptCompletion(obj, seq);
      case Format::Preference: return preference(obj, ex);
      case Format::UnpairedPreference: return unpaired(obj, ex);
      case Format::PromptOnly: return promptOnly(obj, ex);
      }
    } catch (const jinja::TemplateError &e) {
      return BadRow{"chat template error", e.what()};
    } catch (const InputError &e) {
      return BadRow{"tokenizer error", e.what()};
    }
    return std::nullopt;
  }

private:
  const DataConfig &c_;
  const Tokenizer *tok_;
  const ChatTemplate *chat_;
  Format format_;

  static std::optional<BadRow> missing(const std::string &key) {
    return BadRow{"missing field", "the row has no \"" + key + "\" field"};
  }

  /// Reads a string or conversation field.
  std::optional<BadRow> text(simdjson::dom::object obj, const std::string &key, Text &out,
                             bool required = true) const {
    simdjson::dom::element e;
    if (obj.at_key(key).get(e)) {
      if (required)
        return missing(key);
      return std::nullopt;
    }
    if (e.is_string()) {
      out.str = std::string(e.get_string().value_unsafe());
      if (out.str.empty())
        return BadRow{"empty text", "\"" + key + "\" is an empty string"};
      return std::nullopt;
    }
    if (e.is_array()) {
      out.conversational = true;
      out.messages = toJson(e);
      if (out.messages.empty())
        return BadRow{"empty text", "\"" + key + "\" is an empty conversation"};
      for (const ojson &m : out.messages)
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
            !m.contains("content"))
          return BadRow{"wrong type", "\"" + key +
                                          "\" must be a string or a list of "
                                          "{\"role\": ..., \"content\": ...} messages"};
      if (!chat_)
        return BadRow{"no chat template",
                      "\"" + key + "\" is a conversation but the tokenizer has no "
                      "chat_template; set [data] chat_template_path"};
      return std::nullopt;
    }
    return BadRow{"wrong type", "\"" + key + "\" must be a string or a list of messages"};
  }

  std::vector<int64_t> encodeText(const std::string &s, bool special = true) const {
    return widen(tok_->encode(s, special));
  }

  std::string withEos(std::string s) const {
    if (!tok_->eosToken.empty() && !endsWith(s, tok_->eosToken))
      s += tok_->eosToken;
    return s;
  }

  static ojson concat(const ojson &a, const ojson &b) {
    ojson r = a;
    for (const ojson &m : b)
      r.push_back(m);
    return r;
  }

  std::optional<BadRow> tokenized(simdjson::dom::object obj, Sequence &seq) const {
    simdjson::dom::element ids;
    if (obj.at_key("input_ids").get(ids))
      return missing("input_ids");
    simdjson::dom::array arr;
    if (ids.get_array().get(arr))
      return BadRow{"wrong type", "\"input_ids\" must be a list of token ids"};
    for (auto v : arr) {
      int64_t id;
      if (v.get_int64().get(id))
        return BadRow{"wrong type", "\"input_ids\" must hold integers"};
      if (id < 0 || (c_.vocabSize > 0 && id >= c_.vocabSize))
        return BadRow{"id out of range", "token id " + std::to_string(id) +
                                             " is outside the vocabulary [0, " +
                                             std::to_string(c_.vocabSize) + ")"};
      seq.ids.push_back(id);
    }
    if (seq.ids.empty())
      return BadRow{"empty text", "\"input_ids\" is empty"};
    seq.mask.assign(seq.ids.size(), 1);
    for (const char *key : {"completion_mask", "assistant_masks"}) {
      if (std::string(key) == "completion_mask" && c_.completionOnlyLoss == false)
        continue;
      simdjson::dom::element m;
      if (obj.at_key(key).get(m))
        continue;
      simdjson::dom::array ma;
      if (m.get_array().get(ma) || ma.size() != seq.ids.size())
        return BadRow{"wrong type", std::string("\"") + key +
                                        "\" must be a list of 0/1 as long as input_ids"};
      size_t k = 0;
      for (auto v : ma) {
        int64_t bit;
        if (v.get_int64().get(bit) || (bit != 0 && bit != 1))
          return BadRow{"wrong type", std::string("\"") + key + "\" must hold 0 or 1"};
        seq.mask[k++] &= static_cast<uint8_t>(bit);
      }
    }
    return std::nullopt;
  }

  /// A list of token ids `key` (pre-tokenized preference data).
  std::optional<BadRow> idList(simdjson::dom::object obj, const char *key,
                               std::vector<int64_t> &out, bool allowEmpty) const {
    simdjson::dom::element e;
    if (obj.at_key(key).get(e))
      return missing(key);
    simdjson::dom::array arr;
    if (e.get_array().get(arr))
      return BadRow{"wrong type", std::string("\"") + key + "\" must be a list of token ids"};
    for (auto v : arr) {
      int64_t id;
      if (v.get_int64().get(id))
        return BadRow{"wrong type", std::string("\"") + key + "\" must hold integers"};
      if (id < 0 || (c_.vocabSize > 0 && id >= c_.vocabSize))
        return BadRow{"id out of range", "token id " + std::to_string(id) + " in \"" + key +
                                             "\" is outside the vocabulary [0, " +
                                             std::to_string(c_.vocabSize) + ")"};
      out.push_back(id);
    }
    if (out.empty() && !allowEmpty)
      return BadRow{"empty text", std::string("\"") + key + "\" is empty"};
    return std::nullopt;
  }

  /// DPO rows as TRL's tokenize_row leaves them: prompt_input_ids,
  /// chosen_input_ids, rejected_input_ids, used as given (no EOS added).
  std::optional<BadRow> tokenizedPreference(simdjson::dom::object obj, PairedExample &ex) const {
    std::vector<int64_t> prompt, chosen, rejected;
    if (auto bad = idList(obj, "prompt_input_ids", prompt, true))
      return bad;
    if (auto bad = idList(obj, "chosen_input_ids", chosen, false))
      return bad;
    if (auto bad = idList(obj, "rejected_input_ids", rejected, false))
      return bad;
    if (auto drop = promptTooLong(prompt.size()))
      return drop;
    bool cut = false;
    ex.chosen = truncateSide(prompt, chosen, cut);
    ex.rejected = truncateSide(prompt, rejected, cut);
    return pairCut(cut);
  }

  /// KTO rows: prompt_input_ids, completion_input_ids and label.
  std::optional<BadRow> tokenizedUnpaired(simdjson::dom::object obj, PairedExample &ex) const {
    if (auto bad = label(obj, ex))
      return bad;
    if (auto bad = idList(obj, "prompt_input_ids", ex.prompt, true))
      return bad;
    if (auto bad = idList(obj, "completion_input_ids", ex.completion, false))
      return bad;
    if (auto drop = promptTooLong(ex.prompt.size()))
      return drop;
    bool cut = false;
    ex.chosen = truncateSide(ex.prompt, ex.completion, cut);
    if (cut)
      return BadRow{"truncated", ""};
    return std::nullopt;
  }

  static std::optional<BadRow> label(simdjson::dom::object obj, PairedExample &ex) {
    simdjson::dom::element label;
    if (obj.at_key("label").get(label))
      return missing("label");
    if (label.get_bool().get(ex.label))
      return BadRow{"wrong type", "\"label\" must be true or false (JSON booleans, "
                                  "not strings or numbers)"};
    return std::nullopt;
  }

  std::optional<BadRow> languageModeling(simdjson::dom::object obj, Sequence &seq) const {
    Text t;
    simdjson::dom::element probe;
    bool hasText = !obj.at_key(c_.datasetTextField).get(probe);
    if (auto bad = text(obj, hasText ? c_.datasetTextField : "messages", t))
      return bad;
    if (!t.conversational) {
      seq.ids = encodeText(withEos(t.str));
      seq.mask.assign(seq.ids.size(), 1);
      return std::nullopt;
    }
    ChatEncoding enc = chat_->encode(t.messages, nullptr, false, c_.assistantOnlyLoss);
    seq.ids = widen(enc.ids);
    if (c_.assistantOnlyLoss) {
      seq.mask = enc.assistantMask;
      if (std::find(seq.mask.begin(), seq.mask.end(), 1) == seq.mask.end())
        return BadRow{"no assistant tokens",
                      "assistant_only_loss is on but the chat template marks no "
                      "assistant token in this row (does it have {% generation %}?)"};
    } else {
      seq.mask.assign(seq.ids.size(), 1);
    }
    return std::nullopt;
  }

  std::optional<BadRow> promptCompletion(simdjson::dom::object obj, Sequence &seq) const {
    Text p, c;
    if (auto bad = text(obj, "prompt", p))
      return bad;
    if (auto bad = text(obj, "completion", c))
      return bad;
    if (p.conversational != c.conversational)
      return BadRow{"wrong type", "\"prompt\" and \"completion\" must both be strings "
                                  "or both conversations"};
    std::vector<int64_t> promptIds;
    std::vector<uint8_t> assistant;
    if (!p.conversational) {
      promptIds = encodeText(p.str);
      seq.ids = encodeText(p.str + withEos(c.str));
    } else {
      promptIds = widen(chat_->encode(p.messages, nullptr, true, false).ids);
      ChatEncoding enc =
          chat_->encode(concat(p.messages, c.messages), nullptr, false, c_.assistantOnlyLoss);
      seq.ids = widen(enc.ids);
      assistant = std::move(enc.assistantMask);
    }
    size_t promptLen = commonPrefix(promptIds, seq.ids);
    seq.mask.assign(seq.ids.size(), 1);
    if (c_.completionOnlyLoss.value_or(true))
      std::fill(seq.mask.begin(), seq.mask.begin() + promptLen, 0);
    if (c_.assistantOnlyLoss && p.conversational)
      for (size_t k = 0; k < seq.mask.size(); ++k)
        seq.mask[k] &= assistant[k];
    return std::nullopt;
  }

  /// prompt / completion ids of one side, TRL style: the completion starts
  /// where the tokenized prompt and prompt + completion diverge.
  void split(const Text &p, const Text &c, std::vector<int64_t> &promptIds,
             std::vector<int64_t> &full) const {
    if (!p.conversational) {
      promptIds = encodeText(p.str);
      full = encodeText(p.str + withEos(c.str));
    } else {
      promptIds = widen(chat_->encode(p.messages, nullptr, true, false).ids);
      full = widen(chat_->encode(concat(p.messages, c.messages), nullptr, false, false).ids);
    }
  }

  Sequence truncateSide(std::vector<int64_t> prompt, std::vector<int64_t> completion,
                        bool &cut) const {
    return truncatePair(c_, std::move(prompt), std::move(completion), cut);
  }

  /// A preference pair that did not fit: DPO keeps it truncated; reward
  /// modelling drops it (TRL's RewardTrainer filters pairs longer than
  /// max_length, the only length limit it has), counted in the data stats.
  std::optional<BadRow> pairCut(bool cut) const {
    if (!cut)
      return std::nullopt;
    if (c_.method == "reward")
      return BadRow{"drop:longer than max_length", ""};
    return BadRow{"truncated", ""};
  }

  std::optional<BadRow> promptTooLong(size_t promptLen) const {
    int64_t p = static_cast<int64_t>(promptLen);
    if (c_.maxPromptLength)
      p = std::min(p, *c_.maxPromptLength);
    if (c_.maxLength && p >= *c_.maxLength)
      return BadRow{"drop:prompt fills max_length", ""};
    return std::nullopt;
  }

  /// TRL's extract_prompt for the implicit-prompt preference form.
  static void extractPrompt(Text &prompt, Text &chosen, Text &rejected) {
    prompt.conversational = chosen.conversational;
    if (chosen.conversational) {
      size_t n = 0;
      while (n < chosen.messages.size() && n < rejected.messages.size() &&
             chosen.messages[n] == rejected.messages[n])
        ++n;
      prompt.messages = ojson::array();
      ojson c = ojson::array(), r = ojson::array();
      for (size_t k = 0; k < chosen.messages.size(); ++k)
        (k < n ? prompt.messages : c).push_back(chosen.messages[k]);
      for (size_t k = n; k < rejected.messages.size(); ++k)
        r.push_back(rejected.messages[k]);
      chosen.messages = c;
      rejected.messages = r;
      return;
    }
    size_t idx = 0, n = std::min(chosen.str.size(), rejected.str.size());
    while (idx < n && chosen.str[idx] == rejected.str[idx])
      ++idx;
    if (idx < n && idx > 0 && chosen.str[idx - 1] == ' ')
      --idx;
    prompt.str = chosen.str.substr(0, idx);
    chosen.str = chosen.str.substr(idx);
    rejected.str = rejected.str.substr(idx);
  }

  std::optional<BadRow> preference(simdjson::dom::object obj, PairedExample &ex) const {
    simdjson::dom::element margin;
    if (c_.method == "reward" && !obj.at_key("margin").get(margin))
      return BadRow{"unsupported", "\"margin\" (TRL's per-pair reward margin) is not supported "
                                   "yet; remove the column to train without it"};
    Text p, ch, rj;
    if (auto bad = text(obj, "chosen", ch))
      return bad;
    if (auto bad = text(obj, "rejected", rj))
      return bad;
    simdjson::dom::element probe;
    if (!obj.at_key("prompt").get(probe)) {
      if (auto bad = text(obj, "prompt", p))
        return bad;
    } else {
      extractPrompt(p, ch, rj);
    }
    if (p.conversational != ch.conversational || ch.conversational != rj.conversational)
      return BadRow{"wrong type", "\"prompt\", \"chosen\" and \"rejected\" must all be "
                                  "strings or all conversations"};
    std::vector<int64_t> promptIds, fullChosen, fullRejected, unused;
    split(p, ch, promptIds, fullChosen);
    split(p, rj, unused, fullRejected);
    size_t len = std::min(commonPrefix(promptIds, fullChosen), commonPrefix(promptIds, fullRejected));
    if (auto drop = promptTooLong(len))
      return drop;
    std::vector<int64_t> prompt(promptIds.begin(), promptIds.begin() + len);
    bool cut = false;
    ex.chosen = truncateSide(prompt, {fullChosen.begin() + len, fullChosen.end()}, cut);
    ex.rejected = truncateSide(prompt, {fullRejected.begin() + len, fullRejected.end()}, cut);
    return pairCut(cut);
  }

  std::optional<BadRow> unpaired(simdjson::dom::object obj, PairedExample &ex) const {
    Text p, c;
    if (auto bad = text(obj, "prompt", p))
      return bad;
    if (auto bad = text(obj, "completion", c))
      return bad;
    if (auto bad = label(obj, ex))
      return bad;
    if (p.conversational != c.conversational)
      return BadRow{"wrong type", "\"prompt\" and \"completion\" must both be strings "
                                  "or both conversations"};
    std::vector<int64_t> promptIds, full;
    split(p, c, promptIds, full);
    size_t len = commonPrefix(promptIds, full);
    if (auto drop = promptTooLong(len))
      return drop;
    bool cut = false;
    ex.prompt.assign(promptIds.begin(), promptIds.begin() + len);
    ex.completion.assign(full.begin() + len, full.end());
    ex.chosen = truncateSide(ex.prompt, ex.completion, cut);
    if (cut)
      return BadRow{"truncated", ""};
    return std::nullopt;
  }

  std::optional<BadRow> promptOnly(simdjson::dom::object obj, PairedExample &ex) const {
    Text p;
    if (auto bad = text(obj, "prompt", p))
      return bad;
    // The row's other fields, for the reward functions; a conversational
    // prompt's messages too, under "prompt" (rewards get them as TRL
    // passes them, and the completions as assistant messages).
    ex.columns = "{";
    for (auto field : obj) {
      if (field.key == "prompt" && !p.conversational)
        continue;
      if (ex.columns.size() > 1)
        ex.columns += ",";
      ex.columns += nlohmann::json(std::string(field.key)).dump() + ":" +
                    simdjson::minify(field.value);
    }
    ex.columns += "}";
    ex.chosen.ids = p.conversational
                        ? widen(chat_->encode(p.messages, nullptr, true, false).ids)
                        : encodeText(p.str, false);
    bool cut = false;
    if (c_.maxPromptLength && static_cast<int64_t>(ex.chosen.ids.size()) > *c_.maxPromptLength) {
      ex.chosen.ids.erase(ex.chosen.ids.begin(), ex.chosen.ids.end() - *c_.maxPromptLength);
      cut = true;
    }
    ex.chosen.mask.assign(ex.chosen.ids.size(), 0);
    if (cut)
      return BadRow{"truncated", ""};
    return std::nullopt;
  }
};

Format detect(simdjson::dom::object obj, const DataConfig &c) {
  auto has = [&](const char *k) {
    simdjson::dom::element e;
    return !obj.at_key(k).get(e);
  };
  if (has("input_ids") || has("prompt_input_ids")) return Format::Tokenized;
  if (has("chosen") && has("rejected")) return Format::Preference;
  if (has("completion") && has("label")) return Format::UnpairedPreference;
  // One of the method's keys is enough to know what the row means to be
  // (its missing partner is then reported by name).
  if ((c.method == "dpo" || c.method == "reward") && (has("chosen") || has("rejected")))
    return Format::Preference;
  if (c.method == "kto" && has("label")) return Format::UnpairedPreference;
  if (has("prompt") && has("completion")) return Format::PromptCompletion;
  if (has(c.datasetTextField.c_str()) || has("messages")) return Format::LanguageModeling;
  if (has("prompt")) return Format::PromptOnly;
  std::string keys;
  for (auto f : obj)
    keys += (keys.empty() ? "" : ", ") + std::string(f.key);
  throw InputError("cannot tell the dataset format from the keys {" + keys +
                   "}: expected text/messages, prompt + completion, prompt + "
                   "chosen + rejected, prompt + completion + label, prompt, or "
                   "input_ids (or set [data] format)");
}

Format parseFormat(const std::string &name) {
  if (name == "language_modeling") return Format::LanguageModeling;
  if (name == "prompt_completion") return Format::PromptCompletion;
  if (name == "preference") return Format::Preference;
  if (name == "unpaired_preference") return Format::UnpairedPreference;
  if (name == "prompt_only") return Format::PromptOnly;
  return Format::Tokenized;
}

void checkMethod(Format f, const std::string &method, const std::string &where) {
  bool ok = false;
  if (method == "sft")
    ok = f == Format::LanguageModeling || f == Format::PromptCompletion || f == Format::Tokenized;
  else if (method == "dpo" || method == "reward")
    ok = f == Format::Preference || f == Format::Tokenized;
  else if (method == "kto")
    ok = f == Format::UnpairedPreference || f == Format::PromptCompletion ||
         f == Format::Tokenized;
  else if (method == "grpo" || method == "rloo" || method == "online_dpo" || method == "ppo")
    ok = f == Format::PromptOnly || f == Format::PromptCompletion ||
         f == Format::LanguageModeling || f == Format::Preference;
  if (!ok) {
    static const std::map<std::string, std::string> wants = {
        {"sft", "language_modeling (text or messages), prompt_completion or tokenized"},
        {"dpo", "preference (prompt + chosen + rejected, or their _input_ids)"},
        {"kto", "unpaired_preference (prompt + completion + label, or prompt_input_ids + "
                "completion_input_ids + label)"},
        {"grpo", "prompt_only (prompt)"},
        {"rloo", "prompt_only (prompt)"},
        {"online_dpo", "prompt_only (prompt)"},
        {"ppo", "prompt_only (prompt)"},
        {"reward", "preference (chosen + rejected, with or without a prompt, or "
                   "prompt_input_ids + chosen_input_ids + rejected_input_ids)"}};
    throw InputError(where + ": error: the dataset is in the " + formatName(f) +
                     " format, which method = \"" + method + "\" cannot train on; it needs " +
                     wants.at(method));
  }
}

/// The longest row a JSONL file may hold: far beyond any max_length, and
/// what keeps the data plan's memory bounded (tokenizing a row takes about
/// a hundred bytes per byte of text).
constexpr size_t kMaxRowBytes = size_t(16) << 20;

/// Streams the lines of a file in blocks, with their line numbers.
class LineReader {
public:
  explicit LineReader(const std::string &path) : in_(path, std::ios::binary), path_(path) {
    if (!in_)
      throw InputError(path + ": error: cannot read the dataset file");
  }
  /// Up to `max` non-blank lines; false at the end of the file.
  bool next(std::vector<std::string> &lines, std::vector<int64_t> &numbers, size_t max) {
    lines.clear();
    numbers.clear();
    std::string line;
    size_t bytes = 0;
    // A block ends at `max` lines or once it holds 4 MiB of text (one
    // longer row makes a block of its own): the memory the data plan
    // needs is a small multiple of its longest row.
    while (lines.size() < max && bytes < (size_t(4) << 20) && readLine(line)) {
      ++lineNo_;
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      // A UTF-8 byte-order mark (Windows editors write one) is not data.
      if (lineNo_ == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0)
        line.erase(0, 3);
      if (line.size() > kMaxRowBytes)
        throw InputError(path_ + ":" + std::to_string(lineNo_) + ": error: a row of more "
                         "than " + std::to_string(kMaxRowBytes >> 20) + " MiB; rows are "
                         "limited to " + std::to_string(kMaxRowBytes >> 20) +
                         " MiB (is the file JSONL, one example per line? split long documents "
                         "into several rows)");
      if (line.find_first_not_of(" \t") == std::string::npos)
        continue;
      bytes += line.size();
      lines.push_back(std::move(line));
      numbers.push_back(lineNo_);
    }
    return !lines.empty();
  }

private:
  /// One line without its newline, read no further than one byte past the
  /// row limit (the rest of an over-long line is never held in memory).
  bool readLine(std::string &line) {
    line.clear();
    std::streambuf *sb = in_.rdbuf();
    bool any = false;
    for (int c; (c = sb->sbumpc()) != std::char_traits<char>::eof();) {
      any = true;
      if (c == '\n')
        return true;
      line.push_back(static_cast<char>(c));
      if (line.size() > kMaxRowBytes + 1)
        return true;
    }
    return any;
  }

  std::ifstream in_;
  std::string path_;
  int64_t lineNo_ = 0;
};

} // namespace

std::vector<std::string> expandFiles(const std::vector<std::string> &patterns,
                                     const std::string &where) {
  std::vector<std::string> files;
  for (const std::string &p : patterns) {
    if (p.find_first_of("*?[") == std::string::npos) {
      if (!pathExists(p))
        throw InputError(where + ": error: dataset file '" + p + "' does not exist");
      files.push_back(p);
      continue;
    }
    glob_t g;
    int rc = glob(p.c_str(), 0, nullptr, &g);
    if (rc != 0 || g.gl_pathc == 0) {
      globfree(&g);
      throw InputError(where + ": error: '" + p + "' matches no file");
    }
    for (size_t k = 0; k < g.gl_pathc; ++k)
      files.push_back(g.gl_pathv[k]);
    globfree(&g);
  }
  return files;
}

/// TRL's _get_kl_dataset: in dataset order, within consecutive blocks of
/// batchSize examples, each prompt with the previous example's completion
/// (the block's first with its last), truncated as any example is.
void pairForKl(const DataConfig &c, DataPlan &plan) {
  std::vector<PairedExample> &ex = plan.examples;
  size_t block = static_cast<size_t>(std::max<int64_t>(c.batchSize, 1));
  for (size_t start = 0; start < ex.size(); start += block) {
    size_t end = std::min(ex.size(), start + block);
    for (size_t i = start; i < end; ++i) {
      size_t from = i == start ? end - 1 : i - 1;
      bool cut = false;
      ex[i].rejected = truncatePair(c, ex[i].prompt, ex[from].completion, cut);
    }
  }
  for (PairedExample &e : ex) {
    e.prompt = {};
    e.completion = {};
  }
}

DataPlan runDataPlan(const DataConfig &c) {
  DataPlan plan;
  std::vector<std::string> files = expandFiles(c.files, c.where);

  // Tokenizer and chat template (not needed for pre-tokenized data).
  std::optional<Tokenizer> tok;
  std::unique_ptr<ChatTemplate> chat;
  auto loadTokenizer = [&] {
    if (tok)
      return;
    if (c.tokenizer.empty())
      throw InputError(c.where + ": error: the dataset holds text, so trlc needs a tokenizer: "
                                 "set [model] tokenizer = \"DIR\" (a directory with "
                                 "tokenizer.json) or [model] path");
    tok = Tokenizer::load(c.tokenizer);
    if (c.vocabSize > 0 && tok->vocabSize() > c.vocabSize)
      throw InputError(tok->source + ": error: the tokenizer has " +
                       std::to_string(tok->vocabSize()) + " tokens but the model's vocab_size is " +
                       std::to_string(c.vocabSize) + "; use the model's own tokenizer");
    std::string source = tok->chatTemplate, where = tok->chatTemplateSource;
    if (!c.chatTemplatePath.empty()) {
      std::ifstream in(c.chatTemplatePath);
      if (!in)
        throw InputError(c.where + ": error: cannot read chat_template_path '" +
                         c.chatTemplatePath + "'");
      source.assign(std::istreambuf_iterator<char>(in), {});
      where = c.chatTemplatePath;
    }
    if (!source.empty()) {
      try {
        chat = std::make_unique<ChatTemplate>(source, where, *tok);
      } catch (const jinja::TemplateError &e) {
        throw InputError(e.what());
      }
    }
    if (c.assistantOnlyLoss && chat && !chat->masksAssistant())
      throw InputError(where + ": error: assistant_only_loss needs a chat template that "
                               "marks assistant text with {% generation %} ... "
                               "{% endgeneration %}, or a ChatML one (<|im_start|>assistant "
                               "... <|im_end|>); this one is neither");
  };

  std::optional<Format> format;
  if (c.format != "auto")
    format = parseFormat(c.format);

  std::vector<Sequence> seqs;
  bool cutEarly = c.method == "sft" && !c.packing;
  int64_t cutEarlyCount = 0;
  std::vector<std::string> lines;
  std::vector<int64_t> numbers;
  for (const std::string &file : files) {
    LineReader reader(file);
    while (reader.next(lines, numbers, 8192)) {
      if (!format) {
        simdjson::dom::parser parser;
        simdjson::dom::object obj;
        if (parser.parse(lines[0]).get_object().get(obj))
          throw InputError(file + ":" + std::to_string(numbers[0]) +
                           ": error: not a JSON object (each line of a JSONL dataset is one)");
        try {
          format = detect(obj, c);
        } catch (const InputError &e) {
          throw InputError(file + ":" + std::to_string(numbers[0]) + ": error: " + e.what());
        }
      }
      if (plan.stats.format.empty()) {
        checkMethod(*format, c.method, c.where);
        plan.stats.format = formatName(*format);
        if (*format != Format::Tokenized)
          loadTokenizer();
      }
      RowEncoder encoder(c, tok ? &*tok : nullptr, chat.get(), *format);
      size_t n = lines.size();
      std::vector<Sequence> outSeq(n);
      std::vector<PairedExample> outEx(n);
      std::vector<std::optional<BadRow>> bad(n);
      std::vector<uint8_t> conversational(n, 0), cutEarlyRows(n, 0);
#pragma omp parallel for schedule(dynamic, 32)
      for (size_t k = 0; k < n; ++k) {
        thread_local simdjson::dom::parser parser;
        simdjson::dom::element doc;
        if (parser.parse(lines[k]).get(doc)) {
          bad[k] = BadRow{"invalid JSON", "not valid JSON"};
          continue;
        }
        simdjson::dom::object obj;
        if (doc.get_object().get(obj)) {
          bad[k] = BadRow{"invalid JSON", "not a JSON object"};
          continue;
        }
        bad[k] = encoder.encode(obj, outSeq[k], outEx[k]);
        // Unpacked SFT rows are cut to max_length at once, so only the
        // block's rows are ever held whole.
        if (cutEarly && !bad[k])
          cutEarlyRows[k] = truncateOne(outSeq[k], c.maxLength.value_or(1024), c.truncation);
        simdjson::dom::element probe;
        for (const char *key : {"messages", "prompt", "chosen"})
          if (!obj.at_key(key).get(probe) && probe.is_array())
            conversational[k] = 1;
      }
      for (size_t k = 0; k < n; ++k) {
        ++plan.stats.rowsRead;
        plan.stats.conversational |= conversational[k] != 0;
        if (bad[k]) {
          const BadRow &b = *bad[k];
          if (b.reason == "truncated") {
            ++plan.stats.truncated;
          } else if (b.reason.rfind("drop:", 0) == 0) {
            ++plan.stats.dropped[b.reason.substr(5)];
            continue;
          } else {
            if (b.reason == "no chat template" || b.reason == "unsupported")
              throw InputError(file + ":" + std::to_string(numbers[k]) + ": error: " + b.message);
            if (!c.skipBadRows) {
              std::string msg = b.message;
              // Messages from the tokenizer/template already name their file.
              throw InputError(file + ":" + std::to_string(numbers[k]) + ": error: " + msg +
                               " (fix the row, or set [data] on_bad_row = \"skip\" to skip "
                               "such rows)");
            }
            ++plan.stats.skipped[b.reason];
            continue;
          }
        }
        cutEarlyCount += cutEarlyRows[k];
        if (c.method == "sft")
          seqs.push_back(std::move(outSeq[k]));
        else
          plan.examples.push_back(std::move(outEx[k]));
      }
    }
  }
  if (!format)
    throw InputError(c.where + ": error: the dataset files hold no rows");

  if (c.method == "kto")
    pairForKl(c, plan);
  if (c.method != "sft") {
    for (const PairedExample &e : plan.examples)
      plan.maxLength = std::max<int64_t>(
          plan.maxLength, std::max(e.chosen.ids.size(), e.rejected.ids.size()));
    return plan;
  }

  // SFT: truncate (packing off) or pack, then padding-free batches.
  int64_t maxLength = c.maxLength.value_or(1024);
  TruncationStats ts;
  if (c.packing) {
    plan.rows = pack(dropUntrainable(std::move(seqs), ts), maxLength, c.packingStrategy);
  } else {
    plan.rows = unpacked(truncate(std::move(seqs), maxLength, c.truncation, ts));
    if (c.paddingFree) {
      std::vector<Row> batches;
      for (size_t k = 0; k < plan.rows.size(); k += c.batchSize) {
        Row b;
        for (size_t j = k; j < std::min(plan.rows.size(), k + size_t(c.batchSize)); ++j) {
          const Row &r = plan.rows[j];
          b.ids.insert(b.ids.end(), r.ids.begin(), r.ids.end());
          b.mask.insert(b.mask.end(), r.mask.begin(), r.mask.end());
          b.seqLengths.push_back(static_cast<int64_t>(r.ids.size()));
        }
        batches.push_back(std::move(b));
      }
      plan.rows = std::move(batches);
    }
  }
  plan.stats.truncated += ts.truncated + cutEarlyCount;
  if (ts.droppedEmpty)
    plan.stats.dropped["empty"] += ts.droppedEmpty;
  if (ts.droppedNoTarget)
    plan.stats.dropped["no trainable token"] += ts.droppedNoTarget;
  plan.maxLength = maxLength;
  return plan;
}

} // namespace trlc::data
