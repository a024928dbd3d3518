//===- safetensors.cpp - fuzz the safetensors reader -----------------------===//
// Input: a whole .safetensors file (u64 header length, JSON header, data).
#include "trlc/Safetensors.h"
#include "Fuzz.h"

#include <cmath>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string path = trlc::fuzz::writeScratch(
      "model.safetensors", std::string_view(reinterpret_cast<const char *>(data), size));
  std::map<std::string, trlc::safetensors::Tensor> tensors;
  std::string error;
  if (trlc::safetensors::readFile(path, tensors, error)) {
    for (const auto &[name, t] : tensors) {
      int64_t n = 1;
      for (int64_t d : t.shape) {
        if (d < 0)
          __builtin_trap();  // a negative dimension accepted
        n *= d;
      }
      if (static_cast<size_t>(n) != t.data.size())
        __builtin_trap();  // the data does not hold the shape
    }
  } else if (error.empty()) {
    __builtin_trap();  // a failure without a message
  }
  return 0;
}
