//===- Tokenizer.cpp - Hugging Face tokenizer.json ------------------------===//

#include "data/Tokenizer.h"
#include "trlc/Files.h"
#include "data/Utf8.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace trlc::data {

/// No real vocabulary comes near this; a larger id is a damaged file (and
/// would size the id -> token table).
constexpr int64_t kMaxTokenId = int64_t(1) << 24;
namespace {

[[noreturn]] void fail(const std::string &where, const std::string &what) {
  throw InputError(where + ": error: " + what);
}

// The GPT-2 pattern ByteLevel uses when use_regex is true.
const char *kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

/// A compiled PCRE2 pattern with a JIT; match data is per call.
class Regex {
public:
  Regex(const std::string &pattern, const std::string &where) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()),
                          pattern.size(), PCRE2_UTF | PCRE2_UCP, &err, &offset,
                          nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail(where, "cannot compile the regex '" + pattern + "' at offset " +
                      std::to_string(offset) + ": " +
                      reinterpret_cast<char *>(msg));
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  Regex(const Regex &) = delete;
  ~Regex() { pcre2_code_free(code_); }

  /// [begin, end) of every non-overlapping match, left to right.
  void findAll(std::string_view s,
               std::vector<std::pair<size_t, size_t>> &out) const {
    out.clear();
    thread_local pcre2_match_data *md = pcre2_match_data_create(16, nullptr);
    // PCRE2 (its JIT above all) reads past the end of invalid UTF-8 when
    // told not to check; text that is not UTF-8 is checked (and matches
    // nothing) instead, and pcre2_jit_match, which never checks, is not used.
    uint32_t check = utf8::valid(s) ? PCRE2_NO_UTF_CHECK : 0;
    size_t pos = 0;
    while (pos <= s.size()) {
      int rc = jit_ && check ? pcre2_jit_match(code_,
                                      reinterpret_cast<PCRE2_SPTR>(s.data()),
                                      s.size(), pos, check, md, nullptr)
                    : pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()),
                                  s.size(), pos, check, md, nullptr);
      if (rc < 0)
        break;
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // empty match: step over one character
        if (b >= s.size())
          break;
        pos = b + utf8::length(static_cast<unsigned char>(s[b]));
        continue;
      }
      out.emplace_back(b, e);
      pos = e;
    }
  }

private:
  pcre2_code *code_ = nullptr;
  bool jit_ = false;
};

// ---------------------------------------------------------------- normalizers

struct Normalizer {
  virtual ~Normalizer() = default;
  virtual void apply(std::string &s) const = 0;
};

