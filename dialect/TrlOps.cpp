//===- TrlOps.cpp - trl op verifiers and cost descriptions ----------------===//
//
// Verifiers state the shape rule they enforce in their message, with the
// shapes they saw, so that a builder bug reads as a sentence.
//
//===----------------------------------------------------------------------===//

#include "dialect/TrlDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/STLExtras.h"

#include <cstdio>

using namespace mlir;
using namespace mlir::trl;

#define GET_OP_CLASSES
#include "dialect/TrlOps.cpp.inc"

namespace {

RankedTensorType rt(Value v) { return cast<RankedTensorType>(v.getType()); }
RankedTensorType rt(Type t) { return cast<RankedTensorType>(t); }

std::string shapeStr(ArrayRef<int64_t> shape) {
  std::string s = "[";
  for (auto [i, d] : llvm::enumerate(shape)) {
    if (i)
      s += ", ";
    s += ShapedType::isDynamic(d) ? "?" : std::to_string(d);
  }
  return s + "]";
}

/// Doubles in messages as a person writes them ("0.7", not "7.000000e-01").
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

SmallVector<int64_t> dropLast(ArrayRef<int64_t> shape) {
  return SmallVector<int64_t>(shape.drop_back());
}

SmallVector<int64_t> append(ArrayRef<int64_t> shape, int64_t d) {
  SmallVector<int64_t> out(shape);
  out.push_back(d);
  return out;
}

/// bf16 storage mixes with f32 compute (see Trl_FloatTensor); other
/// element types must match exactly.
bool compatibleElements(Type a, Type b) {
  auto storable = [](Type t) { return t.isF32() || t.isBF16(); };
  return a == b || (storable(a) && storable(b));
}

/// Checks that every named value has the element type of the first.
LogicalResult sameElementType(Operation *op,
                              ArrayRef<std::pair<StringRef, Type>> values) {
  Type first = getElementTypeOrSelf(values.front().second);
  for (auto [name, type] : values.drop_front())
    if (!compatibleElements(getElementTypeOrSelf(type), first))
      return op->emitOpError() << "expects " << name << " to have element type "
                               << first << " like " << values.front().first
                               << ", got " << getElementTypeOrSelf(type);
  return success();
}

LogicalResult expectShape(Operation *op, StringRef what, Type type,
                          ArrayRef<int64_t> expected) {
  if (rt(type).getShape() != expected)
    return op->emitOpError() << "expects " << what << " of shape "
                             << shapeStr(expected) << ", got "
                             << shapeStr(rt(type).getShape());
  return success();
}

/// `type` is `expected` up to bf16 storage of an f32 tensor.
LogicalResult expectType(Operation *op, StringRef what, Type type,
                         Type expected) {
  auto a = dyn_cast<RankedTensorType>(type),
       b = dyn_cast<RankedTensorType>(expected);
  bool same = a && b
                  ? a.getShape() == b.getShape() &&
                        a.getEncoding() == b.getEncoding() &&
                        compatibleElements(a.getElementType(),
                                           b.getElementType())
                  : type == expected;
  if (!same)
    return op->emitOpError() << "expects " << what << " of type " << expected
                             << ", got " << type;
  return success();
}

LogicalResult expectPositive(Operation *op, StringRef what, double value) {
  if (!(value > 0))
    return op->emitOpError() << "expects " << what << " > 0, got " << num(value);
  return success();
}

/// The [V, H] weight / [..., H] hidden / [...] labels rule shared by the
/// fused lm_head ops.
LogicalResult verifyLmHead(Operation *op, Value hidden, Value weight,
                           Value labels) {
  auto h = rt(hidden), w = rt(weight);
  if (h.getRank() < 2)
    return op->emitOpError() << "expects hidden states of rank >= 2, got "
                             << shapeStr(h.getShape());
  if (w.getRank() != 2 || w.getDimSize(1) != h.getShape().back())
    return op->emitOpError()
           << "expects the lm_head weight as [vocab, " << h.getShape().back()
           << "], got " << shapeStr(w.getShape());
  if (failed(sameElementType(op, {{"hidden", h}, {"weight", w}})))
    return failure();
  return expectShape(op, "labels", labels.getType(), dropLast(h.getShape()));
}

LogicalResult verifyLogitsLabels(Operation *op, Value logits, Value labels) {
  auto l = rt(logits);
  if (l.getRank() < 2)
    return op->emitOpError() << "expects logits of rank >= 2, got "
                             << shapeStr(l.getShape());
  return expectShape(op, "labels", labels.getType(), dropLast(l.getShape()));
}

/// Layout, head-count and shape rules shared by attention and its gradient.
LogicalResult verifyAttention(Operation *op, AttentionLayout layout, Value qv,
                              Value kv, Value vv, Value mask, Value cuSeqlens,
                              Type lseType, double scale,
                              std::optional<int64_t> maxSeqlen) {
  auto q = rt(qv), k = rt(kv), v = rt(vv);
  if (failed(expectPositive(op, "scale", scale)))
    return failure();
  if (failed(sameElementType(op, {{"q", q}, {"k", k}, {"v", v}})))
    return failure();
  if (k.getShape() != v.getShape())
    return op->emitOpError() << "expects k and v of the same shape, got "
                             << shapeStr(k.getShape()) << " and "
                             << shapeStr(v.getShape());
  bool padded = layout == AttentionLayout::padded;
  int64_t rank = padded ? 4 : 3;
  if (q.getRank() != rank || k.getRank() != rank)
    return op->emitOpError()
           << "with the " << stringifyAttentionLayout(layout)
           << " layout expects q, k, v as "
           << (padded ? "[batch, seq, heads, head_dim]"
                      : "[tokens, heads, head_dim]")
           << ", got q " << shapeStr(q.getShape()) << " and k "
           << shapeStr(k.getShape());
  int64_t hq = q.getDimSize(rank - 2), hkv = k.getDimSize(rank - 2);
  if (q.getShape().back() != k.getShape().back())
    return op->emitOpError() << "expects q and k with the same head_dim, got "
                             << q.getShape().back() << " and "
                             << k.getShape().back();
  if (hkv <= 0 || hq % hkv != 0)
    return op->emitOpError() << "expects the query heads (" << hq
                             << ") to be a multiple of the key/value heads ("
                             << hkv << ")";
  if (q.getShape().take_front(rank - 2) != k.getShape().take_front(rank - 2))
    return op->emitOpError()
           << "expects q and k to agree on "
           << (padded ? "batch and sequence" : "tokens") << ", got "
           << shapeStr(q.getShape()) << " and " << shapeStr(k.getShape());
  if (padded) {
    if (cuSeqlens)
      return op->emitOpError()
             << "the padded layout takes no cu_seqlens (use layout varlen)";
    if (mask && failed(expectShape(op, "mask", mask.getType(),
                                   q.getShape().take_front(2))))
      return failure();
    return expectShape(op, "lse", lseType,
                       {q.getDimSize(0), hq, q.getDimSize(1)});
  }
  if (!cuSeqlens)
    return op->emitOpError()
           << "the varlen layout needs cu_seqlens delimiting the documents";
  if (mask)
    return op->emitOpError() << "the varlen layout takes no mask: documents "
                                "are delimited by cu_seqlens";
  if (rt(cuSeqlens).getDimSize(0) < 2)
    return op->emitOpError() << "expects cu_seqlens with at least 2 entries";
  if (maxSeqlen && (*maxSeqlen <= 0 || *maxSeqlen > q.getDimSize(0)))
    return op->emitOpError() << "expects 0 < max_seqlen <= tokens ("
                             << q.getDimSize(0) << "), got " << *maxSeqlen;
  return expectShape(op, "lse", lseType, {hq, q.getDimSize(0)});
}

int64_t attentionFlops(RankedTensorType q, AttentionLayout layout,
                       std::optional<int64_t> maxSeqlen, bool causal) {
  // QK^T and PV: 2 matmuls of 2*S*S*D per head; causal halves the work.
  int64_t d = q.getShape().back(), h = q.getShape()[q.getRank() - 2];
  int64_t pairs;
  if (layout == AttentionLayout::padded) {
    int64_t b = q.getDimSize(0), s = q.getDimSize(1);
    pairs = b * s * s;
  } else {
    int64_t t = q.getDimSize(0), s = maxSeqlen.value_or(t);
    pairs = t * s;
  }
  int64_t flops = 4 * pairs * d * h;
  return causal ? flops / 2 : flops;
}

int64_t lmHeadFlops(Value hidden, Value weight) {
  auto w = rt(weight);
  return 2 * tensorElements(hidden.getType()) * w.getDimSize(0);
}

} // namespace

