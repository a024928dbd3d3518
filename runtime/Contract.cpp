//===- Contract.cpp - each kernel call checked against its kernel ---------===//
//
// A plan is input like any other: an edited or damaged plan.json must be
// refused when it is read, never crash a kernel. checkCall() holds, for
// every kernel of trlc/Kernels.def, what its CPU and CUDA implementations
// assume of their operands: ranks, the dimensions they derive sizes from,
// element types, attributes, and which outputs may alias which inputs (in
// place) — any other overlap between a call's outputs and its operands is
// refused. checkProgramIo() does the same for the tensors the runtime
// itself fills and reads (the batch, the losses).
//
//===----------------------------------------------------------------------===//

#include "trlc/Contract.h"
#include "trlc/Artifact.h"

#include <climits>
#include <cmath>
#include <set>
#include <string>

namespace trlc::artifact {

namespace {

using nlohmann::json;
using Shape = std::vector<int64_t>;

bool isFloat(DType d) { return d == DType::F32 || d == DType::BF16 || d == DType::F64; }
bool isIndex(DType d) { return d == DType::I64 || d == DType::I32; }

std::string shapeText(const Shape &s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i)
    out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

/// One call under check: its operands by position, and the first broken
/// rule as `error`.
class Call {
public:
  Call(const KernelCall &call, const Plan &plan) : call(call), plan(plan) {}

  const TensorDesc *in(size_t i) const {
    return i < call.in.size() && call.in[i] >= 0 ? &plan.tensors[call.in[i]] : nullptr;
  }
  const TensorDesc *out(size_t i) const {
    return i < call.out.size() ? &plan.tensors[call.out[i]] : nullptr;
  }
  size_t ins() const { return call.in.size(); }
  size_t outs() const { return call.out.size(); }

  bool fail(const std::string &why) {
    if (error.empty())
      error = why;
    return false;
  }
  bool ok() const { return error.empty(); }

  // --- operands ------------------------------------------------------------
  static std::string name(bool input, size_t i) {
    return (input ? "input " : "output ") + std::to_string(i);
  }
  const TensorDesc *t(bool input, size_t i) { return input ? in(i) : out(i); }

  bool present(bool input, size_t i) {
    return t(input, i) ? true : fail(name(input, i) + " is required");
  }
  bool rank(bool input, size_t i, size_t r) {
    const TensorDesc *d = t(input, i);
    if (!d)
      return fail(name(input, i) + " is required");
    if (d->shape.size() != r)
      return fail(name(input, i) + " must have rank " + std::to_string(r) + ", not " +
                  shapeText(d->shape));
    return true;
  }
  bool atLeastRank(bool input, size_t i, size_t r) {
    const TensorDesc *d = t(input, i);
    if (!d)
      return fail(name(input, i) + " is required");
    if (d->shape.size() < r)
      return fail(name(input, i) + " must have rank " + std::to_string(r) + " or more, not " +
                  shapeText(d->shape));
    return true;
  }
  bool floating(bool input, size_t i) {
    const TensorDesc *d = t(input, i);
    if (d && !isFloat(d->dtype))
      return fail(name(input, i) + " must be floating point, not " + dtypeName(d->dtype));
    return true;
  }
  bool indices(bool input, size_t i) {
    const TensorDesc *d = t(input, i);
    if (d && !isIndex(d->dtype))
      return fail(name(input, i) + " must be i64 or i32, not " + dtypeName(d->dtype));
    return true;
  }
  bool numel(bool input, size_t i, int64_t n) {
    const TensorDesc *d = t(input, i);
    if (!d)
      return fail(name(input, i) + " is required");
    if (d->numel() != n)
      return fail(name(input, i) + " " + shapeText(d->shape) + " must hold " +
                  std::to_string(n) + " elements");
    return true;
  }
  bool shape(bool input, size_t i, const Shape &s) {
    const TensorDesc *d = t(input, i);
    if (!d)
      return fail(name(input, i) + " is required");
    if (d->shape != s)
      return fail(name(input, i) + " must be " + shapeText(s) + ", not " + shapeText(d->shape));
    return true;
  }
  /// Every float operand computes in one precision family: f64 alone, or
  /// f32 with bf16 storage.
  bool oneFamily() {
    int f64 = 0, f32 = 0;
    for (bool input : {true, false})
      for (size_t i = 0; i < (input ? ins() : outs()); ++i)
        if (const TensorDesc *d = t(input, i)) {
          f64 += d->dtype == DType::F64;
          f32 += d->dtype == DType::F32 || d->dtype == DType::BF16;
        }
    return f64 && f32 ? fail("mixes f64 with f32/bf16 operands") : true;
  }
  /// Floating-point operands: every input and output not listed.
  bool floatsExcept(std::set<int> indexIns, std::set<int> other = {}) {
    for (size_t i = 0; i < ins(); ++i) {
      if (indexIns.count(static_cast<int>(i)))
        indices(true, i);
      else if (!other.count(static_cast<int>(i)))
        floating(true, i);
    }
    for (size_t i = 0; i < outs(); ++i)
      floating(false, i);
    return ok();
  }