struct UnicodeNormalizer : Normalizer {
  int options;
  explicit UnicodeNormalizer(int o) : options(o) {}
  void apply(std::string &s) const override {
    if (utf8::isAscii(s))
      return;
    utf8proc_uint8_t *out = nullptr;
    utf8proc_ssize_t n = utf8proc_map(
        reinterpret_cast<const utf8proc_uint8_t *>(s.data()),
        static_cast<utf8proc_ssize_t>(s.size()), &out,
        static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
    if (n >= 0)
      s.assign(reinterpret_cast<char *>(out), static_cast<size_t>(n));
    free(out);
  }
};

struct Lowercase : Normalizer {
  void apply(std::string &s) const override {
    std::string out;
    out.reserve(s.size());
    utf8::forEach(s, [&](uint32_t cp) {
      utf8::append(out, static_cast<uint32_t>(utf8proc_tolower(cp)));
    });
    s = std::move(out);
  }
};

struct Strip : Normalizer {
  bool left, right;
  Strip(bool l, bool r) : left(l), right(r) {}
  void apply(std::string &s) const override {
    std::string_view v = s;
    if (left)
      v = utf8::trimLeft(v);
    if (right)
      v = utf8::trimRight(v);
    s = std::string(v);
  }
};

struct Replace : Normalizer {
  std::string from, to;
  std::unique_ptr<Regex> regex;
  void apply(std::string &s) const override {
    if (regex) {
      std::vector<std::pair<size_t, size_t>> m;
      regex->findAll(s, m);
      if (m.empty())
        return;
      std::string out;
      size_t last = 0;
      for (auto [b, e] : m) {
        out.append(s, last, b - last);
        out += to;
        last = e;
      }
      out.append(s, last);
      s = std::move(out);
      return;
    }
    if (from.empty())
      return;
    std::string out;
    size_t last = 0, pos;
    while ((pos = s.find(from, last)) != std::string::npos) {
      out.append(s, last, pos - last);
      out += to;
      last = pos + from.size();
    }
    if (last == 0)
      return;
    out.append(s, last);
    s = std::move(out);
  }
};

struct Prepend : Normalizer {
  std::string text;
  void apply(std::string &s) const override {
    if (!s.empty())
      s.insert(0, text);
  }
};

struct NormalizerSequence : Normalizer {
  std::vector<std::unique_ptr<Normalizer>> steps;
  void apply(std::string &s) const override {
    for (const auto &n : steps)
      n->apply(s);
  }
};

// ------------------------------------------------------------ pre-tokenizers

/// A piece of text on its way to the model; `first` is true for the piece
/// that starts the input (Metaspace's prepend_scheme "first").
struct Piece {
  std::string text;
  bool first = false;
};

struct PreTokenizer {
  virtual ~PreTokenizer() = default;
  virtual void apply(std::vector<Piece> &pieces) const = 0;
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

/// Splits every piece at the matches of a regex with HF's behaviours.
void splitPieces(std::vector<Piece> &pieces, const Regex &regex,
                 SplitBehavior behavior, bool invert) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 4);
  std::vector<std::pair<size_t, size_t>> matches;
  for (Piece &p : pieces) {
    const std::string &s = p.text;
    regex.findAll(s, matches);
    // (begin, end, isMatch) covering s.
    struct Span { size_t b, e; bool match; };
    std::vector<Span> spans;
    size_t last = 0;
    for (auto [b, e] : matches) {
      if (b > last)
        spans.push_back({last, b, invert});
      spans.push_back({b, e, !invert});
      last = e;
    }
    if (last < s.size())
      spans.push_back({last, s.size(), invert});

    std::vector<std::pair<size_t, size_t>> parts;
    switch (behavior) {
    case SplitBehavior::Removed:
      for (const Span &sp : spans)
        if (!sp.match)
          parts.push_back({sp.b, sp.e});
      break;
    case SplitBehavior::Isolated:
      for (const Span &sp : spans)
        parts.push_back({sp.b, sp.e});
      break;
    case SplitBehavior::Contiguous:
      for (size_t i = 0; i < spans.size(); ++i) {
        if (spans[i].match && !parts.empty() && i > 0 && spans[i - 1].match)
          parts.back().second = spans[i].e;
        else
          parts.push_back({spans[i].b, spans[i].e});
      }
      break;
    case SplitBehavior::MergedWithPrevious:
      for (size_t i = 0; i < spans.size(); ++i) {
        if (spans[i].match && !parts.empty() && i > 0 && !spans[i - 1].match)
          parts.back().second = spans[i].e;
        else
          parts.push_back({spans[i].b, spans[i].e});
      }
      break;
    case SplitBehavior::MergedWithNext: {
      bool pendingMatch = false;
      for (size_t i = 0; i < spans.size(); ++i) {
        if (pendingMatch && !spans[i].match) {
          parts.back().second = spans[i].e;
          pendingMatch = false;
          continue;
        }
        parts.push_back({spans[i].b, spans[i].e});
        pendingMatch = spans[i].match;
      }
      break;
    }
    }
    bool first = p.first;
    for (auto [b, e] : parts) {
      if (e <= b)
        continue;
      out.push_back({s.substr(b, e - b), first && b == 0});
    }
  }
  pieces = std::move(out);
}

struct SplitPre : PreTokenizer {
  std::unique_ptr<Regex> regex;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  void apply(std::vector<Piece> &pieces) const override {
    splitPieces(pieces, *regex, behavior, invert);
  }
};

/// ByteLevel: optional prefix space and GPT-2 split; the byte -> character
/// mapping itself is applied by the model (it works on bytes).
struct ByteLevelPre : PreTokenizer {
  bool addPrefixSpace = false;
  std::unique_ptr<Regex> regex;  // null when use_regex is false
  void apply(std::vector<Piece> &pieces) const override {
    if (addPrefixSpace)
      for (Piece &p : pieces)
        if (p.text.empty() || p.text[0] != ' ')
          p.text.insert(0, " ");
    if (regex)
      splitPieces(pieces, *regex, SplitBehavior::Isolated, false);
  }
};

enum class PrependScheme { Always, First, Never };

struct MetaspacePre : PreTokenizer {
  std::string replacement = "\xe2\x96\x81";  // U+2581
  PrependScheme scheme = PrependScheme::Always;
  bool split = true;
  void apply(std::vector<Piece> &pieces) const override {
    std::vector<Piece> out;
    for (Piece &p : pieces) {
      std::string s;
      s.reserve(p.text.size() + 3);
      for (char c : p.text) {
        if (c == ' ')
          s += replacement;
        else
          s += c;
      }
      bool prepend = scheme == PrependScheme::Always ||
                     (scheme == PrependScheme::First && p.first);
      if (prepend && s.compare(0, replacement.size(), replacement) != 0)
        s.insert(0, replacement);
      if (!split) {
        out.push_back({std::move(s), p.first});
        continue;
      }
      // MergedWithNext on the replacement character.
      size_t start = 0;
      for (size_t pos = s.find(replacement, 1); pos != std::string::npos;
           pos = s.find(replacement, pos + replacement.size())) {
        if (pos > start)
          out.push_back({s.substr(start, pos - start), p.first && start == 0});
        start = pos;
      }
      if (start < s.size())
        out.push_back({s.substr(start), p.first && start == 0});
    }
    pieces = std::move(out);
  }
};

struct PreTokenizerSequence : PreTokenizer {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  void apply(std::vector<Piece> &pieces) const override {
    for (const auto &p : steps)
      p->apply(pieces);
  }
};

// ------------------------------------------------------------------ decoders

