//===- OpTest.h - one kernel call, run on any backend -----------*- C++ -*-===//
//
// The op-by-op tests' harness: an Op is one kernel call with its tensors
// (random inputs, never zeros; outputs poisoned with NaN bytes before each
// run), runnable on any Backend; relativeError compares two results.
// CudaOpsTest runs Ops on the CPU and CUDA backends, CudaEmuTest compares
// the CPU backend with the CUDA kernels' host emulation.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_TESTS_UNIT_OPTEST_H
#define TRLC_TESTS_UNIT_OPTEST_H

#include "trlc/BFloat16.h"
#include "trlc/Backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace trlc::test {

using artifact::DType;
using nlohmann::json;

constexpr double kF32 = 1e-5, kBf16 = 1e-2;

inline std::mt19937_64 rng(20261122);

/// One kernel call with its tensors: built once, run on any backend.
class Op {
public:
  explicit Op(const std::string &kernel, json attrs = json::object()) {
    auto id = kernelByName(kernel);
    if (!id)
      throw std::invalid_argument("no kernel '" + kernel + "' in trlc/Kernels.def");
    call.kernel = *id;
    call.attrs = std::move(attrs);
  }

  /// A float input, normal(offset, scale) (scale 0: the constant offset).
  int floats(std::vector<int64_t> shape, double scale = 1.0,
             double offset = 0.0) {
    std::normal_distribution<float> n(0, 1);
    std::vector<float> v(numel(shape));
    for (float &x : v)
      x = static_cast<float>(offset + scale * n(rng));
    return add(shape, DType::F32, v.data());
  }
  /// A float input with the given values.
  int given(std::vector<int64_t> shape, const std::vector<float> &values) {
    return add(shape, DType::F32, values.data());
  }
  /// An input's stored bytes (empty for an output).
  const std::vector<uint8_t> &bytes(int t) const { return init[t]; }
  /// An input's values as floats.
  std::vector<float> values(int t) const {
    const artifact::TensorDesc &d = plan.tensors[t];
    std::vector<float> v(d.numel());
    for (int64_t i = 0; i < d.numel(); ++i) {
      if (d.dtype == DType::BF16) {
        uint16_t h;
        std::memcpy(&h, init[t].data() + 2 * i, 2);
        v[i] = bf16ToFloat(h);
      } else {
        std::memcpy(&v[i], init[t].data() + 4 * i, 4);
      }
    }
    return v;
  }
  /// The same stored in bf16.
  int bf16(std::vector<int64_t> shape, double scale = 1.0) {
    std::normal_distribution<float> n(0, 1);
    std::vector<uint16_t> v(numel(shape));
    for (uint16_t &x : v)
      x = floatToBf16(static_cast<float>(scale * n(rng)));
    return add(shape, DType::BF16, v.data());
  }
  template <typename T>
  int ints(std::vector<int64_t> shape, std::vector<T> values, DType type) {
    return add(shape, type, values.data());
  }
  int i64(std::vector<int64_t> shape, std::vector<int64_t> values) {
    return ints(shape, values, DType::I64);
  }
  /// An output (poisoned before each run).
  int output(std::vector<int64_t> shape, bool host = false,
             DType type = DType::F32) {
    int t = add(shape, type, nullptr);
    plan.tensors[t].host = host;
    return t;
  }
  Op &in(std::vector<int> ts) {
    call.in = std::move(ts);
    return *this;
  }
  Op &out(std::vector<int> ts) {
    call.out = std::move(ts);
    return *this;
  }
  /// Replaces an input's values (rounded when it is stored in bf16).
  void set(int t, const std::vector<float> &values) {
    if (plan.tensors[t].dtype != DType::BF16) {
      std::memcpy(init[t].data(), values.data(), init[t].size());
      return;
    }
    for (size_t i = 0; i < values.size(); ++i) {
      uint16_t h = floatToBf16(values[i]);
      std::memcpy(init[t].data() + 2 * i, &h, 2);
    }
  }

  /// Runs the call on `b`; returns every output as floats.
  std::vector<std::vector<float>> runOn(Backend &b) const {
    std::vector<void *> ptrs(plan.tensors.size());
    for (size_t t = 0; t < plan.tensors.size(); ++t) {
      const artifact::TensorDesc &d = plan.tensors[t];
      int64_t bytes = std::max<int64_t>(d.bytes(), 4);
      ptrs[t] = d.host ? b.allocateHost(bytes) : b.allocate(bytes);
      // Device memory is reached through copy() only.
      if (!init[t].empty())
        b.copy(ptrs[t], init[t].data(), init[t].size());
      else
        b.copy(ptrs[t], std::vector<uint8_t>(bytes, 0xff).data(), bytes);
    }
    int64_t scratchBytes =
        std::max<int64_t>(trlc::scratchBytes(call, plan, b.scratchTarget()), 64);
    void *scratch = b.allocate(scratchBytes);
    b.copy(scratch, std::vector<uint8_t>(scratchBytes, 0xff).data(),
           scratchBytes);
    KernelArgs a;
    for (int t : call.in)
      a.in.push_back(t < 0 ? TensorRef{}
                           : TensorRef{ptrs[t], &plan.tensors[t]});
    for (int t : call.out)
      a.out.push_back({ptrs[t], &plan.tensors[t]});
    a.attrs = &call.attrs;
    a.scratch = scratch;
    try {
      b.run(call.kernel, a);
      b.synchronize();
    } catch (...) {  // a kernel that refuses its input: free, then report
      for (size_t t = 0; t < plan.tensors.size(); ++t)
        plan.tensors[t].host ? b.releaseHost(ptrs[t]) : b.release(ptrs[t]);
      b.release(scratch);
      throw;
    }
    std::vector<std::vector<float>> outs;
    std::vector<std::vector<uint16_t>> halves(call.out.size());
    for (size_t k = 0; k < call.out.size(); ++k) {
      const artifact::TensorDesc &d = plan.tensors[call.out[k]];
      std::vector<float> v(d.numel());
      if (d.dtype == DType::BF16) {
        halves[k].resize(d.numel());
        b.copy(halves[k].data(), ptrs[call.out[k]], d.bytes());
      } else {
        b.copy(v.data(), ptrs[call.out[k]], v.size() * sizeof(float));
      }
      outs.push_back(std::move(v));
    }
    b.synchronize();
    for (size_t k = 0; k < call.out.size(); ++k)
      for (size_t i = 0; i < halves[k].size(); ++i)
        outs[k][i] = bf16ToFloat(halves[k][i]);
    for (size_t t = 0; t < plan.tensors.size(); ++t)
      plan.tensors[t].host ? b.releaseHost(ptrs[t]) : b.release(ptrs[t]);
    b.release(scratch);
    return outs;
  }

