//===- Packing.cpp - truncation and packing of tokenized examples ---------===//

#include "data/Packing.h"

#include <algorithm>
#include <numeric>
#include <set>
#include <tuple>
#include <stdexcept>

namespace trlc::data {

std::vector<int64_t> Row::positions() const {
  std::vector<int64_t> pos;
  pos.reserve(ids.size());
  if (seqLengths.empty()) {
    for (size_t i = 0; i < ids.size(); ++i)
      pos.push_back(static_cast<int64_t>(i));
    return pos;
  }
  for (int64_t len : seqLengths)
    for (int64_t i = 0; i < len; ++i)
      pos.push_back(i);
  return pos;
}

namespace {

/// A trainable target is a masked token with a token before it.
bool hasTarget(const Sequence &s) {
  return std::find(s.mask.begin() + std::min<size_t>(1, s.mask.size()),
                   s.mask.end(), 1) != s.mask.end();
}

std::vector<Sequence> keepTrainable(std::vector<Sequence> sequences,
                                    TruncationStats &stats) {
  std::vector<Sequence> out;
  out.reserve(sequences.size());
  for (Sequence &s : sequences) {
    if (s.ids.empty())
      ++stats.droppedEmpty;
    else if (!hasTarget(s))
      ++stats.droppedNoTarget;
    else
      out.push_back(std::move(s));
  }
  return out;
}

Row single(const Sequence &s) {
  return {s.ids, s.mask, {static_cast<int64_t>(s.ids.size())}};
}

/// Best-fit decreasing: longest first (stable), each into the open bin with
/// the least room that still fits, else a new bin. Among bins with equal
/// room the one that came down to that room first wins (TRL keeps a FIFO
/// queue per remaining space), which is not always the oldest bin.
std::vector<Row> bestFit(std::vector<Sequence> docs, int64_t seqLength) {
  std::vector<size_t> order(docs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return docs[a].ids.size() > docs[b].ids.size();
  });
  std::vector<Row> bins;
  // (room left, when the bin came down to it, bin index)
  std::set<std::tuple<int64_t, uint64_t, size_t>> open;
  uint64_t clock = 0;
  for (size_t i : order) {
    Sequence &d = docs[i];
    int64_t len = static_cast<int64_t>(d.ids.size());
    auto it = open.lower_bound({len, 0, 0});
    size_t bin;
    if (it == open.end()) {
      bin = bins.size();
      bins.emplace_back();
    } else {
      bin = std::get<2>(*it);
      open.erase(it);
    }
    Row &r = bins[bin];
    r.ids.insert(r.ids.end(), d.ids.begin(), d.ids.end());
    r.mask.insert(r.mask.end(), d.mask.begin(), d.mask.end());
    r.seqLengths.push_back(len);
    int64_t room = seqLength - static_cast<int64_t>(r.ids.size());
    if (room > 0)
      open.insert({room, clock++, bin});
  }
  return bins;
}

} // namespace

bool truncateOne(Sequence &s, int64_t maxLength, TruncationMode mode) {
  int64_t extra = static_cast<int64_t>(s.ids.size()) - maxLength;
  if (extra <= 0)
    return false;
  if (mode == TruncationMode::KeepStart) {
    s.ids.resize(maxLength);
    s.mask.resize(maxLength);
  } else {
    s.ids.erase(s.ids.begin(), s.ids.begin() + extra);
    s.mask.erase(s.mask.begin(), s.mask.begin() + extra);
  }
  s.ids.shrink_to_fit();
  s.mask.shrink_to_fit();
  return true;
}

std::vector<Sequence> truncate(std::vector<Sequence> sequences,
                               int64_t maxLength, TruncationMode mode,
                               TruncationStats &stats) {
  for (Sequence &s : sequences)
    stats.truncated += truncateOne(s, maxLength, mode);
  return keepTrainable(std::move(sequences), stats);
}

std::vector<Sequence> dropUntrainable(std::vector<Sequence> sequences,
                                      TruncationStats &stats) {
  return keepTrainable(std::move(sequences), stats);
}

std::vector<Row> pack(const std::vector<Sequence> &sequences, int64_t seqLength,
                      const std::string &strategy, size_t batch) {
  if (batch > 0 && sequences.size() > batch) {
    std::vector<Row> rows;
    for (size_t at = 0; at < sequences.size(); at += batch) {
      std::vector<Sequence> part(sequences.begin() + at,
                                 sequences.begin() + std::min(sequences.size(), at + batch));
      for (Row &r : pack(part, seqLength, strategy, 0))
        rows.push_back(std::move(r));
    }
    return rows;
  }
  if (seqLength <= 0)
    throw std::invalid_argument("pack: seq_length must be positive");
  if (strategy == "wrapped") {
    std::vector<Row> rows;
    Row cur;
    for (const Sequence &s : sequences)
      for (size_t i = 0; i < s.ids.size(); ++i) {
        cur.ids.push_back(s.ids[i]);
        cur.mask.push_back(s.mask[i]);
        if (static_cast<int64_t>(cur.ids.size()) == seqLength)
          rows.push_back(std::move(cur)), cur = Row{};
      }
    if (!cur.ids.empty())
      rows.push_back(std::move(cur));
    return rows;
  }
  if (strategy != "bfd" && strategy != "bfd_split")
    throw std::invalid_argument("pack: unknown strategy '" + strategy + "'");
  std::vector<Sequence> docs;
  docs.reserve(sequences.size());
  for (const Sequence &s : sequences) {
    if (s.ids.empty())
      continue;
    int64_t n = static_cast<int64_t>(s.ids.size());
    if (n <= seqLength) {
      docs.push_back(s);
    } else if (strategy == "bfd") {
      docs.push_back({{s.ids.begin(), s.ids.begin() + seqLength},
                      {s.mask.begin(), s.mask.begin() + seqLength}});
    } else {
      for (int64_t at = 0; at < n; at += seqLength) {
        int64_t end = std::min(n, at + seqLength);
        docs.push_back({{s.ids.begin() + at, s.ids.begin() + end},
                        {s.mask.begin() + at, s.mask.begin() + end}});
      }
    }
  }
  return bestFit(std::move(docs), seqLength);
}

std::vector<Row> unpacked(const std::vector<Sequence> &sequences) {
  std::vector<Row> rows;
  rows.reserve(sequences.size());
  for (const Sequence &s : sequences)
    rows.push_back(single(s));
  return rows;
}

} // namespace trlc::data