struct Decoder {
  virtual ~Decoder() = default;
  virtual void apply(std::vector<std::string> &tokens) const = 0;
};

struct DecoderSequence : Decoder {
  std::vector<std::unique_ptr<Decoder>> steps;
  void apply(std::vector<std::string> &tokens) const override {
    for (const auto &d : steps)
      d->apply(tokens);
  }
};

struct ByteLevelDecoder : Decoder {
  const std::unordered_map<uint32_t, uint8_t> *charToByte;
  void apply(std::vector<std::string> &tokens) const override {
    std::string bytes;
    for (const std::string &t : tokens)
      utf8::forEach(t, [&](uint32_t cp) {
        auto it = charToByte->find(cp);
        if (it != charToByte->end())
          bytes += static_cast<char>(it->second);
        else
          utf8::append(bytes, cp);
      });
    tokens.assign(1, utf8::lossy(bytes));
  }
};

struct MetaspaceDecoder : Decoder {
  std::string replacement;
  bool prepend = true;
  void apply(std::vector<std::string> &tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      std::string &t = tokens[i];
      size_t last = 0, pos;
      while ((pos = t.find(replacement, last)) != std::string::npos) {
        out.append(t, last, pos - last);
        out += ' ';
        last = pos + replacement.size();
      }
      out.append(t, last);
      if (i == 0 && prepend && !out.empty() && out[0] == ' ')
        out.erase(0, 1);
      t = std::move(out);
    }
  }
};

struct ReplaceDecoder : Decoder {
  Replace replace;
  void apply(std::vector<std::string> &tokens) const override {
    for (std::string &t : tokens)
      replace.apply(t);
  }
};

struct ByteFallbackDecoder : Decoder {
  void apply(std::vector<std::string> &tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    size_t pendingTokens = 0;
    auto flush = [&] {
      if (!pendingTokens)
        return;
      if (utf8::valid(bytes))
        out.push_back(bytes);
      else
        for (size_t i = 0; i < pendingTokens; ++i)
          out.push_back("\xef\xbf\xbd");
      bytes.clear();
      pendingTokens = 0;
    };
    for (std::string &t : tokens) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
          std::isxdigit(static_cast<unsigned char>(t[3])) &&
          std::isxdigit(static_cast<unsigned char>(t[4]))) {
        bytes += static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16));
        ++pendingTokens;
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens = std::move(out);
  }
};

struct FuseDecoder : Decoder {
  void apply(std::vector<std::string> &tokens) const override {
    std::string all;
    for (const std::string &t : tokens)
      all += t;
    tokens.assign(1, all);
  }
};

struct StripDecoder : Decoder {
  std::string content;
  size_t start = 0, stop = 0;
  void apply(std::vector<std::string> &tokens) const override {
    for (std::string &t : tokens) {
      for (size_t i = 0; i < start && t.compare(0, content.size(), content) == 0; ++i)
        t.erase(0, content.size());
      for (size_t i = 0; i < stop && t.size() >= content.size() &&
                         t.compare(t.size() - content.size(), content.size(), content) == 0;
           ++i)
        t.erase(t.size() - content.size());
    }
  }
};

struct AddedToken {
  std::string content;
  int32_t id;
  bool special, lstrip, rstrip, singleWord;
};

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InputError(path + ": error: cannot read the file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A token field of tokenizer_config.json: "text" or {"content": "text"}.
std::string tokenText(const json &v) {
  if (v.is_string())
    return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return "";
}

std::atomic<uint64_t> nextGeneration{1};

} // namespace

struct Tokenizer::Impl {
  std::string where;
  uint64_t generation = nextGeneration++;

  enum class Model { BPE, WordLevel } model = Model::BPE;
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::string> idToToken;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) -> (rank, merged)
  std::optional<int32_t> unk;
  bool byteFallback = false, fuseUnk = false, ignoreMerges = false;

  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> preTokenizer;
  bool byteLevel = false;          // pieces are bytes mapped to characters
  int32_t byteIds[256];            // byte-level: initial symbol per byte
  std::string byteChars[256];      // byte-level: the character per byte
  std::unordered_map<uint32_t, uint8_t> charToByte;
  int32_t fallbackIds[256];        // <0xXX> tokens for byte_fallback

  std::vector<AddedToken> added;   // longest first
  std::vector<bool> addedFirstByte = std::vector<bool>(256, false);
  std::vector<bool> isSpecial;     // by id

  std::vector<int32_t> prefix, suffix;  // post-processor, single sequence
  std::unique_ptr<Decoder> decoder;

  // --- loading
  void loadModel(const json &m);
  std::unique_ptr<Normalizer> makeNormalizer(const json &n);
  std::unique_ptr<PreTokenizer> makePreTokenizer(const json &p, bool last);
  std::unique_ptr<Decoder> makeDecoder(const json &d);
  void loadPostProcessor(const json &p);

  // --- encoding
  void encodePiece(const std::string &piece, std::vector<int32_t> &out) const;
  void bpe(std::vector<int32_t> &symbols) const;
  void encodeSegment(std::string text, bool first, std::vector<int32_t> &out) const;
  std::vector<int32_t> encodeImpl(std::string_view text, bool addSpecialTokens,
                                  std::vector<std::pair<size_t, size_t>> *offsets) const;
  /// The raw text bytes token `id` stands for.
  std::string tokenBytes(int32_t id) const;
};

