//===- PackingTest.cpp - TRL's truncation and pack_dataset semantics -------===//

#include "data/Packing.h"

#include <gtest/gtest.h>

using namespace trlc::data;

namespace {

Sequence seq(std::vector<int64_t> ids) {
  return {ids, std::vector<uint8_t>(ids.size(), 1)};
}

std::vector<std::vector<int64_t>> ids(const std::vector<Row> &rows) {
  std::vector<std::vector<int64_t>> out;
  for (const Row &r : rows)
    out.push_back(r.ids);
  return out;
}

std::vector<std::vector<int64_t>> lengths(const std::vector<Row> &rows) {
  std::vector<std::vector<int64_t>> out;
  for (const Row &r : rows)
    out.push_back(r.seqLengths);
  return out;
}

TEST(Packing, ReferenceWorkedExample) {
  // REFERENCE.md, seq_length 4: [[1,2,3],[4,5,6,7],[8]] -> [[4,5,6,7],[1,2,3,8]].
  auto rows = pack({seq({1, 2, 3}), seq({4, 5, 6, 7}), seq({8})}, 4, "bfd");
  EXPECT_EQ(ids(rows), (std::vector<std::vector<int64_t>>{{4, 5, 6, 7}, {1, 2, 3, 8}}));
  EXPECT_EQ(lengths(rows), (std::vector<std::vector<int64_t>>{{4}, {3, 1}}));
  EXPECT_EQ(rows[1].positions(), (std::vector<int64_t>{0, 1, 2, 0}));
}

TEST(Packing, BestFitPicksTheTightestBinThenTheOldest) {
  // seq_length 10. Sorted: 6a, 6b, 4, 3, 1. The bins after 6a, 6b have 4
  // left each: "4" goes to the oldest (bin 0), "3" to bin 1 (room 4), "1"
  // to bin 1 (room 1, tighter than anything else).
  auto rows = pack({seq({40, 41, 42, 43}), seq({1, 2, 3, 4, 5, 6}), seq({7}),
                    seq({20, 21, 22}), seq({11, 12, 13, 14, 15, 16})},
                   10, "bfd");
  EXPECT_EQ(ids(rows), (std::vector<std::vector<int64_t>>{
                           {1, 2, 3, 4, 5, 6, 40, 41, 42, 43},
                           {11, 12, 13, 14, 15, 16, 20, 21, 22, 7}}));
  EXPECT_EQ(lengths(rows), (std::vector<std::vector<int64_t>>{{6, 4}, {6, 3, 1}}));
}

TEST(Packing, BfdCutsAndBfdSplitFragmentsOverlongSequences) {
  std::vector<Sequence> in = {seq({1, 2, 3, 4, 5, 6, 7}), seq({8}), seq({})};
  auto cut = pack(in, 3, "bfd");
  EXPECT_EQ(ids(cut), (std::vector<std::vector<int64_t>>{{1, 2, 3}, {8}}));
  auto split = pack(in, 3, "bfd_split");
  // Fragments [1,2,3], [4,5,6], [7] and [8]: the short ones share a bin.
  EXPECT_EQ(ids(split), (std::vector<std::vector<int64_t>>{{1, 2, 3}, {4, 5, 6}, {7, 8}}));
  EXPECT_EQ(lengths(split).back(), (std::vector<int64_t>{1, 1}));
}

TEST(Packing, WrappedIgnoresDocumentBoundaries) {
  auto rows = pack({seq({1, 2, 3}), seq({4, 5, 6, 7}), seq({8})}, 3, "wrapped");
  EXPECT_EQ(ids(rows), (std::vector<std::vector<int64_t>>{{1, 2, 3}, {4, 5, 6}, {7, 8}}));
  EXPECT_TRUE(rows[1].seqLengths.empty());
  EXPECT_EQ(rows[1].positions(), (std::vector<int64_t>{0, 1, 2}));
}

TEST(Packing, MasksTravelWithTheirTokens) {
  Sequence a{{1, 2, 3}, {0, 1, 1}}, b{{4, 5}, {0, 1}};
  auto rows = pack({a, b}, 8, "bfd");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].mask, (std::vector<uint8_t>{0, 1, 1, 0, 1}));
}

TEST(Truncation, KeepStartKeepEndAndDroppedExamples) {
  TruncationStats stats;
  std::vector<Sequence> in = {
      {{1, 2, 3, 4, 5}, {0, 0, 0, 1, 1}},  // keep_start leaves no target
      {{6, 7}, {0, 1}},
      {{}, {}},
  };
  auto start = truncate(in, 3, TruncationMode::KeepStart, stats);
  ASSERT_EQ(start.size(), 1u);
  EXPECT_EQ(start[0].ids, (std::vector<int64_t>{6, 7}));
  EXPECT_EQ(stats.truncated, 1);
  EXPECT_EQ(stats.droppedNoTarget, 1);
  EXPECT_EQ(stats.droppedEmpty, 1);

  TruncationStats endStats;
  auto end = truncate(in, 3, TruncationMode::KeepEnd, endStats);
  ASSERT_EQ(end.size(), 2u);
  EXPECT_EQ(end[0].ids, (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(end[0].mask, (std::vector<uint8_t>{0, 1, 1}));
  EXPECT_EQ(endStats.droppedNoTarget, 0);
}

TEST(Packing, RefusesBadArguments) {
  EXPECT_THROW(pack({seq({1})}, 0, "bfd"), std::invalid_argument);
  EXPECT_THROW(pack({seq({1})}, 4, "first_fit"), std::invalid_argument);
}

} // namespace

// pack_dataset is a batched map: each block of 1000 examples is packed on
// its own, so a wrapped row never spans two blocks.
TEST(Packing, BlocksOfAThousandArePackedSeparately) {
  std::vector<Sequence> ones;
  for (int i = 0; i < 1001; ++i)
    ones.push_back({{i}, {1}});
  auto rows = pack(ones, 3, "wrapped");
  ASSERT_EQ(rows.size(), 335u);  // 333 full + [999] from block 1, [1000] from block 2
  EXPECT_EQ(rows[333].ids, (std::vector<int64_t>{999}));
  EXPECT_EQ(rows[334].ids, (std::vector<int64_t>{1000}));
  EXPECT_EQ(pack(ones, 3, "wrapped", 0).size(), 334u);
}

// Equal room: the bin that came down to it first wins, not the oldest bin
// (checked against trl.data_utils.pack_dataset: rows [4], [5, 6, 3], [1, 0, 2]).
TEST(Packing, EqualRoomGoesToTheBinThatReachedItFirst) {
  std::vector<Sequence> docs;
  for (int64_t len : {4, 5, 1, 1, 10, 7, 2}) {
    Sequence s;
    for (int64_t j = 0; j < len; ++j)
      s.ids.push_back(100 * static_cast<int64_t>(docs.size()) + j);
    s.mask.assign(len, 1);
    docs.push_back(s);
  }
  auto rows = pack(docs, 10, "bfd");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1].seqLengths, (std::vector<int64_t>{7, 2, 1}));
  EXPECT_EQ(rows[1].ids.back(), 300);
  EXPECT_EQ(rows[2].seqLengths, (std::vector<int64_t>{5, 4, 1}));
  EXPECT_EQ(rows[2].ids.back(), 200);
}
