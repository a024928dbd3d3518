//===- Generate.cpp - completions through prefill and decode --------------===//

#include "trlc/Generate.h"
#include "trlc/Comm.h"
#include "trlc/Run.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace trlc {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// softmax of the finite entries (removed tokens are -inf), in double.
std::vector<double> softmax(const std::vector<float> &logits) {
  float mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = logits[i] == kNegInf ? 0.0 : std::exp(double(logits[i]) - mx);
    sum += p[i];
  }
  for (double &x : p)
    x /= sum;
  return p;
}

/// A uniform double in [0, 1) from 53 random bits (the same on every
/// standard library, unlike std::uniform_real_distribution).
double uniform(std::mt19937_64 &rng) { return double(rng() >> 11) * 0x1.0p-53; }

} // namespace

int64_t pickToken(std::vector<float> logits, const std::vector<int64_t> &seen,
                  const Sampling &s, std::mt19937_64 &rng) {
  int64_t v = static_cast<int64_t>(logits.size());
  if (s.greedy)
    return std::max_element(logits.begin(), logits.end()) - logits.begin();
  // transformers' RepetitionPenaltyLogitsProcessor: every token seen once.
  if (s.repetitionPenalty != 1.0) {
    std::vector<int64_t> once(seen);
    std::sort(once.begin(), once.end());
    once.erase(std::unique(once.begin(), once.end()), once.end());
    for (int64_t t : once)
      if (t >= 0 && t < v)
        logits[t] = logits[t] < 0 ? logits[t] * float(s.repetitionPenalty)
                                  : logits[t] / float(s.repetitionPenalty);
  }
  if (s.temperature != 1.0)
    for (float &x : logits)
      x = x / float(s.temperature);
  if (s.topK > 0 && s.topK < v) {
    std::vector<float> sorted(logits);
    std::nth_element(sorted.begin(), sorted.begin() + (s.topK - 1), sorted.end(),
                     std::greater<float>());
    float kth = sorted[s.topK - 1];
    for (float &x : logits)
      if (x < kth)
        x = kNegInf;
  }
  if (s.topP < 1.0) {
    // Ascending order; drop the tokens whose cumulative probability stays
    // within 1 - top_p, keeping at least the most likely one.
    std::vector<int64_t> order(v);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return logits[a] < logits[b]; });
    std::vector<double> p = softmax(logits);
    double cum = 0;
    for (int64_t i = 0; i + 1 < v; ++i) {
      cum += p[order[i]];
      if (cum <= 1.0 - s.topP)
        logits[order[i]] = kNegInf;
    }
  }
  if (s.minP > 0) {
    std::vector<double> p = softmax(logits);
    double threshold = s.minP * *std::max_element(p.begin(), p.end());
    for (int64_t i = 0; i < v; ++i)
      if (p[i] < threshold)
        logits[i] = kNegInf;
  }
  std::vector<double> p = softmax(logits);
  double u = uniform(rng), cum = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < v; ++i) {
    if (p[i] == 0)
      continue;
    last = i;
    cum += p[i];
    if (u < cum)
      return i;
  }
  return last;  // rounding left u above the total
}

Generator::Generator(Executor &ex, int64_t eos, int64_t pad) : ex(ex), eos(eos), pad(pad) {
  if (!ex.hasProgram("prefill") || !ex.hasProgram("decode"))
    throw RunError("error: the artifact has no generation programs; compile a recipe with "
                   "[data] eval (or an online method) to generate from it");
  batch_ = ex.input("prefill", "input_ids").dim(0);
  prefill_ = ex.input("prefill", "input_ids").dim(1);
  slots_ = ex.input("decode", "attention_mask").dim(1);
  vocab = ex.output("decode", "logits").dim(-1);
  gatherModel = ex.hasProgram("gather_model");
  syncSteps = ex.communicator() && ex.communicator()->size() > 1 && ex.hasCollectives("decode");
}