// ------------------------------------------------------------------- loading

void Tokenizer::Impl::loadModel(const json &m) {
  std::string type = m.value("type", "");
  if (type != "BPE" && type != "WordLevel")
    fail(where, "model type '" + type +
                    "' is not supported (trlc reads BPE and WordLevel "
                    "tokenizers; Unigram and WordPiece are not implemented)");
  model = type == "BPE" ? Model::BPE : Model::WordLevel;
  if (!m.contains("vocab") || !m["vocab"].is_object())
    fail(where, "model.vocab must be an object of token -> id");
  for (auto &[tok, id] : m["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxTokenId)
      fail(where, "model.vocab['" + tok + "'] must be a token id in [0, " +
                      std::to_string(kMaxTokenId) + "), got " + id.dump());
    vocab[tok] = id.get<int32_t>();
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    auto it = vocab.find(m["unk_token"].get<std::string>());
    if (it != vocab.end())
      unk = it->second;
  }
  if (model == Model::WordLevel)
    return;
  byteFallback = m.value("byte_fallback", false);
  fuseUnk = m.value("fuse_unk", false);
  ignoreMerges = m.value("ignore_merges", false);
  for (const char *k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && m[k].is_string() && !m[k].get<std::string>().empty())
      fail(where, std::string("model.") + k +
                      " is not supported (no byte-level or SentencePiece BPE "
                      "tokenizer uses it)");
  if (m.contains("dropout") && m["dropout"].is_number() &&
      m["dropout"].get<double>() > 0)
    fail(where, "model.dropout > 0 makes tokenization random; set it to null");
  const json &ms = m.value("merges", json::array());
  int32_t rank = 0;
  for (const json &e : ms) {
    std::string a, b;
    if (e.is_string()) {
      std::string s = e.get<std::string>();
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos)
        fail(where, "model.merges[" + std::to_string(rank) + "] '" + s +
                        "' is not two tokens separated by a space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() &&
               e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      fail(where, "model.merges[" + std::to_string(rank) +
                      "] must be \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = vocab.find(a), ib = vocab.find(b), im = vocab.find(a + b);
    if (ia == vocab.end() || ib == vocab.end() || im == vocab.end())
      fail(where, "model.merges[" + std::to_string(rank) + "] ('" + a + "', '" +
                      b + "') names a token missing from model.vocab");
    uint64_t key = (uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second);
    merges.emplace(key, std::make_pair(rank, im->second));
    ++rank;
  }
}

std::unique_ptr<Normalizer> Tokenizer::Impl::makeNormalizer(const json &n) {
  std::string type = n.value("type", "");
  if (type == "Sequence") {
    auto seq = std::make_unique<NormalizerSequence>();
    for (const json &s : n.value("normalizers", json::array()))
      seq->steps.push_back(makeNormalizer(s));
    return seq;
  }
  if (type == "NFC")
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_COMPOSE);
  if (type == "NFD")
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_DECOMPOSE);
  if (type == "NFKC")
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  if (type == "NFKD")
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  if (type == "Lowercase")
    return std::make_unique<Lowercase>();
  if (type == "Strip")
    return std::make_unique<Strip>(n.value("strip_left", true), n.value("strip_right", true));
  if (type == "Prepend") {
    auto p = std::make_unique<Prepend>();
    p->text = n.value("prepend", "");
    return p;
  }
  if (type == "Replace") {
    auto r = std::make_unique<Replace>();
    const json &pat = n.value("pattern", json::object());
    if (pat.contains("String"))
      r->from = pat["String"].get<std::string>();
    else if (pat.contains("Regex"))
      r->regex = std::make_unique<Regex>(pat["Regex"].get<std::string>(), where);
    r->to = n.value("content", "");
    return r;
  }
  fail(where, "normalizer '" + type +
                  "' is not supported (trlc reads NFC, NFD, NFKC, NFKD, "
                  "Lowercase, Strip, Replace, Prepend and Sequence)");
}

std::unique_ptr<PreTokenizer> Tokenizer::Impl::makePreTokenizer(const json &p,
                                                               bool last) {
  std::string type = p.value("type", "");
  if (type == "Sequence") {
    auto seq = std::make_unique<PreTokenizerSequence>();
    const json &steps = p.value("pretokenizers", json::array());
    for (size_t i = 0; i < steps.size(); ++i)
      seq->steps.push_back(makePreTokenizer(steps[i], last && i + 1 == steps.size()));
    return seq;
  }
  auto splitOn = [&](const std::string &regex, SplitBehavior b, bool invert) {
    auto s = std::make_unique<SplitPre>();
    s->regex = std::make_unique<Regex>(regex, where);
    s->behavior = b;
    s->invert = invert;
    return s;
  };
  if (type == "Split") {
    const json &pat = p.value("pattern", json::object());
    std::string regex;
    if (pat.contains("Regex"))
      regex = pat["Regex"].get<std::string>();
    else if (pat.contains("String")) {
      // A literal: quote it.
      for (char c : pat["String"].get<std::string>()) {
        if (std::strchr("\\^$.|?*+()[]{}", c))
          regex += '\\';
        regex += c;
      }
    } else
      fail(where, "pre_tokenizer Split needs pattern.Regex or pattern.String");
    std::string b = p.value("behavior", "Isolated");
    SplitBehavior behavior;
    if (b == "Removed") behavior = SplitBehavior::Removed;
    else if (b == "Isolated") behavior = SplitBehavior::Isolated;
    else if (b == "MergedWithPrevious") behavior = SplitBehavior::MergedWithPrevious;
    else if (b == "MergedWithNext") behavior = SplitBehavior::MergedWithNext;
    else if (b == "Contiguous") behavior = SplitBehavior::Contiguous;
    else fail(where, "pre_tokenizer Split behavior '" + b + "' is unknown");
    return splitOn(regex, behavior, p.value("invert", false));
  }
  if (type == "ByteLevel") {
    if (!last)
      fail(where, "a ByteLevel pre-tokenizer must be the last one of the sequence");
    byteLevel = true;
    auto b = std::make_unique<ByteLevelPre>();
    b->addPrefixSpace = p.value("add_prefix_space", false);
    if (p.value("use_regex", true))
      b->regex = std::make_unique<Regex>(kGpt2Pattern, where);
    return b;
  }
  if (type == "Metaspace") {
    auto m = std::make_unique<MetaspacePre>();
    m->replacement = p.value("replacement", "\xe2\x96\x81");
    std::string scheme = p.value("prepend_scheme", "");
    if (scheme.empty())
      scheme = p.value("add_prefix_space", true) ? "always" : "never";
    if (scheme == "always") m->scheme = PrependScheme::Always;
    else if (scheme == "first") m->scheme = PrependScheme::First;
    else if (scheme == "never") m->scheme = PrependScheme::Never;
    else fail(where, "Metaspace prepend_scheme '" + scheme + "' is unknown");
    m->split = p.value("split", true);
    return m;
  }
  if (type == "Digits")
    return splitOn(p.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+",
                   SplitBehavior::Isolated, false);
  if (type == "Whitespace")
    return splitOn("\\w+|[^\\w\\s]+", SplitBehavior::Isolated, false);
  if (type == "WhitespaceSplit")
    return splitOn("\\s+", SplitBehavior::Removed, false);
  fail(where, "pre_tokenizer '" + type +
                  "' is not supported (trlc reads Split, ByteLevel, Metaspace, "
                  "Digits, Whitespace, WhitespaceSplit and Sequence)");
}

std::unique_ptr<Decoder> Tokenizer::Impl::makeDecoder(const json &d) {
  std::string type = d.value("type", "");
  if (type == "Sequence") {
    auto seq = std::make_unique<DecoderSequence>();
    for (const json &s : d.value("decoders", json::array()))
      seq->steps.push_back(makeDecoder(s));
    return seq;
  }
  if (type == "ByteLevel") {
    auto b = std::make_unique<ByteLevelDecoder>();
    b->charToByte = &charToByte;
    return b;
  }
  if (type == "Metaspace") {
    auto m = std::make_unique<MetaspaceDecoder>();
    m->replacement = d.value("replacement", "\xe2\x96\x81");
    std::string scheme = d.value("prepend_scheme", "");
    m->prepend = scheme.empty() ? d.value("add_prefix_space", true) : scheme != "never";
    return m;
  }
  if (type == "Replace") {
    auto r = std::make_unique<ReplaceDecoder>();
    const json &pat = d.value("pattern", json::object());
    if (pat.contains("String"))
      r->replace.from = pat["String"].get<std::string>();
    else if (pat.contains("Regex"))
      r->replace.regex = std::make_unique<Regex>(pat["Regex"].get<std::string>(), where);
    r->replace.to = d.value("content", "");
    return r;
  }
  if (type == "ByteFallback")
    return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse")
    return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    auto s = std::make_unique<StripDecoder>();
    s->content = d.value("content", " ");
    s->start = d.value("start", 0);
    s->stop = d.value("stop", 0);
    return s;
  }
  fail(where, "decoder '" + type +
                  "' is not supported (trlc reads ByteLevel, Metaspace, "
                  "Replace, ByteFallback, Fuse, Strip and Sequence)");
}

