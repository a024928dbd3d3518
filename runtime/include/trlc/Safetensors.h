//===- Safetensors.h - the safetensors format, read and written -*- C++ -*-===//
//
// File layout: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the data. Every header field is checked against the file size: the
// offsets must lie in the data section, match dtype x shape, and not
// overlap. Sharded checkpoints have model.safetensors.index.json with a
// weight_map {name: file}.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_SAFETENSORS_H
#define TRLC_RUNTIME_SAFETENSORS_H

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace trlc::safetensors {

struct Tensor {
  std::string dtype;  // F32, F16, BF16 (others are refused on load)
  std::vector<int64_t> shape;
  std::vector<float> data;  // converted to f32
};

/// Reads every tensor of one file. On failure returns false with `error`
/// naming the file, the tensor and the problem.
bool readFile(const std::string &path, std::map<std::string, Tensor> &tensors,
              std::string &error);

/// Reads a model directory: model.safetensors, or the shards listed by
/// model.safetensors.index.json.
bool readModelDir(const std::string &dir, std::map<std::string, Tensor> &tensors,
                  std::string &error);

struct Entry {
  std::string name;
  std::vector<int64_t> shape;
  const float *data;
};

/// Writes tensors as F32 (`dtype` "F32") or BF16 / F16 (rounded to nearest
/// even). Writes to a temporary file and renames it into place.
bool writeFile(const std::string &path, const std::vector<Entry> &tensors,
               std::string &error, const std::string &dtype = "F32");

uint16_t floatToBf16(float f);
float bf16ToFloat(uint16_t h);
uint16_t floatToF16(float f);
float f16ToFloat(uint16_t h);

} // namespace trlc::safetensors

#endif // TRLC_RUNTIME_SAFETENSORS_H