//===----------------------------------------------------------------------===//
// Parameters and forward ops
//===----------------------------------------------------------------------===//

LogicalResult ParamOp::verify() {
  if (getName().empty())
    return emitOpError("needs the parameter's checkpoint name");
  if (!getType().hasStaticShape())
    return emitOpError("expects a statically shaped parameter");
  StringRef set = getSet();
  bool rewardModel = set.starts_with("reward_model_") && set.size() > 13 &&
                     set.drop_front(13).find_first_not_of("0123456789") == StringRef::npos;
  if (set != "policy" && set != "reference" && !rewardModel)
    return emitOpError() << "expects set \"policy\", \"reference\" or \"reward_model_K\", got \""
                         << set << "\"";
  if (set != "policy" && getTrainable())
    return emitOpError("reference and reward-model parameters are frozen: set "
                       "trainable = false");
  return success();
}

LogicalResult EmbeddingOp::verify() {
  auto table = rt(getTable());
  if (table.getRank() != 2)
    return emitOpError() << "expects a [vocab, hidden] table, got "
                         << shapeStr(table.getShape());
  if (failed(sameElementType(*this, {{"table", table}, {"result", getType()}})))
    return failure();
  return expectShape(*this, "result", getType(),
                     append(rt(getIds()).getShape(), table.getDimSize(1)));
}

LogicalResult RmsNormOp::verify() {
  auto x = rt(getX());
  if (failed(expectShape(*this, "weight", getWeight().getType(),
                         {x.getShape().back()})) ||
      failed(sameElementType(*this, {{"x", x}, {"weight", getWeight().getType()}})) ||
      failed(expectPositive(*this, "eps", getEps().convertToDouble())))
    return failure();
  return expectType(*this, "result", getType(), x);
}

LogicalResult LayerNormOp::verify() {
  auto x = rt(getX());
  if (failed(expectShape(*this, "weight", getWeight().getType(),
                         {x.getShape().back()})) ||
      failed(expectShape(*this, "bias", getBias().getType(),
                         {x.getShape().back()})) ||
      failed(sameElementType(*this, {{"x", x},
                                     {"weight", getWeight().getType()},
                                     {"bias", getBias().getType()}})) ||
      failed(expectPositive(*this, "eps", getEps().convertToDouble())))
    return failure();
  return expectType(*this, "result", getType(), x);
}

static LogicalResult verifyLinearShapes(Operation *op, Value xv, Value wv,
                                        Type outType) {
  auto x = rt(xv), w = rt(wv);
  if (w.getRank() != 2)
    return op->emitOpError() << "expects a weight of shape [out, in], got "
                             << shapeStr(w.getShape());
  if (x.getRank() < 1 || x.getShape().back() != w.getDimSize(1))
    return op->emitOpError()
           << "expects the input's last dimension to equal the weight's in "
              "features ("
           << w.getDimSize(1) << "), got input " << shapeStr(x.getShape());
  if (failed(sameElementType(op, {{"input", x}, {"weight", w}})))
    return failure();
  return expectShape(op, "output", outType,
                     append(dropLast(x.getShape()), w.getDimSize(0)));
}