void Tokenizer::Impl::loadPostProcessor(const json &p) {
  std::string type = p.value("type", "");
  if (type == "ByteLevel")
    return;  // offsets only
  if (type == "Sequence") {
    for (const json &s : p.value("processors", json::array()))
      loadPostProcessor(s);
    return;
  }
  if (type != "TemplateProcessing")
    fail(where, "post_processor '" + type +
                    "' is not supported (trlc reads TemplateProcessing, "
                    "ByteLevel and Sequence)");
  const json &specials = p.value("special_tokens", json::object());
  bool seenSequence = false;
  for (const json &item : p.value("single", json::array())) {
    if (item.contains("Sequence")) {
      seenSequence = true;
      continue;
    }
    if (!item.contains("SpecialToken"))
      fail(where, "post_processor.single items must be Sequence or SpecialToken");
    std::string name = item["SpecialToken"].value("id", "");
    if (!specials.contains(name))
      fail(where, "post_processor names the special token '" + name +
                      "' that special_tokens does not define");
    for (const json &id : specials[name].value("ids", json::array()))
      (seenSequence ? suffix : prefix).push_back(id.get<int32_t>());
  }
}

Tokenizer Tokenizer::fromJson(const std::string &text, const std::string &where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error &e) {
    fail(where, std::string("not valid JSON: ") + e.what());
  }
  auto impl = std::make_unique<Impl>();
  Impl &t = *impl;
  t.where = where;
  try {
    if (!j.contains("model"))
      fail(where, "no \"model\" field: is this a Hugging Face tokenizer.json?");
    t.loadModel(j["model"]);
    if (j.contains("normalizer") && !j["normalizer"].is_null())
      t.normalizer = t.makeNormalizer(j["normalizer"]);
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null())
      t.preTokenizer = t.makePreTokenizer(j["pre_tokenizer"], true);
    if (j.contains("post_processor") && !j["post_processor"].is_null())
      t.loadPostProcessor(j["post_processor"]);
    if (j.contains("decoder") && !j["decoder"].is_null())
      t.decoder = t.makeDecoder(j["decoder"]);

    for (const json &a : j.value("added_tokens", json::array())) {
      AddedToken tok{a.value("content", ""), a.value("id", -1),
                     a.value("special", false), a.value("lstrip", false),
                     a.value("rstrip", false), a.value("single_word", false)};
      if (tok.content.empty() || tok.id < 0)
        fail(where, "added_tokens entries need a content and an id");
      if (a["id"].get<int64_t>() >= kMaxTokenId)
        fail(where, "added token '" + tok.content + "' has id " + a["id"].dump() +
                        "; token ids must be below " + std::to_string(kMaxTokenId));
      t.added.push_back(tok);
      t.vocab.emplace(tok.content, tok.id);
    }
  } catch (const json::exception &e) {
    fail(where, std::string("unexpected field type: ") + e.what());
  }
  std::stable_sort(t.added.begin(), t.added.end(),
                   [](const AddedToken &a, const AddedToken &b) {
                     return a.content.size() > b.content.size();
                   });
  for (const AddedToken &a : t.added)
    t.addedFirstByte[static_cast<unsigned char>(a.content[0])] = true;

  int32_t maxId = -1;
  for (auto &[tok, id] : t.vocab)
    maxId = std::max(maxId, id);
  t.idToToken.assign(maxId + 1, "");
  for (auto &[tok, id] : t.vocab)
    t.idToToken[id] = tok;
  for (auto &[tok, id] : t.vocab)  // model tokens win over added duplicates
    (void)tok, (void)id;
  t.isSpecial.assign(maxId + 1, false);
  for (const AddedToken &a : t.added)
    if (a.special)
      t.isSpecial[a.id] = true;

  // Byte-level alphabet (GPT-2's bytes_to_unicode).
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    uint32_t cp = printable ? b : 256 + n++;
    std::string s;
    utf8::append(s, cp);
    t.byteChars[b] = s;
    t.charToByte[cp] = static_cast<uint8_t>(b);
    auto it = t.vocab.find(s);
    t.byteIds[b] = it == t.vocab.end() ? -1 : it->second;
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    auto fb = t.vocab.find(hex);
    t.fallbackIds[b] = fb == t.vocab.end() ? -1 : fb->second;
  }
  Tokenizer tok(std::move(impl));
  tok.source = where;
  return tok;
}