std::vector<Completion> Generator::generate(const std::vector<std::vector<int64_t>> &prompts,
                                            int64_t maxNew, const Sampling &s,
                                            std::mt19937_64 &rng) {
  if (static_cast<int64_t>(prompts.size()) > batch_)
    throw RunError("internal error: " + std::to_string(prompts.size()) +
                   " prompts for a generation batch of " + std::to_string(batch_));
  const int64_t b = batch_, t = slots_;
  std::vector<std::vector<int64_t>> seq(b);  // each row's tokens so far
  for (int64_t r = 0; r < b; ++r) {
    seq[r] = r < static_cast<int64_t>(prompts.size()) ? prompts[r] : std::vector<int64_t>{pad};
    if (seq[r].empty() || static_cast<int64_t>(seq[r].size()) > longestPrompt())
      throw RunError("error: a prompt of " + std::to_string(seq[r].size()) +
                     " tokens does not fit generation's prompts of at most " +
                     std::to_string(longestPrompt()) + " (it needs at least one token)");
  }
  // Prefill: every prompt but its last token, at positions 0.. (slot =
  // position); the rest of each row is padding the mask hides.
  const int64_t p = prefill_;
  std::vector<int64_t> ids(b * p, pad), pos(b * p), pmask(b * p, 0);
  for (int64_t r = 0; r < b; ++r)
    for (int64_t j = 0; j < p; ++j) {
      pos[r * p + j] = j;
      if (j + 1 < static_cast<int64_t>(seq[r].size())) {
        ids[r * p + j] = seq[r][j];
        pmask[r * p + j] = 1;
      }
    }
  // Another program (training, a forward pass) reuses the activation
  // region the gathered model sits in: gather again only after one ran.
  if (gatherModel && (!gathered || ex.runs() != gatheredAt)) {
    ex.run("gather_model");
    gathered = true;
  }
  ex.write(ex.input("prefill", "input_ids"), ids.data());
  ex.write(ex.input("prefill", "position_ids"), pos.data());
  ex.write(ex.input("prefill", "attention_mask"), pmask.data());
  ex.run("prefill");
  std::vector<int64_t> mask(b * t, 0);

  // Decode: each row feeds its latest token at its position; a finished
  // row repeats its last step (its logits are ignored).
  std::vector<Completion> out(prompts.size());
  std::vector<bool> done(b, false);
  for (int64_t r = static_cast<int64_t>(prompts.size()); r < b; ++r)
    done[r] = true;
  TensorRef inIds = ex.input("decode", "input_ids"), inPos = ex.input("decode", "position_ids"),
            inMask = ex.input("decode", "attention_mask"),
            logits = ex.output("decode", "logits");
  std::vector<int64_t> stepIds(b), stepPos(b);
  const double temperature = s.greedy ? 1.0 : s.temperature;
  for (int64_t r = 0; r < b; ++r)
    if (seq[r].size() >= static_cast<size_t>(t) || maxNew <= 0)
      done[r] = true;  // no slot left for a completion
  for (int64_t step = 0; step < maxNew; ++step) {
    bool any = false;
    for (int64_t r = 0; r < b; ++r) {
      int64_t p = static_cast<int64_t>(seq[r].size()) - 1;
      stepIds[r] = seq[r].back();
      stepPos[r] = std::min(p, t - 1);
      for (int64_t j = 0; j < t; ++j)
        mask[r * t + j] = j <= stepPos[r];
      any |= !done[r];
    }
    if (syncSteps) {
      double busy = any ? 1 : 0;
      ex.communicator()->allReduceSum(&busy, 1);
      any = busy > 0;
    }
    if (!any)
      break;
    ex.write(inIds, stepIds.data());
    ex.write(inPos, stepPos.data());
    ex.write(inMask, mask.data());
    ex.run("decode");
    std::vector<float> all = ex.read<float>(logits);
    for (int64_t r = 0; r < static_cast<int64_t>(prompts.size()); ++r) {
      if (done[r])
        continue;
      std::vector<float> row(all.begin() + r * vocab, all.begin() + (r + 1) * vocab);
      int64_t next = pickToken(row, seq[r], s, rng);
      // log softmax(logits / temperature)[next], as TRL's log-probabilities.
      double inv = 1.0 / temperature;
      double mx = *std::max_element(row.begin(), row.end()) * inv, sum = 0;
      for (float x : row)
        sum += std::exp(double(x) * inv - mx);
      out[r].logprobs.push_back(double(row[next]) * inv - mx - std::log(sum));
      seq[r].push_back(next);
      out[r].tokens.push_back(next);
      if (next == eos)
        out[r].finished = true;
      if (next == eos || static_cast<int64_t>(out[r].tokens.size()) >= maxNew ||
          static_cast<int64_t>(seq[r].size()) >= t)
        done[r] = true;
    }
  }
  gatheredAt = ex.runs();
  return out;
}

} // namespace trlc
