//===- Chat.h - chat templates over a tokenizer -----------------*- C++ -*-===//
//
// apply_chat_template as transformers does it: the template sees messages,
// tools, documents, add_generation_prompt and the tokenizer's special
// tokens; the rendered text is tokenized without adding special tokens;
// the assistant mask marks the tokens from the one holding the first byte
// of each {% generation %} block to the one holding its last byte.
//
// ChatML templates without {% generation %} (SmolLM2's, Qwen2.5's stock
// templates) are marked the way TRL's training templates mark them: each
// assistant turn's content and its closing <|im_end|>, found in the
// rendered text after every "<|im_start|>assistant\n" (the newline after
// <|im_end|> and the generation prompt are not assistant text).
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_DATA_CHAT_H
#define TRLC_DATA_CHAT_H

#include "data/Jinja.h"
#include "data/Tokenizer.h"

namespace trlc::data {

struct ChatEncoding {
  std::vector<int32_t> ids;
  std::vector<uint8_t> assistantMask;  // filled when asked for
  bool hasGeneration = false;          // the template marks assistant text
};

class ChatTemplate {
public:
  /// `source` is the template text, `where` names it in messages.
  ChatTemplate(const std::string &source, const std::string &where,
               const Tokenizer &tokenizer);

  /// Rendered text and generation ranges. Throws jinja::TemplateError.
  jinja::Template::Output render(const nlohmann::ordered_json &messages,
                                 const nlohmann::ordered_json &tools,
                                 bool addGenerationPrompt) const;
  ChatEncoding encode(const nlohmann::ordered_json &messages,
                      const nlohmann::ordered_json &tools,
                      bool addGenerationPrompt, bool assistantMask) const;
  bool marksGeneration() const { return marksGeneration_; }
  /// The assistant mask is known: {% generation %} blocks, or ChatML.
  bool masksAssistant() const { return marksGeneration_ || chatml_; }

private:
  jinja::Template template_;
  const Tokenizer &tokenizer_;
  bool marksGeneration_;
  bool chatml_;  // a ChatML template without generation blocks
};

} // namespace trlc::data

#endif // TRLC_DATA_CHAT_H