  // --- attributes ------------------------------------------------------------
  bool number(const char *key) {
    auto it = call.attrs.find(key);
    if (it == call.attrs.end() || !it->is_number())
      return fail(std::string("attribute '") + key + "' must be a number");
    if (!std::isfinite(it->get<double>()))
      return fail(std::string("attribute '") + key + "' must be finite");
    return true;
  }
  bool integer(const char *key, int64_t lo, int64_t *value = nullptr) {
    auto it = call.attrs.find(key);
    if (it == call.attrs.end() || !it->is_number_integer() || it->get<int64_t>() < lo)
      return fail(std::string("attribute '") + key + "' must be an integer of at least " +
                  std::to_string(lo));
    if (value)
      *value = it->get<int64_t>();
    return true;
  }
  bool optionalBool(const char *key) {
    auto it = call.attrs.find(key);
    return it == call.attrs.end() || it->is_boolean()
               ? true
               : fail(std::string("attribute '") + key + "' must be true or false");
  }
  bool boolean(const char *key, bool *value = nullptr) {
    auto it = call.attrs.find(key);
    if (it == call.attrs.end() || !it->is_boolean())
      return fail(std::string("attribute '") + key + "' must be true or false");
    if (value)
      *value = it->get<bool>();
    return true;
  }
  bool oneOf(const char *key, std::initializer_list<const char *> values, bool optional = false,
             std::string *value = nullptr) {
    auto it = call.attrs.find(key);
    if (it == call.attrs.end() && optional)
      return true;
    if (it != call.attrs.end() && it->is_string())
      for (const char *v : values)
        if (*it == v) {
          if (value)
            *value = v;
          return true;
        }
    std::string list;
    for (const char *v : values)
      list += (list.empty() ? "" : ", ") + std::string(v);
    return fail(std::string("attribute '") + key + "' must be one of " + list);
  }

