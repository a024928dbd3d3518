//===- Shards.h - token shards in the artifact ------------------*- C++ -*-===//
//
// The data plan's training rows, stored in the artifact so the runtime only
// streams ready rows. The compiler writes them, the runtime reads them; the
// format belongs to the artifact contract. A shard file (little-endian):
//
//   "TRLCTOK2"  u64 rows
//   per row:    u32 tokens, u32 documents, u8 label,
//               i32 ids[tokens], u8 loss_mask[tokens], u32 seq_lengths[documents]
//
// What a row holds depends on the method: SFT one example or several
// packed; DPO one pair, the chosen then the rejected sequence as two
// documents; KTO the example then its KL pair (the prompt with another
// example's completion) as two documents, with the example's label; GRPO
// one prompt.
//
// The artifact's data/index.json records the source files and their
// content hash (hashFiles), so a changed dataset is detected.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_SHARDS_H
#define TRLC_RUNTIME_SHARDS_H

#include <cstdint>
#include <string>
#include <vector>

namespace trlc {

/// One row of a shard: token ids, the mask of tokens the loss counts, and
/// the lengths of the documents packed into it (empty: one document, or a
/// `wrapped` row whose documents attend to each other).
struct TokenRow {
  std::vector<int64_t> ids;
  std::vector<uint8_t> mask;
  std::vector<int64_t> seqLengths;
  uint8_t label = 0;  // KTO: 1 desirable, 0 undesirable
};

/// Writes `rows` to `path`; throws std::runtime_error on I/O failure.
void writeShard(const std::string &path, const std::vector<TokenRow> &rows);
/// Reads a shard, checking every size against the file, its bytes against
/// `expectHash` (hex FNV-1a, when given), masks and labels (0 or 1) and
/// token ids (within [0, vocab) when vocab > 0); throws std::runtime_error
/// naming the file when it is damaged.
std::vector<TokenRow> readShard(const std::string &path, const std::string &expectHash = "",
                                int64_t vocab = 0);

/// 64-bit FNV-1a over each file's size and bytes, as hex.
std::string hashFiles(const std::vector<std::string> &files);

} // namespace trlc

#endif // TRLC_RUNTIME_SHARDS_H
