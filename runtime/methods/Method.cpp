//===- Method.cpp - the methods the runtime trains, and their helpers -----===//

#include "trlc/Method.h"
#include "trlc/BFloat16.h"
#include "trlc/Run.h"

namespace trlc {

std::unique_ptr<Method> makeMethod(const artifact::Artifact &artifact) {
  const std::string &name = artifact.manifest.method;
  if (name == "sft")
    return makeSft(artifact);
  if (name == "dpo")
    return makeDpo(artifact);
  if (name == "kto")
    return makeKto(artifact);
  if (name == "grpo" || name == "rloo")  // one online loop (runtime/methods/Grpo.cpp)
    return makeGrpo(artifact);
  if (name == "online_dpo")
    return makeOnlineDpo(artifact);
  if (name == "ppo")
    return makePpo(artifact);
  if (name == "reward")
    return makeReward(artifact);
  throw RunError(artifact.dir + ": error: trlc run trains SFT, DPO, KTO, GRPO, RLOO, online "
                 "DPO, PPO and reward-model artifacts, not " + name);
}

std::vector<Sequence> pairSequences(const Rows &rows, int64_t pairs, const std::string &program) {
  if (static_cast<int64_t>(rows.size()) > pairs)
    throw RunError("error: a batch of " + std::to_string(rows.size()) + " pairs for a " +
                   program + " that holds " + std::to_string(pairs) + "; recompile the recipe "
                   "with `trlc compile`");
  std::vector<Sequence> seqs(2 * pairs);
  for (size_t k = 0; k < rows.size(); ++k) {
    if (rows[k]->seqLengths.size() != 2)
      throw RunError("error: the token shard's rows are not preference pairs; compile the "
                     "artifact again");
    seqs[k] = {rows[k], 0};
    seqs[pairs + k] = {rows[k], 1};
  }
  return seqs;
}

std::vector<double> pairWeights(int64_t real, int64_t pairs, double scale) {
  std::vector<double> w(pairs, 0.0);
  for (int64_t k = 0; k < real; ++k)
    w[k] = 1.0 / (double(real) * scale);
  return w;
}

int64_t fillSequences(Executor &ex, const std::string &prog, const std::string &prefix,
                      const std::vector<Sequence> &seqs, int64_t pad, int64_t *completion) {
  TensorRef ids = ex.input(prog, prefix + "input_ids"),
            pos = ex.input(prog, prefix + "position_ids"),
            mask = ex.input(prog, prefix + "attention_mask"),
            labelsIn = ex.input(prog, prefix + "labels");
  bool mean = ex.hasInput(prog, prefix + "completion_mean_mask");
  bool hasCm = mean || ex.hasInput(prog, prefix + "completion_mask");
  int64_t b = ids.dim(0), s = ids.dim(1), tokens = 0, counted = 0;
  if (static_cast<int64_t>(seqs.size()) > b)
    throw std::logic_error("fillSequences: more sequences than batch rows");
  std::vector<int64_t> idv(b * s, pad), posv(b * s, 0), maskv(b * s, 0), labels(b * s, -100);
  std::vector<double> cm(hasCm ? b * s : 0, 0.0);
  for (size_t r = 0; r < seqs.size(); ++r) {
    const Sequence &q = seqs[r];
    if (!q.row)
      continue;
    size_t start = 0;
    for (size_t d = 0; d < q.doc; ++d)
      start += static_cast<size_t>(q.row->seqLengths[d]);
    int64_t len = q.row->seqLengths[q.doc];
    if (len > s)
      throw RunError("error: a sequence of " + std::to_string(len) +
                     " tokens does not fit the step's bound of " + std::to_string(s) +
                     "; compile the artifact again");
    const int64_t *src = q.row->ids.data() + start;
    const uint8_t *lm = q.row->mask.data() + start;
    tokens += len;
    int64_t mine = 0;
    for (int64_t t = 0; t + 1 < len; ++t)
      mine += lm[t + 1];
    double one = mean ? 1.0 / static_cast<double>(std::max<int64_t>(mine, 1)) : 1.0;
    for (int64_t t = 0; t < len; ++t) {
      int64_t i = static_cast<int64_t>(r) * s + t;
      idv[i] = src[t];
      posv[i] = t;
      maskv[i] = 1;
      if (t + 1 < len && lm[t + 1]) {
        labels[i] = src[t + 1];
        ++counted;
        if (hasCm)
          cm[i] = one;
      }
    }
  }
  ex.write(ids, idv.data());
  ex.write(pos, posv.data());
  ex.write(mask, maskv.data());
  ex.write(labelsIn, labels.data());
  if (hasCm)
    writeFloats(ex, ex.input(prog, prefix + (mean ? "completion_mean_mask" : "completion_mask")),
                cm);
  if (completion)
    *completion = counted;
  return tokens;
}

int64_t fillPackedSequences(Executor &ex, const std::string &prog,
                            const std::vector<Sequence> &seqs, int64_t pad,
                            int64_t *completion) {
  TensorRef ids = ex.input(prog, "input_ids"), pos = ex.input(prog, "position_ids"),
            mask = ex.input(prog, "attention_mask"), labelsIn = ex.input(prog, "labels"),
            cuIn = ex.input(prog, "cu_seqlens");
  bool mean = ex.hasInput(prog, "completion_mean_mask");
  TensorRef cmIn = ex.input(prog, mean ? "completion_mean_mask" : "completion_mask");
  int64_t total = ids.dim(1), rows = cmIn.dim(0), tokens = 0, counted = 0;
  if (ids.dim(0) != 1 || static_cast<int64_t>(seqs.size()) > rows)
    throw std::logic_error("fillPackedSequences: not a packed batch");
  std::vector<int64_t> idv(total, pad), posv(total, 0), maskv(total, 0), labels(total, -100);
  std::vector<double> cm(rows * total, 0.0);
  std::vector<int32_t> cu(cuIn.numel(), 0);
  int64_t at = 0, docs = 0;
  for (size_t r = 0; r < seqs.size(); ++r) {
    const Sequence &q = seqs[r];
    if (!q.row)
      continue;
    size_t start = 0;
    for (size_t d = 0; d < q.doc; ++d)
      start += static_cast<size_t>(q.row->seqLengths[d]);
    int64_t len = q.row->seqLengths[q.doc];
    if (at + len > total)
      throw RunError("error: a batch of " + std::to_string(at + len) +
                     "+ tokens does not fit the step's row of " + std::to_string(total) +
                     "; compile the artifact again");
    const int64_t *src = q.row->ids.data() + start;
    const uint8_t *lm = q.row->mask.data() + start;
    int64_t mine = 0;
    for (int64_t t = 0; t + 1 < len; ++t)
      mine += lm[t + 1];
    double one = mean ? 1.0 / static_cast<double>(std::max<int64_t>(mine, 1)) : 1.0;
    for (int64_t t = 0; t < len; ++t) {
      idv[at + t] = src[t];
      posv[at + t] = t;
      maskv[at + t] = 1;
      if (t + 1 < len && lm[t + 1]) {
        labels[at + t] = src[t + 1];
        cm[r * total + at + t] = one;
        ++counted;
      }
    }
    at += len;
    tokens += len;
    cu[++docs] = static_cast<int32_t>(at);
  }
  if (at < total)
    cu[++docs] = static_cast<int32_t>(total);  // the padding, a document of its own
  for (size_t k = docs + 1; k < cu.size(); ++k)
    cu[k] = static_cast<int32_t>(total);
  ex.write(ids, idv.data());
  ex.write(pos, posv.data());
  ex.write(mask, maskv.data());
  ex.write(labelsIn, labels.data());
  ex.write(cuIn, cu.data());
  writeFloats(ex, cmIn, cm);
  if (completion)
    *completion = counted;
  return tokens;
}

void writeFloats(Executor &ex, const TensorRef &t, const std::vector<double> &v) {
  if (static_cast<int64_t>(v.size()) != t.numel())
    throw std::logic_error("writeFloats: size mismatch");
  switch (t.dtype()) {
  case artifact::DType::F64:
    ex.write(t, v.data());
    return;
  case artifact::DType::F32: {
    std::vector<float> f(v.begin(), v.end());
    ex.write(t, f.data());
    return;
  }
  case artifact::DType::BF16: {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      h[i] = floatToBf16(static_cast<float>(v[i]));
    ex.write(t, h.data());
    return;
  }
  default:
    throw std::logic_error("writeFloats: not a floating-point tensor");
  }
}

std::vector<double> readFloats(Executor &ex, const TensorRef &t) {
  switch (t.dtype()) {
  case artifact::DType::F64:
    return ex.read<double>(t);
  case artifact::DType::F32: {
    std::vector<float> f = ex.read<float>(t);
    return std::vector<double>(f.begin(), f.end());
  }
  case artifact::DType::BF16: {
    std::vector<uint16_t> h = ex.read<uint16_t>(t);
    std::vector<double> out(h.size());
    for (size_t i = 0; i < h.size(); ++i)
      out[i] = bf16ToFloat(h[i]);
    return out;
  }
  default:
    throw std::logic_error("readFloats: not a floating-point tensor");
  }
}

void MetricSums::stepDone(Communicator &comm) {
  if (comm.size() > 1 && !step.empty())
    comm.allReduceSum(step.data(), step.size());
  for (size_t k = 0; k < step.size(); ++k)
    total[k] += step[k];
  std::fill(step.begin(), step.end(), 0.0);
}

void MetricSums::emit(nlohmann::json &row) {
  for (size_t k = 0; k < names.size(); ++k)
    if (total[2 * k + 1] > 0)
      row[names[k]] = total[2 * k] / total[2 * k + 1];
  std::fill(total.begin(), total.end(), 0.0);
}

} // namespace trlc