Tokenizer Tokenizer::load(const std::string &path) {
  fs::path file = path, dir = path;
  if (isDirectory(file))
    file /= "tokenizer.json";
  else
    dir = file.parent_path();
  if (!pathExists(file))
    throw InputError(file.string() +
                     ": error: no tokenizer.json; point [model] tokenizer (or "
                     "path) at a directory with a Hugging Face tokenizer.json");
  Tokenizer tok = fromJson(readFile(file.string()), file.string());
  fs::path config = dir / "tokenizer_config.json";
  if (pathExists(config)) {
    json c;
    try {
      c = json::parse(readFile(config.string()));
    } catch (const json::parse_error &e) {
      throw InputError(config.string() + ": error: not valid JSON: " + e.what());
    }
    tok.bosToken = tokenText(c.value("bos_token", json()));
    tok.eosToken = tokenText(c.value("eos_token", json()));
    tok.padToken = tokenText(c.value("pad_token", json()));
    if (c.contains("chat_template")) {
      const json &ct = c["chat_template"];
      if (ct.is_string())
        tok.chatTemplate = ct.get<std::string>();
      else if (ct.is_array())
        for (const json &e : ct)
          if (e.value("name", "") == "default")
            tok.chatTemplate = e.value("template", "");
      tok.chatTemplateSource = config.string();
    }
  }
  fs::path jinja = dir / "chat_template.jinja";
  if (tok.chatTemplate.empty() && pathExists(jinja)) {
    tok.chatTemplate = readFile(jinja.string());
    tok.chatTemplateSource = jinja.string();
  }
  auto idOf = [&](const std::string &text, const char *field) -> std::optional<int32_t> {
    if (text.empty())
      return std::nullopt;
    auto id = tok.tokenToId(text);
    if (!id)
      throw InputError(config.string() + ": error: " + field + " '" + text +
                       "' is not a token of " + file.string());
    return id;
  };
  tok.bosId = idOf(tok.bosToken, "bos_token");
  tok.eosId = idOf(tok.eosToken, "eos_token");
  tok.padId = idOf(tok.padToken, "pad_token");
  return tok;
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer &&) noexcept = default;
Tokenizer &Tokenizer::operator=(Tokenizer &&) noexcept = default;
Tokenizer::~Tokenizer() = default;

