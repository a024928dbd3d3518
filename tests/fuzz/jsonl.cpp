//===- jsonl.cpp - fuzz dataset rows through the whole data plan ----------===//
// Input: one byte choosing the method, packing and bad-row policy, then
// the JSONL file. Rows are tokenized with the demo's tokenizer and, for
// conversational rows, the ChatML test template.
#include "data/Dataset.h"
#include "data/Jinja.h"
#include "Fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t mode = data[0];
  std::string path = trlc::fuzz::writeScratch(
      "rows.jsonl", std::string_view(reinterpret_cast<const char *>(data + 1), size - 1));
  trlc::data::DataConfig c;
  static const char *methods[] = {"sft", "dpo", "kto", "grpo"};
  c.method = methods[mode & 3];
  c.files = {path};
  c.tokenizer = TRLC_SOURCE_DIR "/recipes/data/arith-tokenizer";
  c.chatTemplatePath = TRLC_SOURCE_DIR "/tests/data/templates/chatml.jinja";
  c.skipBadRows = mode & 4;
  c.packing = (mode & 8) && c.method == "sft";
  c.paddingFree = (mode & 16) && !c.packing;
  c.truncation = (mode & 32) ? trlc::data::TruncationMode::KeepEnd
                             : trlc::data::TruncationMode::KeepStart;
  c.maxLength = (mode & 64) ? 8 : 32;
  c.maxPromptLength = 16;
  c.vocabSize = 32;
  c.batchSize = 4;
  c.where = "fuzz.toml:1:1";
  try {
    trlc::data::DataPlan plan = trlc::data::runDataPlan(c);
    for (const trlc::data::Row &r : plan.rows) {
      if (r.ids.size() != r.mask.size())
        __builtin_trap();  // ids and mask disagree
      for (int64_t id : r.ids)
        if (id < 0 || id >= 32)
          __builtin_trap();  // a token outside the vocabulary
    }
  } catch (const trlc::data::InputError &) {
  } catch (const trlc::data::jinja::TemplateError &) {
  }
  return 0;
}