LogicalResult LinearOp::verify() {
  if (failed(verifyLinearShapes(*this, getX(), getWeight(), getType())))
    return failure();
  if (Value b = getBias())
    return expectShape(*this, "bias", b.getType(),
                       {rt(getWeight()).getDimSize(0)});
  return success();
}

int64_t LinearOp::getFlops() {
  return 2 * tensorElements(getType()) * rt(getWeight()).getDimSize(1);
}

LogicalResult ReshapeOp::verify() {
  auto in = rt(getX()), out = getType();
  if (!in.hasStaticShape() || !out.hasStaticShape())
    return emitOpError("expects static shapes");
  if (in.getNumElements() != out.getNumElements() ||
      in.getElementType() != out.getElementType())
    return emitOpError() << "cannot reshape " << in << " into " << out
                         << ": element count and type must be preserved";
  return success();
}

/// Shared by split and concat: `parts` glued along `axis` make `whole`.
static LogicalResult verifyConcatenation(Operation *op, Type whole,
                                         TypeRange parts, int64_t axis) {
  auto w = rt(whole);
  if (parts.empty())
    return op->emitOpError("expects at least one part");
  if (axis < 0 || axis >= w.getRank())
    return op->emitOpError() << "expects 0 <= axis < " << w.getRank()
                             << ", got " << axis;
  int64_t total = 0;
  for (Type t : parts) {
    auto p = rt(t);
    if (p.getRank() != w.getRank() || p.getElementType() != w.getElementType())
      return op->emitOpError() << "expects every part to have rank "
                               << w.getRank() << " and element type "
                               << w.getElementType() << ", got " << p;
    for (int64_t d = 0; d < w.getRank(); ++d)
      if (d != axis && p.getDimSize(d) != w.getDimSize(d))
        return op->emitOpError()
               << "parts must match " << shapeStr(w.getShape())
               << " outside axis " << axis << ", got " << shapeStr(p.getShape());
    total += p.getDimSize(axis);
  }
  if (total != w.getDimSize(axis))
    return op->emitOpError() << "parts add up to " << total << " along axis "
                             << axis << ", expected " << w.getDimSize(axis);
  return success();
}

LogicalResult SplitOp::verify() {
  if (failed(verifyConcatenation(*this, getX().getType(),
                                 getParts().getTypes(), getAxis())))
    return failure();
  for (Type t : getParts().getTypes())
    if (t != getParts().front().getType())
      return emitOpError("splits into equal parts");
  return success();
}

LogicalResult ConcatOp::verify() {
  return verifyConcatenation(*this, getType(), getInputs().getTypes(),
                             getAxis());
}

LogicalResult RopeOp::verify() {
  auto x = rt(getX()), pos = rt(getPositions());
  if (x.getRank() != 4 && x.getRank() != 3)
    return emitOpError() << "expects x as [batch, seq, heads, head_dim] or "
                            "[tokens, heads, head_dim], got "
                         << shapeStr(x.getShape());
  if (failed(expectShape(*this, "positions", pos,
                         x.getShape().take_front(x.getRank() - 2))))
    return failure();
  if (x.getShape().back() % 2 != 0)
    return emitOpError() << "expects an even head_dim, got "
                         << x.getShape().back();
  if (failed(expectPositive(*this, "theta", getTheta().convertToDouble())))
    return failure();
  return expectType(*this, "result", getType(), x);
}

LogicalResult AttentionOp::verify() {
  if (failed(verifyAttention(*this, getLayout(), getQ(), getK(), getV(),
                             getMask(), getCuSeqlens(), getLse().getType(),
                             getScale().convertToDouble(), getMaxSeqlen())))
    return failure();
  return expectType(*this, "output", getOut().getType(), getQ().getType());
}

int64_t AttentionOp::getFlops() {
  return attentionFlops(rt(getQ()), getLayout(), getMaxSeqlen(), getCausal());
}

LogicalResult CacheWriteOp::verify() {
  auto c = rt(getCache()), x = rt(getX()), pos = rt(getPositions());
  if (c.getRank() != 4 || x.getRank() != 4)
    return emitOpError() << "expects cache and x as [batch, slots|tokens, heads, head_dim], got "
                         << shapeStr(c.getShape()) << " and " << shapeStr(x.getShape());
  if (x.getDimSize(0) != c.getDimSize(0) || x.getShape().take_back(2) != c.getShape().take_back(2))
    return emitOpError() << "expects x " << shapeStr(x.getShape())
                         << " to agree with the cache " << shapeStr(c.getShape())
                         << " on batch, heads and head_dim";
  if (x.getDimSize(1) > c.getDimSize(1))
    return emitOpError() << "expects at most " << c.getDimSize(1) << " new tokens per row, got "
                         << x.getDimSize(1);
  if (failed(expectShape(*this, "positions", pos, x.getShape().take_front(2))))
    return failure();
  if (failed(sameElementType(*this, {{"cache", c}, {"x", x}})))
    return failure();
  return expectType(*this, "result", getType(), c);
}