int64_t Tokenizer::vocabSize() const { return impl_->idToToken.size(); }

std::optional<int32_t> Tokenizer::tokenToId(std::string_view token) const {
  auto it = impl_->vocab.find(std::string(token));
  if (it == impl_->vocab.end())
    return std::nullopt;
  return it->second;
}

std::string Tokenizer::idToToken(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(impl_->idToToken.size()))
    return "";
  return impl_->idToToken[id];
}

// ------------------------------------------------------------------ encoding

void Tokenizer::Impl::bpe(std::vector<int32_t> &sym) const {
  // Repeatedly merge the adjacent pair of lowest rank, leftmost first: the
  // same order as the priority queue of the Rust implementation.
  while (sym.size() > 1) {
    int32_t bestRank = INT32_MAX, bestId = -1;
    size_t bestPos = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      uint64_t key = (uint64_t(uint32_t(sym[i])) << 32) | uint32_t(sym[i + 1]);
      auto it = merges.find(key);
      if (it != merges.end() && it->second.first < bestRank) {
        bestRank = it->second.first;
        bestId = it->second.second;
        bestPos = i;
      }
    }
    if (bestId < 0)
      break;
    sym[bestPos] = bestId;
    sym.erase(sym.begin() + bestPos + 1);
  }
}

void Tokenizer::Impl::encodePiece(const std::string &piece,
                                  std::vector<int32_t> &out) const {
  if (model == Model::WordLevel) {
    auto it = vocab.find(piece);
    if (it != vocab.end())
      out.push_back(it->second);
    else if (unk)
      out.push_back(*unk);
    else
      throw InputError(where + ": error: '" + piece +
                       "' is not in the WordLevel vocabulary and there is no unk_token");
    return;
  }
  // Per-thread cache of piece -> ids (words repeat a lot).
  struct Cache {
    uint64_t generation = 0;
    std::unordered_map<std::string, std::vector<int32_t>> map;
  };
  thread_local Cache cache;
  if (cache.generation != generation) {
    cache.map.clear();
    cache.generation = generation;
  }
  if (auto it = cache.map.find(piece); it != cache.map.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }

  std::vector<int32_t> sym;
  if (byteLevel) {
    if (ignoreMerges) {
      std::string mapped;
      for (unsigned char c : piece)
        mapped += byteChars[c];
      if (auto it = vocab.find(mapped); it != vocab.end())
        sym.push_back(it->second);
    }
    if (sym.empty()) {
      for (unsigned char c : piece) {
        if (byteIds[c] < 0) {
          if (!unk)
            throw InputError(where + ": error: the byte-level vocabulary has no token for byte " +
                             std::to_string(c) + " and no unk_token");
          sym.push_back(*unk);
        } else {
          sym.push_back(byteIds[c]);
        }
      }
      bpe(sym);
    }
  } else {
    auto whole = ignoreMerges ? vocab.find(piece) : vocab.end();
    if (whole != vocab.end()) {
      sym.push_back(whole->second);
    } else {
      // Initial symbols are characters; unknown ones fall back to bytes or
      // to unk (fused when fuse_unk).
      std::vector<int32_t> chars;
      bool lastUnk = false;
      for (size_t i = 0; i < piece.size();) {
        size_t len = std::min(utf8::length(static_cast<unsigned char>(piece[i])),
                              piece.size() - i);
        auto it = vocab.find(piece.substr(i, len));
        if (it != vocab.end()) {
          chars.push_back(it->second);
          lastUnk = false;
        } else if (byteFallback) {
          for (size_t k = 0; k < len; ++k) {
            int32_t id = fallbackIds[static_cast<unsigned char>(piece[i + k])];
            if (id < 0) {
              if (!unk)
                throw InputError(where + ": error: byte_fallback needs <0xXX> tokens in the vocabulary");
              id = *unk;
            }
            chars.push_back(id);
          }
          lastUnk = false;
        } else if (unk) {
          if (!(fuseUnk && lastUnk))
            chars.push_back(*unk);
          lastUnk = true;
        } else {
          throw InputError(where + ": error: the character '" + piece.substr(i, len) +
                           "' is not in the vocabulary and there is no unk_token");
        }
        i += len;
      }
      sym = std::move(chars);
      bpe(sym);
    }
  }
  out.insert(out.end(), sym.begin(), sym.end());
  if (cache.map.size() > (1u << 20))
    cache.map.clear();
  cache.map.emplace(piece, std::move(sym));
}

