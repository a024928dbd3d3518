//===- ChatTemplateTest.cpp - templates against transformers' jinja2 ------===//
//
// tests/data/templates/cases.jsonl holds, per template and conversation,
// what transformers' renderer produced (tests/data/make_templates.py): the
// text, the generation ranges or the error raised, and for two templates
// the ids and assistant masks of apply_chat_template. All must match.
// TRLC_TEMPLATE_CASES points at freshly generated cases instead; those of
// the python-oracles test add SmolLM2's stock ChatML template, whose
// assistant masks must equal those of its {% generation %}-marked twin.
//
//===----------------------------------------------------------------------===//

#include "data/Chat.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

using namespace trlc::data;
using json = nlohmann::ordered_json;

namespace {
std::string readAll(const std::string &path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
std::string dataDir() { return std::string(TRLC_SOURCE_DIR) + "/tests/data"; }
} // namespace

TEST(ChatTemplate, MatchesTransformers) {
  const char *env = std::getenv("TRLC_TEMPLATE_CASES");
  std::ifstream in(env ? env : dataDir() + "/templates/cases.jsonl");
  ASSERT_TRUE(in);
  std::map<std::string, Tokenizer> tokenizers;
  std::string line;
  int n = 0, tokenized = 0, raised = 0;
  while (std::getline(in, line)) {
    json c = json::parse(line);
    std::string name = c["template"];
    std::string src =
        readAll(c.value("template_dir", dataDir() + "/templates") + "/" + name);
    jinja::Template t(src, name);
    std::string label = name + " conversation " + std::to_string(c["conversation"].get<int>()) +
                        (c["add_generation_prompt"].get<bool>() ? " +gen" : "");
    ++n;
    if (c.contains("error")) {
      try {
        t.render(c["context"]);
        ADD_FAILURE() << label << ": rendered, expected " << c["error"];
      } catch (const jinja::TemplateError &e) {
        EXPECT_NE(std::string(e.what()).find(c["error"].get<std::string>()), std::string::npos)
            << label << ": " << e.what();
        ++raised;
      }
      continue;
    }
    jinja::Template::Output out = t.render(c["context"]);
    EXPECT_EQ(out.text, c["text"].get<std::string>()) << label;
    std::vector<std::pair<size_t, size_t>> gen;
    for (auto &r : c["generation"])
      gen.emplace_back(r[0].get<size_t>(), r[1].get<size_t>());
    EXPECT_EQ(out.generation, gen) << label;
    if (c.contains("input_ids")) {
      std::string tk = c["tokenizer"];
      if (!tokenizers.count(tk))
        tokenizers.emplace(
            tk, Tokenizer::load(c.value("tokenizer_dir", dataDir() + "/tokenizers/" + tk)));
      ChatTemplate chat(src, name, tokenizers.at(tk));
      ChatEncoding enc = chat.encode(c["context"]["messages"], c["context"]["tools"],
                                     c["add_generation_prompt"].get<bool>(), true);
      EXPECT_EQ(enc.ids, c["input_ids"].get<std::vector<int32_t>>()) << label;
      EXPECT_EQ(enc.assistantMask, c["assistant_masks"].get<std::vector<uint8_t>>()) << label;
      ++tokenized;
    }
  }
  EXPECT_GE(n, 40);
  EXPECT_GE(tokenized, 10);
  EXPECT_GE(raised, 4);
}

TEST(ChatTemplate, ErrorsNameTheLine) {
  try {
    jinja::Template t("line one\n{% if x %}\n{{ y }\n{% endif %}", "tpl.jinja");
    FAIL() << "parsed";
  } catch (const jinja::TemplateError &e) {
    EXPECT_NE(std::string(e.what()).find("tpl.jinja:3: error"), std::string::npos) << e.what();
  }
  try {
    jinja::Template t("{% for x in xs %}{{ x|frobnicate }}{% endfor %}", "tpl.jinja");
    t.render(json::parse(R"({"xs": [1]})"));
    FAIL() << "rendered";
  } catch (const jinja::TemplateError &e) {
    EXPECT_NE(std::string(e.what()).find("filter 'frobnicate' is not supported"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(jinja::Template("{% if x %}no end", "t"), jinja::TemplateError);
}
