//===- ModelConfig.h - Hugging Face config.json, normalised -----*- C++ -*-===//

#ifndef TRLC_FRONTEND_MODELCONFIG_H
#define TRLC_FRONTEND_MODELCONFIG_H

#include "frontend/Diag.h"
#include "frontend/Recipe.h"

#include <filesystem>

namespace trlc {

/// Reads a model directory's config.json. Keys trlc does not use are
/// ignored, as transformers ignores them.
Expected<ModelConfig> configFromJsonFile(const std::filesystem::path &file);

/// Reads an inline [model.config] table. Keys are checked strictly: a key
/// trlc does not know is an error, with the closest known key.
Expected<ModelConfig> configFromToml(const toml::table &table,
                                     const Diag &diag);

/// The resolved configuration as a TOML [model.config] table (commented
/// out when the model comes from a directory).
std::string printModelConfig(const ModelConfig &config, bool fromPath);

/// The configuration as a transformers config.json (saved with checkpoints).
std::string configToHfJson(const ModelConfig &config);

} // namespace trlc

#endif // TRLC_FRONTEND_MODELCONFIG_H