  artifact::Plan plan;
  artifact::KernelCall call;

private:
  static int64_t numel(const std::vector<int64_t> &shape) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  int add(std::vector<int64_t> shape, DType type, const void *data) {
    artifact::TensorDesc d;
    d.shape = std::move(shape);
    d.dtype = type;
    plan.tensors.push_back(d);
    std::vector<uint8_t> bytes;
    if (data)
      bytes.assign(static_cast<const uint8_t *>(data),
                   static_cast<const uint8_t *>(data) + d.bytes());
    init.push_back(std::move(bytes));
    return static_cast<int>(plan.tensors.size()) - 1;
  }
  std::vector<std::vector<uint8_t>> init; // empty: an output
};

/// || got - want || / || want ||; infinities must match exactly.
inline double relativeError(const std::vector<float> &want,
                            const std::vector<float> &got, std::string &why) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i]) || !std::isfinite(got[i])) {
      if (want[i] != got[i]) {
        why = "element " + std::to_string(i) + ": want " +
              std::to_string(want[i]) + ", got " + std::to_string(got[i]);
        return INFINITY;
      }
      continue;
    }
    err += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    norm += double(want[i]) * want[i];
  }
  return norm > 0 ? std::sqrt(err / norm) : std::sqrt(err);
}

/// Expects output k of `op` within `tol` of want[k] (relative error in
/// norm), for every k.
inline void expectClose(const Op &op,
                        const std::vector<std::vector<float>> &want,
                        const std::vector<std::vector<float>> &got,
                        double tol) {
  for (size_t k = 0; k < want.size(); ++k) {
    std::string why;
    double e = relativeError(want[k], got[k], why);
    EXPECT_LE(e, tol) << kernelName(op.call.kernel) << " output " << k << " " << why
                      << " (attrs " << op.call.attrs.dump() << ")";
  }
}

/// The attention tests' two calls: q [..., hq, d], k and v `kv`, lse
/// `lse`; with `bf16`, q, k, v and the output are stored in bf16. `mask`
/// and `cuSeqlens` add their optional operand (or return -1).
struct AttentionOps {
  json attrs;
  std::vector<int64_t> q, kv, lse;
  std::function<int(Op &)> mask, cuSeqlens;
  bool bf16 = false;

  double tolerance() const { return bf16 ? kBf16 : kF32; }
  Op forward() const {
    Op op("attention", attrs);
    int qi = input(op, q), ki = input(op, kv), vi = input(op, kv);
    op.in({qi, ki, vi, mask(op), cuSeqlens(op)})
        .out({op.output(q, false, bf16 ? DType::BF16 : DType::F32),
              op.output(lse)});
    return op;
  }
  /// The backward, on the forward's reference output and lse (`ref`).
  Op backward(const std::vector<std::vector<float>> &ref) const {
    Op op("attention_grad", attrs);
    int dout = op.floats(q), bq = input(op, q), bk = input(op, kv),
        bv = input(op, kv);
    int o = input(op, q), l = op.floats(lse);
    op.set(o, ref[0]);
    op.set(l, ref[1]);
    op.in({dout, bq, bk, bv, o, l, mask(op), cuSeqlens(op)})
        .out({op.output(q), op.output(kv), op.output(kv)});
    return op;
  }

private:
  int input(Op &op, const std::vector<int64_t> &shape) const {
    return bf16 ? op.bf16(shape) : op.floats(shape);
  }
};

/// cu_seqlens of documents of 1 to 20 tokens (several in one kernel
/// block's tile of tokens, others across two tiles), then room for 70000
/// more left empty: more than a grid dimension's 65535 blocks, as a plan
/// for 64 rows of 1024 tokens has.
inline std::vector<int32_t> manyShortDocuments() {
  std::vector<int32_t> cu = {0};
  for (int32_t n = 1; n <= 20; ++n)
    cu.push_back(cu.back() + n);
  cu.resize(cu.size() + 70000, cu.back());
  return cu;
}

} // namespace trlc::test

#endif // TRLC_TESTS_UNIT_OPTEST_H
