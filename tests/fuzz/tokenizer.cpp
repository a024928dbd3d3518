//===- tokenizer.cpp - fuzz tokenizer.json and encoding --------------------===//
// Input: tokenizer.json, a NUL byte, then text to encode and decode.
#include "data/Tokenizer.h"
#include "Fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  auto [json, text] = trlc::fuzz::splitAtNul(data, size);
  try {
    auto tok = trlc::data::Tokenizer::fromJson(std::string(json), "fuzz/tokenizer.json");
    std::vector<int32_t> ids = tok.encode(text, true);
    std::vector<std::pair<size_t, size_t>> offsets;
    std::vector<int32_t> again = tok.encodeWithOffsets(text, offsets);
    for (const auto &[b, e] : offsets)
      if (b > e || e > text.size())
        __builtin_trap();  // an offset outside the text
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocabSize())
        __builtin_trap();  // an id outside the vocabulary
    (void)tok.decode(ids, false);
    (void)tok.decode(ids, true);
  } catch (const trlc::data::InputError &) {
  }
  return 0;
}
