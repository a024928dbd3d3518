//===- Packing.h - truncation and packing of tokenized examples -*- C++ -*-===//
//
// TRL's semantics (../shared/REFERENCE.md):
// - SFT truncation: ids and the loss mask are cut together to max_length,
//   keep_start (cut the tail) or keep_end (cut the head); examples left
//   with no trainable token are dropped and counted.
// - pack_dataset strategies: `bfd` (best-fit decreasing, over-long
//   sequences cut to seq_length), `bfd_split` (over-long sequences split
//   into seq_length fragments, each its own document) and `wrapped`
//   (concatenate everything, cut every seq_length tokens).
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_DATA_PACKING_H
#define TRLC_DATA_PACKING_H

#include <cstdint>
#include <string>
#include <vector>

namespace trlc::data {

/// One tokenized document: ids and the mask of tokens the loss counts.
struct Sequence {
  std::vector<int64_t> ids;
  std::vector<uint8_t> mask;
};

/// A training row: one or more documents back to back.
struct Row {
  std::vector<int64_t> ids;
  std::vector<uint8_t> mask;
  std::vector<int64_t> seqLengths;  // document lengths; empty for `wrapped`
  /// Position ids: 0.. restarting at each document (0.. over the row for
  /// `wrapped`, whose documents attend to each other).
  std::vector<int64_t> positions() const;
};

enum class TruncationMode { KeepStart, KeepEnd };

struct TruncationStats {
  int64_t truncated = 0;        // examples cut to max_length
  int64_t droppedEmpty = 0;     // examples with no token
  int64_t droppedNoTarget = 0;  // examples with no trainable token left
};

/// Cuts every sequence to `maxLength` by `mode` and drops the empty ones
/// and those whose loss mask no longer has a trainable target (a token
/// after the first), counting each.
/// Cuts one sequence to `maxLength` tokens by `mode`; true when it was longer.
bool truncateOne(Sequence &s, int64_t maxLength, TruncationMode mode);
std::vector<Sequence> truncate(std::vector<Sequence> sequences,
                               int64_t maxLength, TruncationMode mode,
                               TruncationStats &stats);

/// Drops empty sequences and those with no trainable target (counted in
/// `stats`) without cutting anything: the packing path.
std::vector<Sequence> dropUntrainable(std::vector<Sequence> sequences,
                                      TruncationStats &stats);

/// TRL's pack_dataset runs as a batched datasets.map, so each block of
/// 1000 examples (the map's default batch size) is packed on its own.
constexpr size_t kTrlPackBatch = 1000;

/// Packs `sequences` into rows of at most `seqLength` tokens with the
/// strategy "bfd", "bfd_split" or "wrapped", each block of `batch`
/// sequences separately (0: all at once).
std::vector<Row> pack(const std::vector<Sequence> &sequences, int64_t seqLength,
                      const std::string &strategy, size_t batch = kTrlPackBatch);

/// One row per sequence (packing off).
std::vector<Row> unpacked(const std::vector<Sequence> &sequences);

} // namespace trlc::data

#endif // TRLC_DATA_PACKING_H