LogicalResult CachedAttentionOp::verify() {
  auto q = rt(getQ()), k = rt(getKCache()), v = rt(getVCache());
  if (failed(expectPositive(*this, "scale", getScale().convertToDouble())))
    return failure();
  if (q.getRank() != 4 || k.getRank() != 4)
    return emitOpError() << "expects q [batch, tokens, heads, head_dim] and caches [batch, "
                            "slots, heads, head_dim], got "
                         << shapeStr(q.getShape()) << " and " << shapeStr(k.getShape());
  if (k.getShape() != v.getShape())
    return emitOpError() << "expects k_cache and v_cache of the same shape, got "
                         << shapeStr(k.getShape()) << " and " << shapeStr(v.getShape());
  if (failed(sameElementType(*this, {{"q", q}, {"k_cache", k}, {"v_cache", v}})))
    return failure();
  int64_t hq = q.getDimSize(2), hkv = k.getDimSize(2);
  if (q.getDimSize(0) != k.getDimSize(0) || q.getDimSize(3) != k.getDimSize(3))
    return emitOpError() << "expects q " << shapeStr(q.getShape()) << " and the caches "
                         << shapeStr(k.getShape()) << " to agree on batch and head_dim";
  if (hkv <= 0 || hq % hkv != 0)
    return emitOpError() << "expects the query heads (" << hq
                         << ") to be a multiple of the key/value heads (" << hkv << ")";
  if (failed(expectShape(*this, "mask", getMask().getType(), k.getShape().take_front(2))) ||
      failed(expectShape(*this, "positions", getPositions().getType(),
                         q.getShape().take_front(2))))
    return failure();
  return expectType(*this, "output", getOut().getType(), q);
}

int64_t CachedAttentionOp::getFlops() {
  auto q = rt(getQ()), k = rt(getKCache());
  return 4 * q.getDimSize(0) * q.getDimSize(1) * k.getDimSize(1) * q.getDimSize(2) *
         q.getDimSize(3);
}

LogicalResult SwigluOp::verify() {
  if (failed(expectType(*this, "up", getUp().getType(), getGate().getType())))
    return failure();
  return expectType(*this, "result", getType(), getGate().getType());
}

LogicalResult DivOp::verify() {
  if (failed(sameElementType(*this, {{"x", getX().getType()},
                                     {"divisor", getDivisor().getType()}})))
    return failure();
  return expectType(*this, "result", getType(), getX().getType());
}

LogicalResult DropoutOp::verify() {
  double p = getP().convertToDouble();
  if (!(p >= 0 && p < 1))
    return emitOpError("p must be in [0, 1), got ") << p;
  if (getStream() < 0)
    return emitOpError("stream must be non-negative");
  return expectType(*this, "result", getType(), getX().getType());
}

//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

LogicalResult CrossEntropyOp::verify() {
  return verifyLogitsLabels(*this, getLogits(), getLabels());
}

int64_t CrossEntropyOp::getFlops() {
  return 4 * tensorElements(getLogits().getType());
}

LogicalResult FusedLinearCrossEntropyOp::verify() {
  if (getChunkSize() <= 0)
    return emitOpError() << "expects chunk_size > 0, got " << getChunkSize();
  return verifyLmHead(*this, getHidden(), getWeight(), getLabels());
}

int64_t FusedLinearCrossEntropyOp::getFlops() {
  return lmHeadFlops(getHidden(), getWeight());
}

LogicalResult LogProbsOp::verify() {
  if (failed(verifyLogitsLabels(*this, getLogits(), getLabels())))
    return failure();
  return expectShape(*this, "result", getType(),
                     rt(getLabels()).getShape());
}

int64_t LogProbsOp::getFlops() {
  return 4 * tensorElements(getLogits().getType());
}

LogicalResult FusedLinearLogProbsOp::verify() {
  if (getChunkSize() <= 0)
    return emitOpError() << "expects chunk_size > 0, got " << getChunkSize();
  if (failed(verifyLmHead(*this, getHidden(), getWeight(), getLabels())))
    return failure();
  return expectShape(*this, "result", getType(),
                     rt(getLabels()).getShape());
}

int64_t FusedLinearLogProbsOp::getFlops() {
  return lmHeadFlops(getHidden(), getWeight());
}

/// masked_sum's x is [..., S] like its mask, or one row [1, .., 1, S]
/// every mask row reads (padding-free pairs: one token row, a mask row
/// per sequence).
static LogicalResult verifyMaskedSumShapes(Operation *op, RankedTensorType x,
                                           RankedTensorType mask) {
  if (mask.getRank() < 1)
    return op->emitOpError("expects a mask of rank >= 1");
  if (x.getElementType() != mask.getElementType())
    return op->emitOpError("expects x and mask of one element type");
  bool shared = x.getRank() == mask.getRank() &&
                x.getShape().back() == mask.getShape().back() &&
                llvm::all_of(dropLast(x.getShape()), [](int64_t d) { return d == 1; });
  if (x.getShape() != mask.getShape() && !shared)
    return op->emitOpError() << "expects x of the mask's shape " << shapeStr(mask.getShape())
                             << " or one shared row [1, .., "
                             << mask.getShape().back() << "], got " << shapeStr(x.getShape());
  return success();
}

LogicalResult MaskedSumOp::verify() {
  auto x = rt(getX());
  if (x.getRank() < 1)
    return emitOpError("expects x of rank >= 1");
  if (failed(verifyMaskedSumShapes(*this, x, rt(getMask()))))
    return failure();
  return expectShape(*this, "result", getType(), dropLast(rt(getMask()).getShape()));
}

static LogicalResult verifyPairedVectors(Operation *op, ValueRange values,
                                         ArrayRef<StringRef> names) {
  auto first = values.front().getType();
  for (auto [v, name] : llvm::zip(values.drop_front(), names.drop_front()))
    if (failed(expectType(op, name, v.getType(), first)))
      return failure();
  return success();
}

