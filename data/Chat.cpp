//===- Chat.cpp - chat templates over a tokenizer -------------------------===//

#include "data/Chat.h"

#include <regex>

namespace trlc::data {

ChatTemplate::ChatTemplate(const std::string &source, const std::string &where,
                           const Tokenizer &tokenizer)
    : template_(source, where), tokenizer_(tokenizer),
      marksGeneration_(std::regex_search(source, std::regex(R"(\{%-?\s*generation\s*-?%\})"))),
      chatml_(!marksGeneration_ && source.find("<|im_start|>") != std::string::npos &&
              source.find("<|im_end|>") != std::string::npos) {}

namespace {
/// ChatML's assistant turns in rendered text, as TRL's training templates
/// mark them: content and the closing <|im_end|>.
std::vector<std::pair<size_t, size_t>> chatmlAssistantRanges(const std::string &text) {
  const std::string header = "<|im_start|>assistant\n", end = "<|im_end|>";
  std::vector<std::pair<size_t, size_t>> ranges;
  for (size_t at = text.find(header); at != std::string::npos; at = text.find(header, at)) {
    size_t begin = at + header.size();
    size_t close = text.find(end, begin);
    size_t stop = close == std::string::npos ? text.size() : close + end.size();
    if (stop > begin)
      ranges.emplace_back(begin, stop);
    at = stop;
  }
  return ranges;
}
} // namespace

jinja::Template::Output ChatTemplate::render(const nlohmann::ordered_json &messages,
                                             const nlohmann::ordered_json &tools,
                                             bool addGenerationPrompt) const {
  nlohmann::ordered_json ctx;
  ctx["messages"] = messages;
  ctx["tools"] = tools;
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = addGenerationPrompt;
  auto special = [&](const char *name, const std::string &text) {
    if (!text.empty())
      ctx[name] = text;
  };
  special("bos_token", tokenizer_.bosToken);
  special("eos_token", tokenizer_.eosToken);
  special("pad_token", tokenizer_.padToken);
  return template_.render(ctx);
}

ChatEncoding ChatTemplate::encode(const nlohmann::ordered_json &messages,
                                  const nlohmann::ordered_json &tools,
                                  bool addGenerationPrompt, bool assistantMask) const {
  jinja::Template::Output out = render(messages, tools, addGenerationPrompt);
  if (chatml_)
    out.generation = chatmlAssistantRanges(out.text);
  ChatEncoding enc;
  enc.hasGeneration = masksAssistant();
  if (!assistantMask) {
    enc.ids = tokenizer_.encode(out.text, false);
    return enc;
  }
  std::vector<std::pair<size_t, size_t>> offsets;
  enc.ids = tokenizer_.encodeWithOffsets(out.text, offsets);
  enc.assistantMask.assign(enc.ids.size(), 0);
  auto tokenAt = [&](size_t byte) -> int64_t {
    for (size_t k = 0; k < offsets.size(); ++k)
      if (offsets[k].first <= byte && byte < offsets[k].second)
        return k;
    return -1;
  };
  for (auto [b, e] : out.generation) {
    if (e <= b)
      continue;
    int64_t first = tokenAt(b), last = tokenAt(e - 1);
    if (first < 0)
      break;
    if (last < 0)
      last = static_cast<int64_t>(enc.ids.size()) - 1;
    for (int64_t k = first; k <= last; ++k)
      enc.assistantMask[k] = 1;
  }
  return enc;
}

} // namespace trlc::data
