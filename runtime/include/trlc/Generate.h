//===- Generate.h - completions from an artifact's generation programs -*- C++ -*-===//
//
// The generation engine: prompts of token ids in, completions out, through
// the artifact's `prefill` and `decode` programs (frontend/methods/
// Generate.cpp) and their KV cache. The host picks each next token from the
// decode step's logits: greedily, or sampled with transformers' logits
// processors in their order (repetition_penalty, temperature, top_k, top_p,
// min_p) from a seeded generator, so a seed gives the same completions on
// every run and backend whose logits agree.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_GENERATE_H
#define TRLC_RUNTIME_GENERATE_H

#include "trlc/Executor.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace trlc {

/// TRL's GRPOConfig sampling keys and defaults; `greedy` takes the argmax
/// (the others are then unused).
struct Sampling {
  bool greedy = false;
  double temperature = 1.0;
  int64_t topK = 0;           // 0: off
  double topP = 1.0;
  double minP = 0.0;          // 0: off
  double repetitionPenalty = 1.0;
};

/// The next token from one row of logits; `seen` are the row's tokens so
/// far (prompt and completion), for the repetition penalty.
int64_t pickToken(std::vector<float> logits, const std::vector<int64_t> &seen,
                  const Sampling &s, std::mt19937_64 &rng);

struct Completion {
  std::vector<int64_t> tokens;  // generated, the EOS token included
  /// log p(token) under the decode step's logits divided by the sampling
  /// temperature (1 when greedy), without the other processors: the
  /// policy's log-probability of what it sampled, as TRL computes it.
  std::vector<double> logprobs;
  bool finished = false;        // stopped at EOS
};

class Generator {
public:
  /// `eos` < 0: none. Throws RunError when the artifact has no generation
  /// programs.
  Generator(Executor &ex, int64_t eos, int64_t pad);

  /// Rows per call, slots per row (prompt + completion) and the longest
  /// prompt the programs take.
  int64_t batch() const { return batch_; }
  int64_t slots() const { return slots_; }
  int64_t longestPrompt() const { return prefill_ + 1; }

  /// Completes at most batch() prompts (each 1..slots() tokens) with at
  /// most `maxNew` tokens each, stopping a row at EOS, at `maxNew` or when
  /// its slots are full. Under ZeRO-3 every rank calls it together: it
  /// first runs @gather_model (ds3_gather_for_generation) when the plan
  /// has it, unless nothing but generation ran since the last gather (the
  /// gathered model is still in place), and when decoding gathers layer by
  /// layer instead, the ranks decode until the last rank's rows are done.
  std::vector<Completion> generate(const std::vector<std::vector<int64_t>> &prompts,
                                   int64_t maxNew, const Sampling &s, std::mt19937_64 &rng);

private:
  Executor &ex;
  int64_t eos, pad, batch_ = 0, slots_ = 0, prefill_ = 0, vocab = 0;
  bool gatherModel = false;  // ZeRO-3 with ds3_gather_for_generation
  bool gathered = false;     // @gather_model has run for this generator
  uint64_t gatheredAt = 0;   // ex.runs() after its last generation
  bool syncSteps = false;    // decode gathers: the ranks agree on its steps
};

} // namespace trlc

#endif // TRLC_RUNTIME_GENERATE_H