/// The attributes dpo_loss and its gradient share.
static LogicalResult verifyDpoAttrs(Operation *op, double beta, DpoLossType type,
                                    double ls, double rpo, bool hasNllWeight) {
  if (failed(expectPositive(op, "beta", beta)))
    return failure();
  if (ls < 0 || ls > 0.5 || (type == DpoLossType::robust && ls == 0.5))
    return op->emitOpError() << "expects 0 <= label_smoothing <= 0.5 (< 0.5 for robust), got "
                             << num(ls);
  if (rpo < 0)
    return op->emitOpError() << "expects rpo_alpha >= 0, got " << num(rpo);
  if ((rpo > 0) != hasNllWeight)
    return op->emitOpError("takes an nll weight exactly when rpo_alpha > 0");
  return success();
}

LogicalResult DpoLossOp::verify() {
  if (failed(verifyPairedVectors(
          *this,
          {getPolicyChosen(), getPolicyRejected(), getRefChosen(),
           getRefRejected(), getWeights(), getChosenRewards(), getRejectedRewards()},
          {"policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected", "weights",
           "chosen_rewards", "rejected_rewards"})))
    return failure();
  return verifyDpoAttrs(*this, getBeta().convertToDouble(), getLossType(),
                        getLabelSmoothing().convertToDouble(),
                        getRpoAlpha().convertToDouble(), static_cast<bool>(getNllWeight()));
}

LogicalResult KtoKlOp::verify() {
  return verifyPairedVectors(*this, {getKlPolicy(), getKlRef(), getWeights()},
                             {"kl_policy", "kl_ref", "weights"});
}

static LogicalResult verifyKtoCommon(Operation *op, Value policy, Value ref,
                                     Value label, double beta, double dw,
                                     double uw) {
  if (failed(expectType(op, "ref", ref.getType(), policy.getType())) ||
      failed(expectShape(op, "label", label.getType(),
                         rt(policy).getShape())) ||
      failed(expectPositive(op, "beta", beta)))
    return failure();
  if (dw < 0 || uw < 0)
    return op->emitOpError("expects non-negative desirable/undesirable weights");
  return success();
}

/// kto needs the KL estimate; apo_zero_unpaired has none.
static LogicalResult verifyKtoKl(Operation *op, KtoLossType type, bool hasKl) {
  if ((type == KtoLossType::kto) != hasKl)
    return op->emitOpError(type == KtoLossType::kto
                               ? "loss_type kto needs the KL estimate (kl %k)"
                               : "loss_type apo_zero_unpaired takes no KL estimate");
  return success();
}

LogicalResult KtoLossOp::verify() {
  if (failed(verifyKtoCommon(*this, getPolicy(), getRef(), getLabel(),
                             getBeta().convertToDouble(),
                             getDesirableWeight().convertToDouble(),
                             getUndesirableWeight().convertToDouble())) ||
      failed(verifyKtoKl(*this, getLossType(), static_cast<bool>(getKl()))) ||
      failed(expectType(*this, "weights", getWeights().getType(), getPolicy().getType())))
    return failure();
  return expectType(*this, "rewards", getRewards().getType(),
                    getPolicy().getType());
}

static LogicalResult verifyGrpoCommon(Operation *op, Value logp, Value old,
                                      Value adv, Value mask, Value ref,
                                      double epsLow, double epsHigh,
                                      double beta) {
  auto lp = rt(logp);
  if (lp.getRank() != 2)
    return op->emitOpError() << "expects per-token log-probs as [batch, "
                                "completion_length], got "
                             << shapeStr(lp.getShape());
  if (failed(expectType(op, "old_logp", old.getType(), lp)) ||
      failed(expectType(op, "mask", mask.getType(), lp)) ||
      failed(expectShape(op, "advantages", adv.getType(), {lp.getDimSize(0)})))
    return failure();
  if (epsLow < 0 || epsHigh < 0)
    return op->emitOpError("expects non-negative clipping epsilons");
  if ((beta != 0) != static_cast<bool>(ref))
    return op->emitOpError()
           << "needs ref_logp exactly when beta != 0 (beta = " << num(beta)
                              << ")";
  if (ref)
    return expectType(op, "ref_logp", ref.getType(), lp);
  return success();
}

LogicalResult GrpoLossOp::verify() {
  return verifyGrpoCommon(*this, getLogp(), getOldLogp(), getAdvantages(),
                          getMask(), getRefLogp(),
                          getEpsilonLow().convertToDouble(),
                          getEpsilonHigh().convertToDouble(),
                          getBeta().convertToDouble());
}

static LogicalResult verifyRlooCommon(Operation *op, Value logp, Value old, Value adv,
                                      Value mask, double epsLow, double epsHigh) {
  auto lp = rt(logp);
  if (lp.getRank() != 2)
    return op->emitOpError() << "expects per-token log-probs as [batch, "
                                "completion_length], got "
                             << shapeStr(lp.getShape());
  if (failed(expectType(op, "mask", mask.getType(), lp)) ||
      failed(expectShape(op, "old_logp", old.getType(), {lp.getDimSize(0)})) ||
      failed(expectShape(op, "advantages", adv.getType(), {lp.getDimSize(0)})))
    return failure();
  if (epsLow < 0 || epsHigh < 0)
    return op->emitOpError("expects non-negative clipping epsilons");
  return success();
}

static LogicalResult verifyPpoCommon(Operation *op, ValueRange same, double clip,
                                     double clipValue, double vfCoef) {
  static const char *names[] = {"old_logp", "advantages", "mask",     "values",
                                "old_values", "returns",  "value_mask"};
  auto lp = rt(same[0].getType());
  if (lp.getRank() != 2)
    return op->emitOpError() << "expects [batch, sequence] log-probabilities, got "
                             << shapeStr(lp.getShape());
  for (size_t i = 1; i < same.size(); ++i)
    if (failed(expectShape(op, names[i - 1], same[i].getType(), lp.getShape())))
      return failure();
  if (clip < 0 || clipValue < 0 || vfCoef < 0)
    return op->emitOpError("expects non-negative cliprange, cliprange_value and vf_coef");
  return success();
}

