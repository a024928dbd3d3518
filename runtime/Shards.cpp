//===- Shards.cpp - token shards in the artifact --------------------------===//

#include "trlc/Shards.h"
#include "trlc/Files.h"
#include "trlc/Hash.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace trlc {

namespace {
const char kMagic[8] = {'T', 'R', 'L', 'C', 'T', 'O', 'K', '2'};

template <typename T> void put(std::string &out, T v) {
  out.append(reinterpret_cast<const char *>(&v), sizeof v);
}
} // namespace

void writeShard(const std::string &path, const std::vector<TokenRow> &rows) {
  std::string buf(kMagic, sizeof kMagic);
  put<uint64_t>(buf, rows.size());
  for (const TokenRow &r : rows) {
    put<uint32_t>(buf, static_cast<uint32_t>(r.ids.size()));
    put<uint32_t>(buf, static_cast<uint32_t>(r.seqLengths.size()));
    put<uint8_t>(buf, r.label);
    for (int64_t id : r.ids)
      put<int32_t>(buf, static_cast<int32_t>(id));
    buf.append(reinterpret_cast<const char *>(r.mask.data()), r.mask.size());
    for (int64_t len : r.seqLengths)
      put<uint32_t>(buf, static_cast<uint32_t>(len));
  }
  if (auto error = writeFileAtomic(path, buf))
    throw std::runtime_error(*error);
}

std::vector<TokenRow> readShard(const std::string &path, const std::string &expectHash,
                                int64_t vocab) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error(path + ": error: cannot read the token shard (is the "
                                    "artifact complete? compile it again)");
  std::string buf((std::istreambuf_iterator<char>(in)), {});
  auto damaged = [&](const std::string &what) {
    return std::runtime_error(path + ": error: damaged token shard (" + what +
                              "); compile the artifact again");
  };
  if (!expectHash.empty() && hashHex(fnv1a(buf)) != expectHash)
    throw std::runtime_error(path + ": error: damaged token shard (its bytes do not match "
                                    "the manifest's hash); compile the artifact again");
  size_t pos = 0;
  auto take = [&](void *dst, size_t n) {
    if (buf.size() - pos < n)
      throw damaged("truncated at byte " + std::to_string(pos));
    std::memcpy(dst, buf.data() + pos, n);
    pos += n;
  };
  char magic[8];
  take(magic, sizeof magic);
  if (std::memcmp(magic, kMagic, 7) == 0 && magic[7] != kMagic[7])
    throw std::runtime_error(path + ": error: token shard of an older trlc (format " +
                             std::string(1, magic[7]) + "); compile the artifact again");
  if (std::memcmp(magic, kMagic, sizeof magic) != 0)
    throw damaged("bad magic");
  uint64_t n;
  take(&n, sizeof n);
  if (n > buf.size())
    throw damaged("row count " + std::to_string(n));
  std::vector<TokenRow> rows(n);
  for (TokenRow &r : rows) {
    uint32_t tokens, docs;
    take(&tokens, 4);
    take(&docs, 4);
    take(&r.label, 1);
    if (tokens > buf.size() || docs > tokens)
      throw damaged("row sizes");
    std::vector<int32_t> ids(tokens);
    take(ids.data(), 4ull * tokens);
    r.ids.assign(ids.begin(), ids.end());
    r.mask.resize(tokens);
    take(r.mask.data(), tokens);
    if (r.label > 1)
      throw damaged("a label of " + std::to_string(r.label) + " (0 or 1)");
    for (uint8_t m : r.mask)
      if (m > 1)
        throw damaged("a loss-mask value of " + std::to_string(m) + " (0 or 1)");
    for (int32_t id : ids)
      if (id < 0 || (vocab > 0 && id >= vocab))
        throw damaged("token id " + std::to_string(id) + " outside the model's vocabulary of " +
                      std::to_string(vocab));
    std::vector<uint32_t> lens(docs);
    take(lens.data(), 4ull * docs);
    uint64_t sum = 0;
    for (uint32_t l : lens)
      sum += l;
    if (docs && sum != tokens)
      throw damaged("document lengths do not add up to the row");
    r.seqLengths.assign(lens.begin(), lens.end());
  }
  if (pos != buf.size())
    throw damaged("trailing bytes");
  return rows;
}

std::string hashFiles(const std::vector<std::string> &files) {
  uint64_t h = kFnvOffsetBasis;
  std::vector<char> buf(1 << 20);
  for (const std::string &f : files) {
    std::error_code ec;
    uint64_t size = fs::file_size(f, ec);
    h = fnv1a(&size, sizeof size, h);
    std::ifstream in(f, std::ios::binary);
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      h = fnv1a(buf.data(), static_cast<size_t>(in.gcount()), h);
    }
  }
  return hashHex(h);
}

} // namespace trlc