  const KernelCall &call;
  const Plan &plan;
  std::string error;
};

constexpr bool In = true, Out = false;

int64_t last(const TensorDesc &d) { return d.shape.empty() ? 1 : d.shape.back(); }
int64_t rows(const TensorDesc &d) { return d.numel() / std::max<int64_t>(last(d), 1); }

/// Elementwise: every listed operand has the first input's element count
/// (outputs: all).
void sameCount(Call &c, std::initializer_list<int> inputs) {
  const TensorDesc *x = c.in(0) ? c.in(0) : c.out(0);
  for (int i : inputs)
    c.numel(In, i, x->numel());
  for (size_t i = 0; i < c.outs(); ++i)
    c.numel(Out, i, x->numel());
}

void attentionContract(Call &c, bool grad) {
  // forward: q, k, v, mask, cu_seqlens -> o, lse
  // backward: do, q, k, v, o, lse, mask, cu_seqlens -> dq, dk, dv
  size_t q = grad ? 1 : 0, maskAt = grad ? 6 : 3;
  std::string layout;
  c.oneOf("layout", {"padded", "varlen"}, false, &layout);
  bool causal = false;
  if (c.boolean("causal", &causal) && !causal)
    c.fail("attribute 'causal' must be true: every model trlc trains is a causal language model");
  c.number("scale");
  if (!c.ok())
    return;
  bool varlen = layout == "varlen";
  size_t r = varlen ? 3 : 4;
  for (size_t i = q; i < q + 3; ++i)
    c.rank(In, i, r);
  if (!c.ok())
    return;
  const TensorDesc &Q = *c.in(q), &K = *c.in(q + 1), &V = *c.in(q + 2);
  int64_t d = Q.shape.back(), hq = Q.shape[r - 2], hkv = K.shape[r - 2];
  if (hkv < 1 || hq % hkv != 0)
    c.fail("query heads " + std::to_string(hq) + " are not a multiple of the key heads " +
           std::to_string(hkv));
  Shape kvShape = Q.shape;
  kvShape[r - 2] = hkv;
  c.shape(In, q + 1, kvShape);
  if (V.shape != K.shape)
    c.fail("input " + std::to_string(q + 2) + " (values) must have the keys' shape");
  if (d < 1)
    c.fail("head dimension must be positive");
  int64_t tokens = varlen ? Q.shape[0] : Q.shape[0] * Q.shape[1];
  Shape lse = varlen ? Shape{hq, tokens} : Shape{Q.shape[0], hq, Q.shape[1]};
  if (varlen) {
    if (c.in(maskAt))
      c.fail("a varlen attention takes no key mask");
    if (c.rank(In, maskAt + 1, 1) && c.in(maskAt + 1)->dtype != DType::I32)
      c.fail("cu_seqlens must be i32");
    else if (c.in(maskAt + 1) && c.in(maskAt + 1)->numel() < 2)
      c.fail("cu_seqlens must hold at least two offsets");
    int64_t maxLen = 0;
    c.integer("max_seqlen", 1, &maxLen);
    if (maxLen > tokens)
      c.fail("max_seqlen " + std::to_string(maxLen) + " exceeds the " +
             std::to_string(tokens) + " tokens of the call");
  } else {
    if (c.in(maskAt + 1))
      c.fail("a padded attention takes no cu_seqlens");
    if (c.in(maskAt))
      c.shape(In, maskAt, {Q.shape[0], Q.shape[1]});
  }
  if (!grad) {
    c.shape(Out, 0, Q.shape);
    c.shape(Out, 1, lse);
    c.floatsExcept({}, {3, 4});
  } else {
    c.shape(In, 0, Q.shape);
    c.shape(In, 4, Q.shape);
    c.shape(In, 5, lse);
    c.shape(Out, 0, Q.shape);
    c.shape(Out, 1, K.shape);
    c.shape(Out, 2, K.shape);
    c.floatsExcept({}, {6, 7});
  }
}

/// The fused lm_head: hidden [..., H], weight [V, H], labels one per row.
void fusedHeadContract(Call &c, bool grad, bool crossEntropy) {
  size_t h = grad ? 1 : 0;
  c.atLeastRank(In, h, 1);
  c.rank(In, h + 1, 2);
  c.integer("chunk_size", 1);
  c.integer("ignore_index", INT64_MIN);
  if (!c.ok())
    return;
  const TensorDesc &hidden = *c.in(h), &weight = *c.in(h + 1);
  if (weight.shape[1] != last(hidden))
    c.fail("the weight " + shapeText(weight.shape) + " does not take rows of " +
           std::to_string(last(hidden)));
  c.numel(In, h + 2, rows(hidden));
  int64_t out = crossEntropy ? 1 : rows(hidden);
  if (grad) {
    c.numel(In, 0, out);
    c.numel(Out, 0, hidden.numel());
    c.shape(Out, 1, weight.shape);
  } else {
    c.numel(Out, 0, out);
  }
  c.floatsExcept({static_cast<int>(h + 2)});
}

/// Unfused cross entropy / log-probabilities over logits [..., V].
void logitsContract(Call &c, bool grad, bool crossEntropy) {
  size_t l = grad ? 1 : 0;
  c.atLeastRank(In, l, 1);
  c.integer("ignore_index", INT64_MIN);
  if (!c.ok())
    return;
  const TensorDesc &logits = *c.in(l);
  c.numel(In, l + 1, rows(logits));
  int64_t out = crossEntropy ? 1 : rows(logits);
  if (grad) {
    c.numel(In, 0, out);
    c.numel(Out, 0, logits.numel());
  } else {
    c.numel(Out, 0, out);
  }
  c.floatsExcept({static_cast<int>(l + 1)});
}

void splitContract(Call &c, const TensorDesc &whole, size_t parts, bool partsAreOutputs) {
  int64_t axis = 0;
  if (!c.integer("axis", 0, &axis))
    return;
  if (axis >= static_cast<int64_t>(whole.shape.size()))
    c.fail("axis " + std::to_string(axis) + " is outside rank " +
           std::to_string(whole.shape.size()));
  if (!c.ok())
    return;
  int64_t total = 0;
  for (size_t i = 0; i < parts; ++i) {
    const TensorDesc *p = partsAreOutputs ? c.out(i) : c.in(i);
    if (!p)
      return void(c.fail("every part is required"));
    Shape expect = whole.shape;
    expect[axis] = p->shape.size() == whole.shape.size() ? p->shape[axis] : -1;
    if (p->shape != expect || p->dtype != whole.dtype)
      return void(c.fail("part " + std::to_string(i) + " " + shapeText(p->shape) +
                         " does not match " + shapeText(whole.shape) + " along axis " +
                         std::to_string(axis)));
    total += p->shape[axis];
  }
  if (total != whole.shape[axis])
    c.fail("the parts cover " + std::to_string(total) + " of " +
           std::to_string(whole.shape[axis]) + " along axis " + std::to_string(axis));
}

void shapes(Call &c) {
  switch (c.call.kernel) {
  case Kernel::Fill:
    c.number("value");
    c.floating(Out, 0);
    return;
  case Kernel::Copy:
    if (c.present(In, 0) && (c.in(0)->shape != c.out(0)->shape && c.in(0)->numel() != c.out(0)->numel()))
      c.fail("output must hold the input's " + std::to_string(c.in(0)->numel()) + " elements");
    if (c.in(0) && c.in(0)->dtype != c.out(0)->dtype)
      c.fail("a copy keeps its element type");
    return;
  case Kernel::Add:
  case Kernel::Swiglu:
    sameCount(c, {0, 1});
    c.floatsExcept({});
    return;
  case Kernel::SwigluGrad:
    sameCount(c, {0, 1, 2});
    c.floatsExcept({});
    return;
  case Kernel::Gelu:
  case Kernel::GeluGrad:
    c.oneOf("approximate", {"none", "tanh"});
    sameCount(c, c.call.kernel == Kernel::Gelu ? std::initializer_list<int>{0}
                                                : std::initializer_list<int>{0, 1});
    c.floatsExcept({});
    return;
  case Kernel::Dropout: {
    sameCount(c, {0});
    c.numel(In, 1, 1);
    c.floatsExcept({1});
    if (c.in(1) && c.in(1)->dtype != DType::I64)
      c.fail("input 1 (the seed) must be i64");
    c.integer("stream", 0);
    if (c.number("p")) {
      double p = c.call.attrs.at("p").get<double>();
      if (!(p >= 0 && p < 1))
        c.fail("attribute 'p' must be in [0, 1)");
    }
    return;
  }
  case Kernel::Div:
    sameCount(c, {0});
    c.numel(In, 1, 1);
    c.floatsExcept({});
    return;
  case Kernel::Sqrt:
    sameCount(c, {0});
    c.floatsExcept({});
    return;
  case Kernel::Split:
    if (c.present(In, 0))
      splitContract(c, *c.in(0), c.outs(), true);
    return;
  case Kernel::Concat:
    splitContract(c, *c.out(0), c.ins(), false);
    return;
  case Kernel::PackFlat: {
    auto it = c.call.attrs.find("offsets");
    if (it == c.call.attrs.end() || !it->is_array() || it->size() != c.ins())
      return void(c.fail("attribute 'offsets' must list one offset per input"));
    int64_t at = 0;
    for (size_t i = 0; i < c.ins(); ++i) {
      const json &o = (*it)[i];
      if (!c.present(In, i))
        return;
      if (!o.is_number_integer() || o.get<int64_t>() < at ||
          o.get<int64_t>() > c.out(0)->numel() - c.in(i)->numel())
        return void(c.fail("offset " + std::to_string(i) + " places its input outside " +
                           "the flat buffer or over the previous one"));
      if (c.in(i)->dtype != c.out(0)->dtype)
        return void(c.fail("every input must have the flat buffer's element type"));
      at = o.get<int64_t>() + c.in(i)->numel();
    }
    return;
  }
  case Kernel::MaskedSum:
  case Kernel::MaskedSumGrad: {
    if (!c.atLeastRank(In, 1, 1))
      return;
    const TensorDesc &mask = *c.in(1);
    int64_t s = last(mask);
    if (s < 1)
      return void(c.fail("the mask's rows must be non-empty"));
    int64_t r = mask.numel() / s;
    const TensorDesc *x = c.call.kernel == Kernel::MaskedSum ? c.in(0) : c.out(0);
    const TensorDesc *y = c.call.kernel == Kernel::MaskedSum ? c.out(0) : c.in(0);
    if (x && x->numel() != mask.numel() && x->numel() != s)
      c.fail("the values must have the mask's shape or be one row of " + std::to_string(s));
    if (y && y->numel() != r)
      c.fail("the sums must hold one value per mask row (" + std::to_string(r) + ")");
    c.floatsExcept({});
    return;
  }
  case Kernel::Embedding:
  case Kernel::EmbeddingGrad: {
    bool grad = c.call.kernel == Kernel::EmbeddingGrad;
    const TensorDesc *table = grad ? c.out(0) : c.in(0);
    if (!table || table->shape.size() != 2)
      return void(c.fail("the table must have rank 2"));
    if (!c.present(In, 1) || !c.indices(In, 1))
      return;
    int64_t n = c.in(1)->numel() * table->shape[1];
    if (grad)
      c.numel(In, 0, n);
    else
      c.numel(Out, 0, n);
    c.floatsExcept({1});
    return;
  }
  case Kernel::RmsNorm:
  case Kernel::LayerNorm: {
    c.number("eps");
    if (!c.atLeastRank(In, 0, 1))
      return;
    int64_t h = last(*c.in(0));
    c.shape(In, 1, {h});
    if (c.call.kernel == Kernel::LayerNorm)
      c.shape(In, 2, {h});
    c.numel(Out, 0, c.in(0)->numel());
    c.floatsExcept({});
    return;
  }
  case Kernel::RmsNormGrad:
  case Kernel::LayerNormGrad: {
    c.number("eps");
    if (!c.atLeastRank(In, 1, 1))
      return;
    int64_t h = last(*c.in(1)), n = c.in(1)->numel();
    c.numel(In, 0, n);
    c.shape(In, 2, {h});
    c.numel(Out, 0, n);
    for (size_t i = 1; i < c.outs(); ++i)
      c.shape(Out, i, {h});
    c.floatsExcept({});
    return;
  }
  case Kernel::Linear:
  case Kernel::LinearGrad: {
    bool grad = c.call.kernel == Kernel::LinearGrad;
    size_t x = grad ? 1 : 0;
    if (!c.atLeastRank(In, x, 1) || !c.rank(In, x + 1, 2))
      return;
    const TensorDesc &X = *c.in(x), &W = *c.in(x + 1);
    int64_t k = last(X), n = W.shape[0];
    if (W.shape[1] != k)
      return void(c.fail("the weight " + shapeText(W.shape) + " does not take rows of " +
                         std::to_string(k)));
    Shape y = X.shape;
    y.back() = n;
    if (!grad) {
      if (c.in(2))
        c.shape(In, 2, {n});
      c.shape(Out, 0, y);
    } else {
      c.shape(In, 0, y);
      if (c.in(3))
        c.shape(In, 3, W.shape);
      c.shape(Out, 0, X.shape);
      c.shape(Out, 1, W.shape);
      if (c.outs() > 2)
        c.shape(Out, 2, {n});
    }
    c.floatsExcept({});
    return;
  }
  case Kernel::Rope: {
    c.number("theta");
    c.optionalBool("inverse");
    if (auto it = c.call.attrs.find("scaling"); it != c.call.attrs.end()) {
      for (const char *k : {"factor", "low_freq_factor", "high_freq_factor",
                            "original_max_position_embeddings"})
        if (!it->is_object() || !it->contains(k) || !(*it)[k].is_number() ||
            !((*it)[k].get<double>() > 0))
          return void(c.fail(std::string("attribute 'scaling' needs a positive '") + k + "'"));
      if ((*it)["high_freq_factor"].get<double>() == (*it)["low_freq_factor"].get<double>())
        return void(c.fail("attribute 'scaling' needs different low and high factors"));
    }
    if (!c.atLeastRank(In, 0, 2) || !c.present(In, 1) || !c.indices(In, 1))
      return;
    const TensorDesc &X = *c.in(0);
    int64_t d = X.shape.back(), heads = X.shape[X.shape.size() - 2];
    if (d % 2 != 0)
      return void(c.fail("the head dimension must be even"));
    if (c.in(1)->numel() * heads * d != X.numel())
      c.fail("one position per token: " + std::to_string(X.numel() / (heads * d)) +
             " tokens, " + std::to_string(c.in(1)->numel()) + " positions");
    c.shape(Out, 0, X.shape);
    c.floatsExcept({1});
    return;
  }
  case Kernel::Attention:
    attentionContract(c, false);
    return;
  case Kernel::AttentionGrad:
    attentionContract(c, true);
    return;
  case Kernel::CacheWrite: {
    // cache [B, T, H, D], x [B, S, H, D], positions [B, S] -> the cache
    if (!c.rank(In, 0, 4) || !c.rank(In, 1, 4) || !c.present(In, 2) || !c.indices(In, 2))
      return;
    const Shape &cache = c.in(0)->shape, &x = c.in(1)->shape;
    if (x[0] != cache[0] || x[2] != cache[2] || x[3] != cache[3] || x[1] > cache[1])
      return void(c.fail("the new tokens " + shapeText(x) + " do not fit the cache " +
                         shapeText(cache)));
    c.shape(In, 2, {x[0], x[1]});
    c.shape(Out, 0, cache);
    c.floatsExcept({2});
    return;
  }
  case Kernel::CachedAttention: {
    // q [B, S, Hq, D], k_cache, v_cache [B, T, Hkv, D], mask [B, T],
    // positions [B, S] -> out [B, S, Hq, D]
    c.number("scale");
    for (size_t i = 0; i < 3; ++i)
      c.rank(In, i, 4);
    if (!c.ok() || !c.present(In, 3) || !c.present(In, 4))
      return;
    const Shape &q = c.in(0)->shape, &k = c.in(1)->shape;
    if (k[2] < 1 || q[2] % k[2] != 0)
      return void(c.fail("query heads " + std::to_string(q[2]) +
                         " are not a multiple of the key heads " + std::to_string(k[2])));
    if (k[0] != q[0] || k[3] != q[3] || k[3] < 1)
      return void(c.fail("the caches " + shapeText(k) + " do not match the queries " +
                         shapeText(q)));
    c.shape(In, 2, k);
    c.shape(In, 3, {k[0], k[1]});
    c.shape(In, 4, {q[0], q[1]});
    c.shape(Out, 0, q);
    c.floatsExcept({3, 4});
    return;
  }
  case Kernel::CrossEntropy:
  case Kernel::CrossEntropyGrad:
    logitsContract(c, c.call.kernel == Kernel::CrossEntropyGrad, true);
    return;
  case Kernel::LogProbs:
  case Kernel::LogProbsGrad:
    logitsContract(c, c.call.kernel == Kernel::LogProbsGrad, false);
    return;
  case Kernel::FusedLinearCrossEntropy:
  case Kernel::FusedLinearCrossEntropyGrad:
    fusedHeadContract(c, c.call.kernel == Kernel::FusedLinearCrossEntropyGrad, true);
    return;
  case Kernel::FusedLinearLogProbs:
  case Kernel::FusedLinearLogProbsGrad:
    fusedHeadContract(c, c.call.kernel == Kernel::FusedLinearLogProbsGrad, false);
    return;
  case Kernel::DpoLoss:
  case Kernel::DpoLossGrad: {
    bool grad = c.call.kernel == Kernel::DpoLossGrad;
    size_t f = grad ? 1 : 0;
    c.number("beta");
    c.number("label_smoothing");
    c.number("rpo_alpha");
    c.oneOf("loss_type", {"sigmoid", "hinge", "ipo", "robust", "apo_zero", "apo_down"});
    if (!c.rank(In, f, 1))
      return;
    int64_t n = c.in(f)->numel();
    for (size_t i = f; i < f + 5; ++i)
      c.shape(In, i, {n});
    for (size_t i = f + 5; i < f + 7; ++i)  // the nll weight, a scheduled beta
      if (c.in(i))
        c.numel(In, i, 1);
    if (grad) {
      c.numel(In, 0, 1);
      c.shape(Out, 0, {n});
      c.shape(Out, 1, {n});
    } else {
      c.numel(Out, 0, 1);
      c.shape(Out, 1, {n});
      c.shape(Out, 2, {n});
    }
    c.floatsExcept({});
    return;
  }
  case Kernel::KtoKl:
    if (!c.rank(In, 0, 1))
      return;
    c.shape(In, 1, c.in(0)->shape);
    c.shape(In, 2, c.in(0)->shape);
    c.numel(Out, 0, 1);
    c.floatsExcept({});
    return;
  case Kernel::KtoLoss:
  case Kernel::KtoLossGrad: {
    bool grad = c.call.kernel == Kernel::KtoLossGrad;
    size_t f = grad ? 1 : 0;
    c.number("beta");
    c.number("desirable_weight");
    c.number("undesirable_weight");
    c.oneOf("loss_type", {"kto", "apo_zero_unpaired"}, true);
    if (!c.rank(In, f, 1))
      return;
    int64_t n = c.in(f)->numel();
    for (size_t i = f; i < f + 4; ++i)
      c.shape(In, i, {n});
    if (c.in(f + 4))
      c.numel(In, f + 4, 1);
    if (grad) {
      c.numel(In, 0, 1);
      c.shape(Out, 0, {n});
    } else {
      c.numel(Out, 0, 1);
      c.shape(Out, 1, {n});
      c.numel(Out, 2, 1);
    }
    c.floatsExcept({}, {static_cast<int>(f + 2)});
    return;
  }
  case Kernel::PpoLoss:
  case Kernel::PpoLossGrad: {
    bool grad = c.call.kernel == Kernel::PpoLossGrad;
    size_t f = grad ? 1 : 0;
    c.number("cliprange");
    c.number("cliprange_value");
    c.number("vf_coef");
    if (!c.rank(In, f, 2))
      return;
    const Shape &s = c.in(f)->shape;
    for (size_t i = f + 1; i < f + 8; ++i)
      c.shape(In, i, s);
    c.numel(In, f + 8, 1);
    c.numel(In, f + 9, 1);
    if (grad) {
      c.numel(In, 0, 1);
      c.shape(Out, 0, s);
      c.shape(Out, 1, s);
    } else {
      c.numel(Out, 0, 1);
    }
    c.floatsExcept({});
    return;
  }
  case Kernel::GrpoLoss:
  case Kernel::GrpoLossGrad:
  case Kernel::RlooLoss:
  case Kernel::RlooLossGrad: {
    // RLOO's old log-probabilities are per sequence, and it has no KL term.
    bool grad = c.call.kernel == Kernel::GrpoLossGrad || c.call.kernel == Kernel::RlooLossGrad;
    bool rloo = c.call.kernel == Kernel::RlooLoss || c.call.kernel == Kernel::RlooLossGrad;
    size_t f = grad ? 1 : 0;
    if (!rloo) {
      c.number("beta");
      c.oneOf("loss_type", {"grpo", "bnpo", "dr_grpo", "dapo"});
    }
    c.number("epsilon_low");
    c.number("epsilon_high");
    if (!c.rank(In, f, 2))
      return;
    const Shape &s = c.in(f)->shape;
    c.shape(In, f + 1, rloo ? Shape{s[0]} : s);
    c.shape(In, f + 2, {s[0]});
    c.shape(In, f + 3, s);
    c.numel(In, f + 4, 1);
    if (!rloo && c.in(f + 5))
      c.shape(In, f + 5, s);
    if (grad) {
      c.numel(In, 0, 1);
      c.shape(Out, 0, s);
    } else {
      c.numel(Out, 0, 1);
    }
    c.floatsExcept({});
    return;
  }
  case Kernel::GradNorm:
    c.numel(Out, 0, 1);
    c.floatsExcept({});
    return;
  case Kernel::LrSchedule:
    c.number("base_lr");
    c.oneOf("schedule", {"constant", "linear", "cosine"});
    c.integer("total_steps", 1);
    c.integer("warmup_steps", 0);
    c.numel(In, 0, 1);
    c.indices(In, 0);
    c.numel(Out, 0, 1);
    c.floating(Out, 0);
    return;
  case Kernel::AdamW: {
    for (const char *k : {"beta1", "beta2", "eps", "weight_decay", "max_grad_norm"})
      c.number(k);
    if (!c.present(In, 0))
      return;
    int64_t n = c.in(0)->numel();
    for (size_t i = 1; i < 4; ++i)
      c.numel(In, i, n);
    c.numel(In, 4, 1);
    c.numel(In, 5, 1);
    c.indices(In, 5);
    if (c.in(6))
      c.numel(In, 6, 1);
    for (size_t i = 0; i < 3; ++i)
      c.numel(Out, i, n);
    c.floatsExcept({5});
    return;
  }
  case Kernel::AllGather:
  case Kernel::ReduceScatter:
  case Kernel::AllReduce: {
    int64_t world = 0;
    c.integer("world_size", 1, &world);
    if (c.call.kernel != Kernel::AllGather)
      c.oneOf("reduce", {"sum"});
    if (!c.ok() || !c.present(In, 0))
      return;
    int64_t x = c.in(0)->numel(), y = c.out(0)->numel();
    if (c.call.kernel == Kernel::AllGather && y != x * world)
      c.fail("an all_gather over " + std::to_string(world) + " ranks writes " +
             std::to_string(world) + " x its input");
    if (c.call.kernel == Kernel::ReduceScatter && x != y * world)
      c.fail("a reduce_scatter over " + std::to_string(world) + " ranks reads " +
             std::to_string(world) + " x its output");
    if (c.call.kernel == Kernel::AllReduce && x != y)
      c.fail("an all_reduce writes its input's size");
    for (bool input : {In, Out})
      if (c.t(input, 0)->dtype != DType::F32)
        c.fail("collectives move f32");
    return;
  }
  }
}

/// Which (input, output) pairs may be the very same bytes: the in-place
/// updates the compiler plans.
bool inPlaceAllowed(Kernel k, size_t in, size_t out) {
  switch (k) {
  case Kernel::Fill:
  case Kernel::Copy:
  case Kernel::Add:
  case Kernel::Div:
  case Kernel::Sqrt:
  case Kernel::Swiglu:
  case Kernel::SwigluGrad:
  case Kernel::Gelu:
  case Kernel::GeluGrad:
  case Kernel::Dropout:
  case Kernel::AllReduce:
    return true;  // elementwise: element i reads only element i
  case Kernel::AdamW:
    return (in == 0 && out == 0) || (in == 2 && out == 1) || (in == 3 && out == 2);
  case Kernel::LinearGrad:
    return in == 3 && out == 1;  // the weight-gradient accumulator
  case Kernel::CacheWrite:
    return in == 0 && out == 0;  // the cache, updated in place
  default:
    return false;
  }
}

struct Range {
  bool host;
  int64_t lo, hi;
  bool overlaps(const Range &o) const {
    return host == o.host && lo < o.hi && o.lo < hi && lo < hi && o.lo < o.hi;
  }
  bool operator==(const Range &o) const { return host == o.host && lo == o.lo && hi == o.hi; }
};

Range rangeOf(const TensorDesc &d) { return {d.host, d.offset, d.offset + d.bytes()}; }

void overlaps(Call &c) {
  for (size_t o = 0; o < c.outs(); ++o) {
    Range out = rangeOf(*c.out(o));
    for (size_t i = 0; i < c.ins(); ++i) {
      if (!c.in(i))
        continue;
      Range in = rangeOf(*c.in(i));
      if (!out.overlaps(in))
        continue;
      if (!(out == in) || !inPlaceAllowed(c.call.kernel, i, o))
        return void(c.fail("output " + std::to_string(o) + " overlaps input " +
                           std::to_string(i)));
    }
    for (size_t p = o + 1; p < c.outs(); ++p)
      if (out.overlaps(rangeOf(*c.out(p))))
        return void(c.fail("outputs " + std::to_string(o) + " and " + std::to_string(p) +
                           " overlap"));
  }
}

} // namespace

std::string checkCall(const KernelCall &call, const Plan &plan) {
  Call c(call, plan);
  shapes(c);
  if (c.ok())
    c.oneFamily();
  if (c.ok())
    overlaps(c);
  if (c.ok() && call.kernel != Kernel::Copy)
    for (size_t i = 0; i < c.outs(); ++i)
      if (c.out(i)->host)
        return "output " + std::to_string(i) + " lies in the host pool (only copies reach it)";
  return c.error;
}

std::string checkProgramIo(const std::string &name, const Program &program, const Plan &plan) {
  // What the runtime writes into a program's inputs and reads from its
  // outputs, by name.
  auto desc = [&](int t) -> const TensorDesc & { return plan.tensors[t]; };
  const Shape *rows = nullptr;
  for (const char *prefix : {"", "kl_"}) {
    std::string p = prefix;
    auto ids = program.inputs.find(p + "input_ids");
    if (ids == program.inputs.end())
      continue;
    const TensorDesc &d = desc(ids->second);
    if (d.shape.size() != 2 || d.dtype != DType::I64)
      return "'" + p + "input_ids' must be an i64 [rows, sequence] tensor";
    rows = &d.shape;
    for (const char *k : {"position_ids", "attention_mask", "labels"}) {
      auto it = program.inputs.find(p + k);
      if (it == program.inputs.end())
        continue;
      if (name == "decode" && std::string(k) == "attention_mask")
        continue;  // the cache's slots, checked below
      if (desc(it->second).shape != d.shape || desc(it->second).dtype != DType::I64)
        return "'" + p + k + "' must be i64 " + shapeText(d.shape) + " like '" + p + "input_ids'";
    }
    for (const char *k : {"completion_mask", "completion_mean_mask"}) {
      auto it = program.inputs.find(p + k);
      if (it == program.inputs.end())
        continue;
      const TensorDesc &m = desc(it->second);
      if (m.shape.size() != 2 || m.shape[1] != d.shape[1] || !isFloat(m.dtype))
        return "'" + p + k + "' must be a float [rows, " + std::to_string(d.shape[1]) +
               "] tensor";
    }
  }
  for (const auto &[io, t] : program.inputs) {
    const TensorDesc &d = desc(t);
    if (d.host)
      return "input '" + io + "' lies in the host pool";
    if (io == "cu_seqlens" && (d.shape.size() != 1 || d.dtype != DType::I32 || d.numel() < 2 ||
                               !rows || d.numel() > (*rows)[0] * (*rows)[1] + 1))
      return "'cu_seqlens' must be an i32 vector of at most one offset per token, plus one";
    if ((io == "num_items_in_batch" || io == "step") && d.numel() != 1)
      return "'" + io + "' must be a scalar";
    if (io == "step" && d.dtype != DType::I64)
      return "'step' must be i64";
    if ((io == "pair_weights" || io == "weights" || io == "kl_weights") &&
        (d.shape.size() != 1 || !isFloat(d.dtype)))
      return "'" + io + "' must be a float vector";
    if (io == "label" && (d.shape.size() != 1 || d.dtype != DType::Bool))
      return "'label' must be a bool vector";
  }
  for (const auto &[io, t] : program.outputs) {
    const TensorDesc &d = desc(t);
    if (d.host)
      return "output '" + io + "' lies in the host pool";
    if (!isFloat(d.dtype))
      return "output '" + io + "' must be floating point";
    if ((io == "loss" || io == "grad_norm" || io == "learning_rate" || io == "kl") &&
        d.numel() != 1)
      return "output '" + io + "' must be a scalar";
  }
  return "";
}

std::string checkGeneration(const Plan &plan) {
  auto desc = [&](int t) -> const TensorDesc & { return plan.tensors[t]; };
  if (!plan.programs.count("prefill") && !plan.programs.count("decode"))
    return "";
  // Generation (trlc/Generate.h): the runtime writes [B, T] prompts and
  // masks into prefill, [B, 1] tokens and a [B, T] slot mask into decode,
  // and reads decode's f32 logits [B, 1, V].
  auto prefill = plan.programs.find("prefill");
  auto decode = plan.programs.find("decode");
  if (prefill == plan.programs.end() || decode == plan.programs.end())
    return "generation needs both 'prefill' and 'decode'";
  for (const Program *g : {&prefill->second, &decode->second})
    for (const char *k : {"input_ids", "position_ids", "attention_mask"})
      if (!g->inputs.count(k))
        return std::string("generation's programs need the input '") + k + "'";
  const Shape &prompts = desc(prefill->second.inputs.at("input_ids")).shape;
  const Shape &step = desc(decode->second.inputs.at("input_ids")).shape;
  if (prompts.size() != 2 || step.size() != 2 || step[1] != 1 || step[0] != prompts[0])
    return "decode's 'input_ids' must be one token per row of prefill's " + shapeText(prompts);
  const TensorDesc &mask = desc(decode->second.inputs.at("attention_mask"));
  if (mask.shape.size() != 2 || mask.shape[0] != prompts[0] || mask.shape[1] < prompts[1] ||
      mask.dtype != DType::I64)
    return "decode's 'attention_mask' must be i64 [" + std::to_string(prompts[0]) +
           ", slots] with at least prefill's " + std::to_string(prompts[1]) + " slots";
  const Shape slots = mask.shape;
  auto logits = decode->second.outputs.find("logits");
  if (logits == decode->second.outputs.end() || desc(logits->second).dtype != DType::F32 ||
      desc(logits->second).shape.size() != 3 || desc(logits->second).shape[0] != slots[0] ||
      desc(logits->second).shape[1] != 1)
    return "decode must return f32 'logits' [" + std::to_string(slots[0]) + ", 1, vocab]";
  return "";
}

} // namespace trlc::artifact