LogicalResult PpoLossOp::verify() {
  return verifyPpoCommon(*this,
                         {getLogp(), getOldLogp(), getAdvantages(), getMask(), getValues(),
                          getOldValues(), getReturns(), getValueMask()},
                         getCliprange().convertToDouble(), getCliprangeValue().convertToDouble(),
                         getVfCoef().convertToDouble());
}

LogicalResult RlooLossOp::verify() {
  return verifyRlooCommon(*this, getLogp(), getOldLogp(), getAdvantages(), getMask(),
                          getEpsilonLow().convertToDouble(),
                          getEpsilonHigh().convertToDouble());
}

//===----------------------------------------------------------------------===//
// Backward ops
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingGradOp::verify() {
  auto table = getType();
  if (table.getRank() != 2)
    return emitOpError() << "expects a [vocab, hidden] table gradient, got "
                         << shapeStr(table.getShape());
  return expectShape(*this, "incoming gradient", getGrad().getType(),
                     append(rt(getIds()).getShape(), table.getDimSize(1)));
}

LogicalResult RmsNormGradOp::verify() {
  auto x = rt(getX());
  if (failed(expectType(*this, "incoming gradient", getGrad().getType(), x)) ||
      failed(expectShape(*this, "weight", getWeight().getType(),
                         {x.getShape().back()})) ||
      failed(expectType(*this, "grad_x", getGradX().getType(), x)))
    return failure();
  return expectType(*this, "grad_weight", getGradWeight().getType(),
                    getWeight().getType());
}

LogicalResult LayerNormGradOp::verify() {
  auto x = rt(getX());
  if (failed(expectType(*this, "incoming gradient", getGrad().getType(), x)) ||
      failed(expectShape(*this, "weight", getWeight().getType(),
                         {x.getShape().back()})) ||
      failed(expectType(*this, "grad_x", getGradX().getType(), x)) ||
      failed(expectType(*this, "grad_weight", getGradWeight().getType(),
                        getWeight().getType())))
    return failure();
  return expectType(*this, "grad_bias", getGradBias().getType(),
                    getWeight().getType());
}

LogicalResult LinearGradOp::verify() {
  if (failed(verifyLinearShapes(*this, getX(), getWeight(),
                                getGrad().getType())) ||
      failed(expectType(*this, "grad_x", getGradX().getType(),
                        getX().getType())) ||
      failed(expectType(*this, "grad_weight", getGradWeight().getType(),
                        getWeight().getType())))
    return failure();
  if (Value acc = getAccumulate())
    if (failed(expectType(*this, "accumulator", acc.getType(),
                          getWeight().getType())))
      return failure();
  Value db = getGradBias();
  if (getHasBias() != static_cast<bool>(db))
    return emitOpError("produces a bias gradient exactly when has_bias is set");
  if (db)
    return expectShape(*this, "grad_bias", db.getType(),
                       {rt(getWeight()).getDimSize(0)});
  return success();
}

int64_t LinearGradOp::getFlops() {
  return 4 * tensorElements(getGrad().getType()) *
         rt(getWeight()).getDimSize(1);
}

LogicalResult AttentionGradOp::verify() {
  if (failed(verifyAttention(*this, getLayout(), getQ(), getK(), getV(),
                             getMask(), getCuSeqlens(), getLse().getType(),
                             getScale().convertToDouble(), getMaxSeqlen())) ||
      failed(expectType(*this, "incoming gradient", getGradOut().getType(),
                        getQ().getType())) ||
      failed(expectType(*this, "saved output", getOut().getType(),
                        getQ().getType())) ||
      failed(expectType(*this, "grad_q", getGradQ().getType(),
                        getQ().getType())) ||
      failed(expectType(*this, "grad_k", getGradK().getType(),
                        getK().getType())))
    return failure();
  return expectType(*this, "grad_v", getGradV().getType(), getV().getType());
}

int64_t AttentionGradOp::getFlops() {
  // Recompute QK^T, then dV, dP, dQ, dK: 2.5x the forward.
  return attentionFlops(rt(getQ()), getLayout(), getMaxSeqlen(), getCausal()) *
         5 / 2;
}

LogicalResult SwigluGradOp::verify() {
  Type t = getGate().getType();
  if (failed(expectType(*this, "up", getUp().getType(), t)) ||
      failed(expectType(*this, "incoming gradient", getGrad().getType(), t)) ||
      failed(expectType(*this, "grad_gate", getGradGate().getType(), t)))
    return failure();
  return expectType(*this, "grad_up", getGradUp().getType(), t);
}

LogicalResult GeluGradOp::verify() {
  if (failed(expectType(*this, "result", getType(), getGrad().getType())))
    return failure();
  return expectType(*this, "x", getX().getType(), getGrad().getType());
}

LogicalResult CrossEntropyGradOp::verify() {
  if (failed(verifyLogitsLabels(*this, getLogits(), getLabels())))
    return failure();
  return expectType(*this, "result", getType(), getLogits().getType());
}

LogicalResult FusedLinearCrossEntropyGradOp::verify() {
  if (getChunkSize() <= 0)
    return emitOpError() << "expects chunk_size > 0, got " << getChunkSize();
  if (failed(verifyLmHead(*this, getHidden(), getWeight(), getLabels())) ||
      failed(expectType(*this, "grad_hidden", getGradHidden().getType(),
                        getHidden().getType())))
    return failure();
  return expectType(*this, "grad_weight", getGradWeight().getType(),
                    getWeight().getType());
}

int64_t FusedLinearCrossEntropyGradOp::getFlops() {
  return 2 * lmHeadFlops(getHidden(), getWeight());
}

