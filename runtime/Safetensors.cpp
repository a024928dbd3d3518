//===- Safetensors.cpp - the safetensors format, read and written ---------===//

#include "trlc/Safetensors.h"
#include "trlc/Files.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace trlc::safetensors {

uint16_t floatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f))
    return 0x7fc0;
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

float bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float f16ToFloat(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float v;
  if (exp == 0)
    v = std::ldexp(static_cast<float>(mant), -24);
  else if (exp == 31)
    v = mant ? NAN : INFINITY;
  else
    v = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}

uint16_t floatToF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = (u >> 16) & 0x8000;
  if (std::isnan(f))
    return sign | 0x7e00;
  float a = std::fabs(f);
  if (a >= 65520.0f)
    return sign | 0x7c00;
  if (a < 6.103515625e-05f) {  // subnormal: multiples of 2^-24
    return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));
  }
  int e;
  float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  uint32_t mant = static_cast<uint32_t>(std::nearbyint((m * 2 - 1) * 1024));
  int exp = e - 1 + 15;
  if (mant == 1024) {
    mant = 0;
    ++exp;
  }
  if (exp >= 31)
    return sign | 0x7c00;
  return sign | static_cast<uint16_t>(exp << 10) | static_cast<uint16_t>(mant);
}

namespace {

int64_t dtypeSize(const std::string &d) {
  if (d == "F32") return 4;
  if (d == "F16" || d == "BF16") return 2;
  return 0;
}

} // namespace

