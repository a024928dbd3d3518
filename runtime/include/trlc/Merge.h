//===- Merge.h - a PEFT LoRA adapter merged into its base model -*- C++ -*-===//
//
// `trlc merge ADAPTER_DIR -o OUT_DIR`: every targeted weight becomes
// W + scale x B A (scale lora_alpha / r, or / sqrt(r) with use_rslora;
// transposed for Conv1D weights, PEFT's fan_in_fan_out), written with the
// base's other tensors (a module trained whole, modules_to_save, replaced
// by the adapter's) as a Hugging Face model directory (fp32
// model.safetensors, the base's config.json, generation_config.json and
// tokenizer files). Reads PEFT adapters, trlc's or PEFT's own.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_MERGE_H
#define TRLC_RUNTIME_MERGE_H

#include <string>

namespace trlc {

struct MergeOptions {
  std::string adapter;  // a directory with adapter_config.json and adapter_model.safetensors
  std::string base;     // the base model directory ("": the adapter's base_model_name_or_path)
  std::string output;   // a new directory
};

/// Merges; throws RunError naming the file and the fix. Returns the number
/// of weights the adapter changed.
int mergeAdapter(const MergeOptions &options);

} // namespace trlc

#endif // TRLC_RUNTIME_MERGE_H