LogicalResult LogProbsGradOp::verify() {
  if (failed(verifyLogitsLabels(*this, getLogits(), getLabels())) ||
      failed(expectShape(*this, "incoming gradient", getGrad().getType(),
                         rt(getLabels()).getShape())))
    return failure();
  return expectType(*this, "result", getType(), getLogits().getType());
}

LogicalResult FusedLinearLogProbsGradOp::verify() {
  if (getChunkSize() <= 0)
    return emitOpError() << "expects chunk_size > 0, got " << getChunkSize();
  if (failed(verifyLmHead(*this, getHidden(), getWeight(), getLabels())) ||
      failed(expectShape(*this, "incoming gradient", getGrad().getType(),
                         rt(getLabels()).getShape())) ||
      failed(expectType(*this, "grad_hidden", getGradHidden().getType(),
                        getHidden().getType())))
    return failure();
  return expectType(*this, "grad_weight", getGradWeight().getType(),
                    getWeight().getType());
}

int64_t FusedLinearLogProbsGradOp::getFlops() {
  return 2 * lmHeadFlops(getHidden(), getWeight());
}

LogicalResult MaskedSumGradOp::verify() {
  auto mask = rt(getMask());
  if (failed(verifyMaskedSumShapes(*this, rt(getType()), mask)))
    return failure();
  return expectShape(*this, "incoming gradient", getGrad().getType(),
                     dropLast(mask.getShape()));
}

LogicalResult DpoLossGradOp::verify() {
  if (failed(verifyPairedVectors(
          *this,
          {getPolicyChosen(), getPolicyRejected(), getRefChosen(),
           getRefRejected(), getWeights(), getGradChosen(), getGradRejected()},
          {"policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected", "weights",
           "grad_chosen", "grad_rejected"})))
    return failure();
  return verifyDpoAttrs(*this, getBeta().convertToDouble(), getLossType(),
                        getLabelSmoothing().convertToDouble(),
                        getRpoAlpha().convertToDouble(), static_cast<bool>(getNllWeight()));
}

LogicalResult KtoLossGradOp::verify() {
  if (failed(verifyKtoCommon(*this, getPolicy(), getRef(), getLabel(),
                             getBeta().convertToDouble(),
                             getDesirableWeight().convertToDouble(),
                             getUndesirableWeight().convertToDouble())) ||
      failed(verifyKtoKl(*this, getLossType(), static_cast<bool>(getKl()))) ||
      failed(expectType(*this, "weights", getWeights().getType(), getPolicy().getType())))
    return failure();
  return expectType(*this, "result", getType(), getPolicy().getType());
}

LogicalResult PpoLossGradOp::verify() {
  if (failed(verifyPpoCommon(*this,
                             {getLogp(), getOldLogp(), getAdvantages(), getMask(), getValues(),
                              getOldValues(), getReturns(), getValueMask()},
                             getCliprange().convertToDouble(),
                             getCliprangeValue().convertToDouble(),
                             getVfCoef().convertToDouble())))
    return failure();
  if (failed(expectType(*this, "grad_logp", getGradLogp().getType(), getLogp().getType())))
    return failure();
  return expectType(*this, "grad_values", getGradValues().getType(), getValues().getType());
}

LogicalResult RlooLossGradOp::verify() {
  if (failed(verifyRlooCommon(*this, getLogp(), getOldLogp(), getAdvantages(), getMask(),
                              getEpsilonLow().convertToDouble(),
                              getEpsilonHigh().convertToDouble())))
    return failure();
  return expectType(*this, "result", getType(), getLogp().getType());
}

LogicalResult GrpoLossGradOp::verify() {
  if (failed(verifyGrpoCommon(*this, getLogp(), getOldLogp(), getAdvantages(),
                              getMask(), getRefLogp(),
                              getEpsilonLow().convertToDouble(),
                              getEpsilonHigh().convertToDouble(),
                              getBeta().convertToDouble())))
    return failure();
  return expectType(*this, "result", getType(), getLogp().getType());
}

//===----------------------------------------------------------------------===//
// Optimizer ops
//===----------------------------------------------------------------------===//

LogicalResult GradNormOp::verify() {
  if (getGrads().empty())
    return emitOpError("expects at least one gradient");
  return success();
}

LogicalResult LrScheduleOp::verify() {
  if (getBaseLr().convertToDouble() < 0)
    return emitOpError("expects base_lr >= 0");
  if (static_cast<int64_t>(getTotalSteps()) <= 0)
    return emitOpError() << "expects total_steps > 0, got "
                         << static_cast<int64_t>(getTotalSteps());
  // A warmup longer than the run is allowed, as in Hugging Face's
  // schedules: the rate then never leaves the warmup ramp.
  // (I64Attr's getter is unsigned: read it signed.)
  if (static_cast<int64_t>(getWarmupSteps()) < 0)
    return emitOpError() << "expects warmup_steps >= 0, got "
                         << static_cast<int64_t>(getWarmupSteps());
  return success();
}

LogicalResult AdamWOp::verify() {
  Type p = getParam().getType();
  if (failed(expectShape(*this, "grad", getGrad().getType(), rt(p).getShape())) ||
      failed(expectType(*this, "exp_avg", getExpAvg().getType(), p)) ||
      failed(expectType(*this, "exp_avg_sq", getExpAvgSq().getType(), p)) ||
      failed(expectType(*this, "new_param", getNewParam().getType(), p)) ||
      failed(expectType(*this, "new_exp_avg", getNewExpAvg().getType(), p)) ||
      failed(expectType(*this, "new_exp_avg_sq", getNewExpAvgSq().getType(), p)))
    return failure();
  double b1 = getBeta1().convertToDouble(), b2 = getBeta2().convertToDouble();
  if (b1 < 0 || b1 >= 1 || b2 < 0 || b2 >= 1)
    return emitOpError() << "expects betas in [0, 1), got (" << num(b1) << ", "
                         << num(b2) << ")";
  if (failed(expectPositive(*this, "eps", getEps().convertToDouble())))
    return failure();
  if (getWeightDecay().convertToDouble() < 0)
    return emitOpError("expects weight_decay >= 0");
  double maxNorm = getMaxGradNorm().convertToDouble();
  if (getGradNorm() && maxNorm <= 0)
    return emitOpError() << "clips by a gradient norm but max_grad_norm is " << num(maxNorm)
                         << " (expected > 0)";
  if (!getGradNorm() && maxNorm != 0)
    return emitOpError("has max_grad_norm but no gradient norm to clip by");
  return success();
}

