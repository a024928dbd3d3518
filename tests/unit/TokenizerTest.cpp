//===- TokenizerTest.cpp - tokenizer.json against the HF library ----------===//
//
// The fixtures under tests/data/tokenizers were built and encoded by the
// Hugging Face `tokenizers` library (tests/data/make_tokenizers.py); every
// id and every decoded string must match. TRLC_TOKENIZER_FIXTURES points
// the test at freshly generated fixtures instead (the tokenizer-oracle test).
//
//===----------------------------------------------------------------------===//

#include "data/Tokenizer.h"
#include "data/Utf8.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using trlc::data::InputError;
using trlc::data::Tokenizer;

namespace {

std::string fixtures() {
  if (const char *dir = std::getenv("TRLC_TOKENIZER_FIXTURES"))
    return dir;
  return std::string(TRLC_SOURCE_DIR) + "/tests/data/tokenizers";
}

void checkFixture(const std::string &name, int minCases = 50) {
  std::string dir = fixtures() + "/" + name;
  Tokenizer tok = Tokenizer::load(dir);
  std::ifstream in(dir + "/cases.jsonl");
  ASSERT_TRUE(in) << dir;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    auto c = nlohmann::json::parse(line);
    std::string text = c["text"];
    auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.encode(text), ids) << name << ": " << text;
    EXPECT_EQ(tok.encode(text, false), c["ids_no_special"].get<std::vector<int32_t>>())
        << name << ": " << text;
    EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>()) << name << ": " << text;
    EXPECT_EQ(tok.decode(ids, true), c["decoded_skip"].get<std::string>())
        << name << ": " << text;
    ++n;
  }
  EXPECT_GT(n, minCases);
}

} // namespace

TEST(Tokenizer, QwenByteLevelMatchesHF) { checkFixture("qwen-bytelevel"); }
TEST(Tokenizer, Llama3ByteLevelMatchesHF) { checkFixture("llama3-bytelevel"); }
TEST(Tokenizer, Llama2MetaspaceMatchesHF) { checkFixture("llama2-metaspace"); }
TEST(Tokenizer, MistralMetaspaceMatchesHF) { checkFixture("mistral-metaspace"); }
// SmolLM2-135M-Instruct's own tokenizer (digits one by one, then
// byte-level; 277 texts): only in the fixtures the python-oracles test
// generates from scripts/fetch-smollm2's model, which is not committed.
TEST(Tokenizer, SmolLM2MatchesHF) {
  if (!std::filesystem::exists(fixtures() + "/smollm2/cases.jsonl"))
    GTEST_SKIP() << "no SmolLM2 fixture here; the python-oracles test makes one";
  checkFixture("smollm2", 200);
}

TEST(Tokenizer, ConfigGivesSpecialTokens) {
  Tokenizer tok = Tokenizer::load(fixtures() + "/llama3-bytelevel");
  ASSERT_TRUE(tok.bosId && tok.eosId);
  EXPECT_EQ(tok.idToToken(*tok.bosId), "<|begin_of_text|>");
  EXPECT_EQ(tok.eosToken, "<|eot_id|>");
  EXPECT_FALSE(tok.padId);
}

TEST(Tokenizer, BadFilesNameTheFileAndField) {
  try {
    Tokenizer::fromJson("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "x/tokenizer.json");
    FAIL() << "Unigram accepted";
  } catch (const InputError &e) {
    EXPECT_NE(std::string(e.what()).find("x/tokenizer.json: error: model type 'Unigram'"),
              std::string::npos) << e.what();
  }
  try {
    Tokenizer::fromJson("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                        "\"merges\": [\"a b\"]}}", "t.json");
    FAIL() << "bad merge accepted";
  } catch (const InputError &e) {
    EXPECT_NE(std::string(e.what()).find("merges[0]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tokenizer::fromJson("{not json", "t.json"), InputError);
  EXPECT_THROW(Tokenizer::load("/nonexistent/dir"), InputError);
}

// Decoding byte-level tokens can cut a character; the text replaces each
// maximal invalid subpart with U+FFFD, as Rust's from_utf8_lossy (and
// Python's errors="replace") do.
TEST(Tokenizer, LossyUtf8MatchesRust) {
  namespace utf8 = trlc::data::utf8;
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8::lossy("\xE6\x97" "a"), r + "a");
  EXPECT_EQ(utf8::lossy("\xF0\x9F\x98"), r);
  EXPECT_EQ(utf8::lossy("\xED\xA0\x80"), r + r + r);  // a surrogate
  EXPECT_EQ(utf8::lossy("\xC0\xAF"), r + r);          // an overlong
  EXPECT_EQ(utf8::lossy("a\x80" "b"), "a" + r + "b");
  EXPECT_EQ(utf8::lossy("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_TRUE(utf8::valid("caf\xC3\xA9 \xF0\x9F\xA4\x97"));
  EXPECT_FALSE(utf8::valid("\xED\xA0\x80"));
}