void Tokenizer::Impl::encodeSegment(std::string text, bool first,
                                    std::vector<int32_t> &out) const {
  if (normalizer)
    normalizer->apply(text);
  if (text.empty())
    return;
  thread_local std::vector<Piece> pieces;
  pieces.clear();
  pieces.push_back({std::move(text), first});
  if (preTokenizer)
    preTokenizer->apply(pieces);
  for (const Piece &p : pieces)
    encodePiece(p.text, out);
}

std::string Tokenizer::Impl::tokenBytes(int32_t id) const {
  const std::string &tok = idToToken[id];
  if (byteLevel) {
    std::string out;
    utf8::forEach(tok, [&](uint32_t cp) {
      auto it = charToByte.find(cp);
      if (it != charToByte.end())
        out += static_cast<char>(it->second);
      else
        utf8::append(out, cp);
    });
    return out;
  }
  if (tok.size() == 6 && tok.compare(0, 3, "<0x") == 0 && tok[5] == '>' &&
      std::isxdigit(static_cast<unsigned char>(tok[3])) &&
      std::isxdigit(static_cast<unsigned char>(tok[4])))
    return std::string(1, static_cast<char>(std::stoi(tok.substr(3, 2), nullptr, 16)));
  std::string out;
  const std::string meta = "\xe2\x96\x81";
  for (size_t i = 0; i < tok.size();) {
    if (tok.compare(i, meta.size(), meta) == 0) {
      out += ' ';
      i += meta.size();
    } else {
      out += tok[i++];
    }
  }
  return out;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text,
                                       bool addSpecialTokens) const {
  return impl_->encodeImpl(text, addSpecialTokens, nullptr);
}

std::vector<int32_t> Tokenizer::encodeWithOffsets(
    std::string_view text, std::vector<std::pair<size_t, size_t>> &offsets) const {
  offsets.clear();
  return impl_->encodeImpl(text, false, &offsets);
}

std::vector<int32_t>
Tokenizer::Impl::encodeImpl(std::string_view text, bool addSpecialTokens,
                            std::vector<std::pair<size_t, size_t>> *offsets) const {
  const Impl &t = *this;
  std::vector<int32_t> out;
  // Aligns the tokens of text[b, e) with that text: each token's raw bytes
  // are matched in order; bytes the tokenizer inserted (a prefix space) are
  // skipped.
  auto align = [&](size_t from, size_t b, size_t e) {
    if (!offsets)
      return;
    size_t pos = b;
    for (size_t k = from; k < out.size(); ++k) {
      std::string raw = t.tokenBytes(out[k]);
      size_t start = pos;
      for (char c : raw) {
        if (pos < e && text[pos] == c)
          ++pos;
        else if (pos == start && c == ' ')
          continue;  // inserted
      }
      offsets->emplace_back(start, pos);
    }
  };
  if (addSpecialTokens)
    out = t.prefix;
  // Split on added tokens, leftmost-longest, honouring lstrip/rstrip.
  size_t segStart = 0, i = 0;
  bool first = true;
  auto isWordChar = [](unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; };
  while (i < text.size()) {
    if (!t.addedFirstByte[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    const AddedToken *hit = nullptr;
    for (const AddedToken &a : t.added) {
      if (text.compare(i, a.content.size(), a.content) != 0)
        continue;
      if (a.singleWord) {
        size_t e = i + a.content.size();
        if ((i > 0 && isWordChar(text[i - 1])) ||
            (e < text.size() && isWordChar(text[e])))
          continue;
      }
      hit = &a;
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t segEnd = i, next = i + hit->content.size();
    if (hit->lstrip)
      while (segEnd > segStart && std::isspace(static_cast<unsigned char>(text[segEnd - 1])))
        --segEnd;
    if (hit->rstrip)
      while (next < text.size() && std::isspace(static_cast<unsigned char>(text[next])))
        ++next;
    if (segEnd > segStart) {
      size_t from = out.size();
      t.encodeSegment(std::string(text.substr(segStart, segEnd - segStart)),
                      first && segStart == 0, out);
      align(from, segStart, segEnd);
    }
    out.push_back(hit->id);
    if (offsets)
      offsets->emplace_back(i, i + hit->content.size());
    first = false;
    segStart = i = next;
  }
  if (segStart < text.size()) {
    size_t from = out.size();
    t.encodeSegment(std::string(text.substr(segStart)), first && segStart == 0, out);
    align(from, segStart, text.size());
  }
  if (addSpecialTokens)
    out.insert(out.end(), t.suffix.begin(), t.suffix.end());
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t> &ids,
                              bool skipSpecialTokens) const {
  const Impl &t = *impl_;
  std::vector<std::string> tokens;
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(t.idToToken.size()))
      continue;
    if (skipSpecialTokens && t.isSpecial[id])
      continue;
    tokens.push_back(t.idToToken[id]);
  }
  if (t.decoder)
    t.decoder->apply(tokens);
  std::string out;
  for (const std::string &s : tokens)
    out += s;
  return out;
}

} // namespace trlc::data