bool readFile(const std::string &path, std::map<std::string, Tensor> &tensors,
              std::string &error) {
  auto fail = [&](const std::string &msg) {
    error = path + ": error: " + msg;
    return false;
  };
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail("cannot open the safetensors file");
  in.seekg(0, std::ios::end);
  int64_t size = in.tellg();
  in.seekg(0);
  uint64_t headerLen = 0;
  if (size < 8 || !in.read(reinterpret_cast<char *>(&headerLen), 8))
    return fail("too short to be a safetensors file (" + std::to_string(size) +
                " bytes)");
  if (headerLen > 100000000 || static_cast<int64_t>(headerLen) > size - 8)
    return fail("header length " + std::to_string(headerLen) +
                " does not fit in the file (" + std::to_string(size) + " bytes)");
  std::string header(headerLen, '\0');
  in.read(header.data(), headerLen);
  auto j = nlohmann::json::parse(header, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return fail("the header is not a JSON object");
  int64_t dataSize = size - 8 - static_cast<int64_t>(headerLen);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const auto &[name, info] : j.items()) {
    if (name == "__metadata__")
      continue;
    const std::string &tensor = name;  // a lambda may not capture a structured binding (clang < 16)
    auto bad = [&](const std::string &msg) { return fail("tensor '" + tensor + "': " + msg); };
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") ||
        !info.contains("data_offsets") || !info["dtype"].is_string() ||
        !info["shape"].is_array() || !info["data_offsets"].is_array() ||
        info["data_offsets"].size() != 2)
      return bad("needs dtype, shape and data_offsets [begin, end]");
    Tensor t;
    t.dtype = info["dtype"].get<std::string>();
    int64_t elt = dtypeSize(t.dtype);
    if (!elt)
      return bad("dtype " + t.dtype + " is not supported (F32, F16, BF16)");
    int64_t numel = 1;
    for (const auto &d : info["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        return bad("shape has a non-integer or negative dimension");
      t.shape.push_back(d.get<int64_t>());
      numel *= t.shape.back();
    }
    const auto &off = info["data_offsets"];
    if (!off[0].is_number_integer() || !off[1].is_number_integer())
      return bad("data_offsets are not integers");
    int64_t begin = off[0].get<int64_t>(), end = off[1].get<int64_t>();
    if (begin < 0 || end < begin || end > dataSize)
      return bad("data_offsets [" + std::to_string(begin) + ", " +
                 std::to_string(end) + "] lie outside the data section (" +
                 std::to_string(dataSize) + " bytes)");
    if (end - begin != numel * elt)
      return bad("data_offsets span " + std::to_string(end - begin) +
                 " bytes but dtype x shape needs " + std::to_string(numel * elt));
    ranges.push_back({begin, end});
    std::vector<char> raw(end - begin);
    in.seekg(8 + headerLen + begin);
    in.read(raw.data(), raw.size());
    if (!in)
      return bad("could not read its bytes");
    t.data.resize(numel);
    for (int64_t i = 0; i < numel; ++i) {
      if (t.dtype == "F32") {
        std::memcpy(&t.data[i], raw.data() + 4 * i, 4);
      } else {
        uint16_t h;
        std::memcpy(&h, raw.data() + 2 * i, 2);
        t.data[i] = t.dtype == "BF16" ? bf16ToFloat(h) : f16ToFloat(h);
      }
    }
    tensors[name] = std::move(t);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      return fail("two tensors' data_offsets overlap");
  return true;
}

bool readModelDir(const std::string &dir, std::map<std::string, Tensor> &tensors,
                  std::string &error) {
  fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (!pathExists(index)) {
    fs::path single = fs::path(dir) / "model.safetensors";
    if (!pathExists(single)) {
      error = dir + ": error: no model.safetensors or model.safetensors.index.json "
                    "(trlc loads safetensors checkpoints only)";
      return false;
    }
    return readFile(single.string(), tensors, error);
  }
  std::ifstream in(index);
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    error = index.string() + ": error: needs a \"weight_map\" object";
    return false;
  }
  std::vector<std::string> files;
  for (const auto &[name, file] : j["weight_map"].items()) {
    if (!file.is_string()) {
      error = index.string() + ": error: weight_map[\"" + name + "\"] must be a file name";
      return false;
    }
    // A shard lies in the model directory: a plain relative path, no "..".
    fs::path f(file.get<std::string>());
    bool inside = !f.empty() && f.is_relative();
    for (const fs::path &part : f)
      inside = inside && part != ".." && part != ".";
    if (!inside) {
      error = index.string() + ": error: weight_map[\"" + name + "\"] names '" + f.string() +
              "', which is not a file inside " + dir + "; shard files must be relative "
              "names within the model directory";
      return false;
    }
    if (std::find(files.begin(), files.end(), f.string()) == files.end())
      files.push_back(f.string());
  }
  for (const std::string &f : files)
    if (!readFile((fs::path(dir) / f).string(), tensors, error))
      return false;
  return true;
}

bool writeFile(const std::string &path, const std::vector<Entry> &tensors,
               std::string &error, const std::string &dtype) {
  int64_t elt = dtypeSize(dtype);
  if (!elt) {
    error = path + ": error: cannot write dtype " + dtype;
    return false;
  }
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  int64_t offset = 0;
  for (const Entry &e : tensors) {
    int64_t numel = 1;
    for (int64_t d : e.shape)
      numel *= d;
    header[e.name] = {{"dtype", dtype}, {"shape", e.shape},
                      {"data_offsets", {offset, offset + numel * elt}}};
    offset += numel * elt;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data section
  try {
    AtomicFile out(path);
    uint64_t n = text.size();
    out.write(&n, 8);
    out.write(text.data(), text.size());
    for (const Entry &e : tensors) {
      int64_t numel = 1;
      for (int64_t d : e.shape)
        numel *= d;
      if (dtype == "F32") {
        out.write(e.data, numel * 4);
        continue;
      }
      std::vector<uint16_t> half(numel);
      for (int64_t i = 0; i < numel; ++i)
        half[i] = dtype == "BF16" ? floatToBf16(e.data[i]) : floatToF16(e.data[i]);
      out.write(half.data(), numel * 2);
    }
    out.commit();
  } catch (const std::runtime_error &e) {
    error = e.what();
    return false;
  }
  return true;
}

} // namespace trlc::safetensors
