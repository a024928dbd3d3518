//===- chat_template.cpp - fuzz the Jinja chat-template engine -------------===//
// Input: a template, optionally a NUL byte and the messages as JSON (a
// fixed conversation otherwise).
#include "data/Jinja.h"
#include "Fuzz.h"

#include <nlohmann/json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  auto [source, messages] = trlc::fuzz::splitAtNul(data, size);
  nlohmann::ordered_json context = {
      {"messages",
       {{{"role", "system"}, {"content", "Be brief."}},
        {{"role", "user"}, {"content", "12+7="}},
        {{"role", "assistant"}, {"content", "19"}}}},
      {"bos_token", "<s>"},
      {"eos_token", "</s>"},
      {"add_generation_prompt", false}};
  if (!messages.empty()) {
    auto parsed = nlohmann::ordered_json::parse(messages, nullptr, false);
    if (!parsed.is_discarded())
      context["messages"] = parsed;
  }
  try {
    trlc::data::jinja::Template t{std::string(source), "fuzz.jinja"};
    auto out = t.render(context);
    for (const auto &[b, e] : out.generation)
      if (b > e || e > out.text.size())
        __builtin_trap();  // a generation range outside the text
  } catch (const trlc::data::jinja::TemplateError &) {
  }
  return 0;
}
