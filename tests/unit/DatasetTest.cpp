//===- DatasetTest.cpp - the data plan on small JSONL files ---------------===//

#include "data/Dataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace trlc::data;

namespace {

std::string writeJsonl(const std::string &name, const std::string &text) {
  auto path = std::filesystem::temp_directory_path() / ("trlc-dataset-" + name);
  std::ofstream(path) << text;
  return path.string();
}

DataConfig arith(const std::string &method, const std::string &file) {
  DataConfig c;
  c.method = method;
  c.files = {file};
  c.tokenizer = std::string(TRLC_SOURCE_DIR) + "/recipes/data/arith-tokenizer";
  c.vocabSize = 32;
  c.where = "test";
  return c;
}

// '0'..'9' are ids 3..12, '+' 13, '=' 14; BOS 1, EOS 2.
std::vector<int64_t> ids(const std::string &s) {
  std::vector<int64_t> out;
  for (char ch : s)
    out.push_back(ch == '+' ? 13 : ch == '=' ? 14 : ch - '0' + 3);
  return out;
}

} // namespace

// REFERENCE.md's DPO truncation: a prompt that alone fills max_length is
// dropped and counted; otherwise keep_start cuts the completion's end.
TEST(Dataset, DpoDropsPromptsThatFillMaxLength) {
  DataConfig c = arith("dpo", writeJsonl("dpo.jsonl",
      "{\"prompt\": \"12+34=\", \"chosen\": \"46\", \"rejected\": \"47\"}\n"
      "{\"prompt\": \"1+2=\", \"chosen\": \"3\", \"rejected\": \"4\"}\n"));
  c.maxLength = 7;  // the first prompt is BOS + 6 = 7 tokens
  DataPlan p = runDataPlan(c);
  ASSERT_EQ(p.examples.size(), 1u);
  EXPECT_EQ(p.stats.dropped.at("prompt fills max_length"), 1);
  std::vector<int64_t> want = {1};
  for (int64_t t : ids("1+2=3"))
    want.push_back(t);
  want.push_back(2);
  want.resize(7);  // 1 + 4 prompt + "3" + EOS = 7: fits exactly
  EXPECT_EQ(p.examples[0].chosen.ids, want);
  EXPECT_EQ(p.examples[0].chosen.mask, (std::vector<uint8_t>{0, 0, 0, 0, 0, 1, 1}));

  c.maxLength = 6;  // now the completion loses its EOS (keep_start)
  p = runDataPlan(c);
  ASSERT_EQ(p.examples.size(), 1u);
  EXPECT_EQ(p.examples[0].rejected.ids.size(), 6u);
  EXPECT_EQ(p.examples[0].rejected.ids.back(), ids("4")[0]);
  EXPECT_EQ(p.stats.truncated, 1);
}

// TRL's _get_kl_dataset: in dataset order, within blocks of the per-device
// batch, each prompt with the previous example's completion and the
// block's first with its last.
TEST(Dataset, KtoPairsEachPromptWithThePreviousCompletionPerBlock) {
  DataConfig c = arith("kto", writeJsonl("kto-kl.jsonl",
      "{\"prompt\": \"1+1=\", \"completion\": \"2\", \"label\": true}\n"
      "{\"prompt\": \"2+2=\", \"completion\": \"4\", \"label\": true}\n"
      "{\"prompt\": \"3+3=\", \"completion\": \"6\", \"label\": false}\n"
      "{\"prompt\": \"4+4=\", \"completion\": \"8\", \"label\": true}\n"
      "{\"prompt\": \"5+5=\", \"completion\": \"10\", \"label\": false}\n"));
  c.batchSize = 3;
  DataPlan p = runDataPlan(c);
  ASSERT_EQ(p.examples.size(), 5u);
  auto seq = [](const std::string &prompt, const std::string &completion) {
    std::vector<int64_t> s = {1};
    for (int64_t t : ids(prompt + completion))
      s.push_back(t);
    s.push_back(2);
    return s;
  };
  EXPECT_EQ(p.examples[0].rejected.ids, seq("1+1=", "6"));  // the block's last
  EXPECT_EQ(p.examples[1].rejected.ids, seq("2+2=", "2"));
  EXPECT_EQ(p.examples[2].rejected.ids, seq("3+3=", "4"));
  EXPECT_EQ(p.examples[3].rejected.ids, seq("4+4=", "10"));  // the second block
  EXPECT_EQ(p.examples[4].rejected.ids, seq("5+5=", "8"));
  // The completion (its EOS included) is what the mask marks.
  EXPECT_EQ(p.examples[3].rejected.mask, (std::vector<uint8_t>{0, 0, 0, 0, 0, 1, 1, 1}));
  EXPECT_FALSE(p.examples[2].label);
}

TEST(Dataset, KtoKeepsLabelsAndRejectsBadOnes) {
  DataConfig c = arith("kto", writeJsonl("kto.jsonl",
      "{\"prompt\": \"1+1=\", \"completion\": \"2\", \"label\": true}\n"
      "{\"prompt\": \"1+1=\", \"completion\": \"3\", \"label\": false}\n"
      "{\"prompt\": \"1+1=\", \"completion\": \"3\", \"label\": \"no\"}\n"));
  try {
    runDataPlan(c);
    FAIL() << "a string label was accepted";
  } catch (const InputError &e) {
    EXPECT_NE(std::string(e.what()).find("kto.jsonl:3: error: \"label\" must be true or false"),
              std::string::npos) << e.what();
  }
  c.skipBadRows = true;
  DataPlan p = runDataPlan(c);
  ASSERT_EQ(p.examples.size(), 2u);
  EXPECT_TRUE(p.examples[0].label);
  EXPECT_FALSE(p.examples[1].label);
  EXPECT_EQ(p.stats.skipped.at("wrong type"), 1);
}

// Rows are tokenized on several threads; the result keeps file order.
TEST(Dataset, ManyRowsKeepTheirOrder) {
  std::string text;
  for (int i = 0; i < 20000; ++i)
    text += "{\"text\": \"" + std::to_string(i) + "+0=\"}\n";
  DataConfig c = arith("sft", writeJsonl("lm.jsonl", text));
  c.maxLength = 64;
  DataPlan p = runDataPlan(c);
  ASSERT_EQ(p.rows.size(), 20000u);
  EXPECT_EQ(p.stats.format, "language_modeling");
  for (int i : {0, 8191, 8192, 19999}) {
    std::vector<int64_t> want = {1};
    for (int64_t t : ids(std::to_string(i) + "+0="))
      want.push_back(t);
    want.push_back(2);  // EOS appended to language-modeling text
    EXPECT_EQ(p.rows[i].ids, want) << i;
  }
}
