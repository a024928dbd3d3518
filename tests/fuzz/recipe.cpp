//===- recipe.cpp - fuzz the recipe parser (TOML text) ---------------------===//
#include "frontend/Recipe.h"
#include "Fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  // Errors come back as values; nothing may escape.
  auto r = trlc::parseRecipe(text, "fuzz.toml");
  (void)r;
  return 0;
}
