//===- Shards.h - token shards in the artifact ------------------*- C++ -*-===//
//
// The data plan's training rows, stored in the artifact so the runtime only
// streams ready rows. A shard file (little-endian):
//
//   "TRLCTOK1"  u64 rows
//   per row:    u32 tokens, u32 documents,
//               i32 ids[tokens], u8 loss_mask[tokens], u32 seq_lengths[documents]
//
// The artifact's data/index.json records the source files and their content
// hash, so a changed dataset is detected. No dependency beyond the C++
// library: the runtime links this.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_DATA_SHARDS_H
#define TRLC_DATA_SHARDS_H

#include "data/Packing.h"

#include <string>
#include <vector>

namespace trlc::data {

/// Writes `rows` to `path`; throws std::runtime_error on I/O failure.
void writeShard(const std::string &path, const std::vector<Row> &rows);
/// Reads a shard, checking every size against the file; throws
/// std::runtime_error naming the file when it is damaged.
std::vector<Row> readShard(const std::string &path);

/// 64-bit content hash (FNV-1a over each file's size and bytes), hex.
std::string hashFiles(const std::vector<std::string> &files);

} // namespace trlc::data

#endif // TRLC_DATA_SHARDS_H