//===----------------------------------------------------------------------===//
// Memory ops
//===----------------------------------------------------------------------===//

static LogicalResult verifyTransfer(Operation *op, Type from, Type to,
                                    bool toHost) {
  auto a = rt(from), b = rt(to);
  if (a.getShape() != b.getShape() || a.getElementType() != b.getElementType())
    return op->emitOpError() << "must preserve shape and element type, got "
                             << a << " -> " << b;
  if (isHostTensor(a) == toHost || isHostTensor(b) != toHost)
    return op->emitOpError()
           << "moves a tensor " << (toHost ? "from device to host" : "from host to device")
           << ": expects " << (toHost ? "the result" : "the operand")
           << " with #trl.space<host> and the other without, got " << a
           << " -> " << b;
  return success();
}

LogicalResult OffloadOp::verify() {
  return verifyTransfer(*this, getX().getType(), getType(), /*toHost=*/true);
}

LogicalResult ReloadOp::verify() {
  return verifyTransfer(*this, getX().getType(), getType(), /*toHost=*/false);
}

LogicalResult RecomputeOp::verify() {
  Block &body = getBody().front();
  if (body.getArgumentTypes() != getInputs().getTypes())
    return emitOpError("expects the region's arguments to match its inputs");
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  if (!yield)
    return emitOpError("expects the region to end with trl.yield");
  if (yield.getValues().getTypes() != getResultTypes())
    return emitOpError("expects trl.yield to return the op's result types");
  return success();
}

int64_t RecomputeOp::getFlops() {
  int64_t flops = 0;
  getBody().walk([&](MemoryCostOpInterface op) {
    if (op.getOperation() != getOperation())
      flops += op.getFlops();
  });
  return flops;
}

//===----------------------------------------------------------------------===//
// Collectives
//===----------------------------------------------------------------------===//

static LogicalResult verifyWorldSize(Operation *op, int64_t worldSize) {
  if (worldSize < 1)
    return op->emitOpError() << "expects world_size >= 1, got " << worldSize;
  return success();
}

LogicalResult AllGatherOp::verify() {
  auto x = rt(getX());
  if (failed(verifyWorldSize(*this, getWorldSize())))
    return failure();
  if (x.getRank() < 1)
    return emitOpError("expects a shard of rank >= 1");
  SmallVector<int64_t> full(x.getShape());
  full[0] *= getWorldSize();
  if (failed(sameElementType(*this, {{"shard", x}, {"result", getType()}})))
    return failure();
  return expectShape(*this, "result", getType(), full);
}

LogicalResult ReduceScatterOp::verify() {
  auto x = rt(getX());
  if (failed(verifyWorldSize(*this, getWorldSize())))
    return failure();
  if (x.getRank() < 1 || x.getDimSize(0) % getWorldSize() != 0)
    return emitOpError() << "expects dimension 0 of " << shapeStr(x.getShape())
                         << " to divide evenly over " << getWorldSize()
                         << " ranks (pad the flattened buffer)";
  SmallVector<int64_t> shard(x.getShape());
  shard[0] /= getWorldSize();
  if (failed(sameElementType(*this, {{"input", x}, {"result", getType()}})))
    return failure();
  return expectShape(*this, "result", getType(), shard);
}

LogicalResult FlatViewOp::verify() {
  auto x = rt(getX());
  auto r = rt(getType());
  if (x.getRank() != 1)
    return emitOpError("expects a flat (rank-1) source");
  if (failed(sameElementType(*this, {{"source", x}, {"result", r}})))
    return failure();
  if (getOffset() < 0 || getOffset() + r.getNumElements() > x.getDimSize(0))
    return emitOpError() << "view of " << r.getNumElements() << " elements at offset "
                         << getOffset() << " does not fit in " << x.getDimSize(0);
  return success();
}

LogicalResult PackFlatOp::verify() {
  auto r = rt(getType());
  if (r.getRank() != 1)
    return emitOpError("expects a flat (rank-1) result");
  ArrayRef<int64_t> offsets = getOffsets();
  if (getInputs().empty() || offsets.size() != getInputs().size())
    return emitOpError() << "expects one offset per input, got " << offsets.size() << " for "
                         << getInputs().size();
  int64_t end = 0;
  for (auto [v, offset] : llvm::zip(getInputs(), offsets)) {
    if (failed(sameElementType(*this, {{"input", rt(v)}, {"result", r}})))
      return failure();
    if (offset < end)
      return emitOpError() << "offset " << offset << " overlaps the previous input (ends at "
                           << end << ")";
    end = offset + rt(v).getNumElements();
  }
  if (end > r.getDimSize(0))
    return emitOpError() << "inputs end at " << end << ", past the result's "
                         << r.getDimSize(0) << " elements";
  return success();
}

LogicalResult AllReduceOp::verify() {
  return verifyWorldSize(*this, getWorldSize());
}

LogicalResult BroadcastOp::verify() {
  if (failed(verifyWorldSize(*this, getWorldSize())))
    return failure();
  if (getRoot() < 0 || getRoot() >= getWorldSize())
    return emitOpError() << "expects 0 <= root < world_size ("
                         << getWorldSize() << "), got " << getRoot();
  return success();
}
