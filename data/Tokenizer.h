//===- Tokenizer.h - Hugging Face tokenizer.json ----------------*- C++ -*-===//
//
// Encodes and decodes text exactly as the Hugging Face `tokenizers` library
// does for the files real models ship:
// - models: BPE (merges by rank, byte_fallback, ignore_merges, unk) and
//   WordLevel;
// - normalizers: NFC/NFKC/NFD/NFKD, Lowercase, Strip, Replace, Prepend and
//   Sequence (utf8proc);
// - pre-tokenizers: Split (PCRE2 with Unicode properties), ByteLevel,
//   Metaspace, Digits, Whitespace, WhitespaceSplit and Sequence;
// - post-processors: TemplateProcessing, ByteLevel and Sequence;
// - decoders: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip and
//   Sequence;
// - added and special tokens (lstrip/rstrip), matched before normalization.
// BOS/EOS/PAD and the chat template come from tokenizer_config.json.
// Anything else is refused with a message naming the file and the field.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_DATA_TOKENIZER_H
#define TRLC_DATA_TOKENIZER_H

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace trlc::data {

/// A bad input file: the message names the file, the place and the fix.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Tokenizer {
public:
  /// Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json
  /// (`path` may also name tokenizer.json itself). Throws InputError.
  static Tokenizer load(const std::string &path);
  /// Parses tokenizer.json text; `where` names it in messages.
  static Tokenizer fromJson(const std::string &json, const std::string &where);

  Tokenizer(Tokenizer &&) noexcept;
  Tokenizer &operator=(Tokenizer &&) noexcept;
  ~Tokenizer();

  /// Token ids of `text`; `addSpecialTokens` runs the post-processor (BOS
  /// for Llama-style templates), as `tokenizer(text)` does. Thread-safe.
  std::vector<int32_t> encode(std::string_view text,
                              bool addSpecialTokens = true) const;
  /// encode(text, false) with the [begin, end) byte range of `text` each
  /// token covers (HF's offsets, used for assistant masks).
  std::vector<int32_t> encodeWithOffsets(
      std::string_view text, std::vector<std::pair<size_t, size_t>> &offsets) const;
  /// Text of `ids`, as `tokenizer.decode(ids, skip_special_tokens)`.
  std::string decode(const std::vector<int32_t> &ids,
                     bool skipSpecialTokens = false) const;

  int64_t vocabSize() const;  // one past the largest id
  std::optional<int32_t> tokenToId(std::string_view token) const;
  std::string idToToken(int32_t id) const;

  // From tokenizer_config.json (empty / nullopt when it does not say).
  std::string bosToken, eosToken, padToken;
  std::optional<int32_t> bosId, eosId, padId;
  std::string chatTemplate;        // the default template, "" when none
  std::string chatTemplateSource;  // the file the template came from
  std::string source;              // the file it came from

  struct Impl;

private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace trlc::data

#endif // TRLC_DATA_TOKENIZER_H
