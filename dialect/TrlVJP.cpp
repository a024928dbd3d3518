//===- TrlVJP.cpp - vector-Jacobian products of trl ops -------------------===//
//
// Each differentiable op builds the ops computing its operand cotangents
// from its result cotangents. A null result cotangent means the result does
// not reach the loss; a null operand cotangent means the operand is not
// differentiable (token ids, masks, the detached side of a loss).
//
//===----------------------------------------------------------------------===//

#include "dialect/TrlDialect.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::trl;

namespace {

Value zerosLike(OpBuilder &b, Location loc, Type type) {
  return b.create<FillOp>(loc, type, b.getF64FloatAttr(0.0));
}

/// The cotangent of result `i`, or zeros where it does not reach the loss.
Value gradOrZeros(OpBuilder &b, Operation *op, ValueRange grads, unsigned i) {
  if (grads[i])
    return grads[i];
  return zerosLike(b, op->getLoc(), op->getResult(i).getType());
}

/// Losses whose extra results are metrics: differentiating them is a
/// builder error, reported instead of silently dropped.
LogicalResult onlyFirstResult(Operation *op, ValueRange grads) {
  for (Value g : grads.drop_front())
    if (g)
      return op->emitOpError(
          "only the loss result is differentiable; the other results are "
          "metrics");
  return success();
}

} // namespace

LogicalResult EmbeddingOp::buildVJP(OpBuilder &b, ValueRange grads,
                                    SmallVectorImpl<Value> &out) {
  out.push_back(b.create<EmbeddingGradOp>(getLoc(), getTable().getType(),
                                          grads[0], getIds()));
  out.push_back(nullptr);
  return success();
}

LogicalResult RmsNormOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  auto op = b.create<RmsNormGradOp>(getLoc(), getX().getType(),
                                    getWeight().getType(), grads[0], getX(),
                                    getWeight(), getEpsAttr());
  out.append({op.getGradX(), op.getGradWeight()});
  return success();
}

LogicalResult LayerNormOp::buildVJP(OpBuilder &b, ValueRange grads,
                                    SmallVectorImpl<Value> &out) {
  auto op = b.create<LayerNormGradOp>(
      getLoc(), getX().getType(), getWeight().getType(), getBias().getType(),
      grads[0], getX(), getWeight(), getEpsAttr());
  out.append({op.getGradX(), op.getGradWeight(), op.getGradBias()});
  return success();
}

LogicalResult LinearOp::buildVJP(OpBuilder &b, ValueRange grads,
                                 SmallVectorImpl<Value> &out) {
  Type biasType = getBias() ? getBias().getType() : Type();
  auto op = b.create<LinearGradOp>(
      getLoc(), getX().getType(), getWeight().getType(), biasType, grads[0],
      getX(), getWeight(), /*accumulate=*/Value(),
      getBias() ? b.getUnitAttr() : UnitAttr());
  out.append({op.getGradX(), op.getGradWeight()});
  if (getBias())
    out.push_back(op.getGradBias());
  return success();
}

LogicalResult ReshapeOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  out.push_back(b.create<ReshapeOp>(getLoc(), getX().getType(), grads[0]));
  return success();
}

LogicalResult SplitOp::buildVJP(OpBuilder &b, ValueRange grads,
                                SmallVectorImpl<Value> &out) {
  SmallVector<Value> parts;
  for (unsigned i = 0; i < getNumResults(); ++i)
    parts.push_back(gradOrZeros(b, *this, grads, i));
  out.push_back(b.create<ConcatOp>(getLoc(), getX().getType(), parts,
                                   getAxisAttr()));
  return success();
}

LogicalResult ConcatOp::buildVJP(OpBuilder &b, ValueRange grads,
                                 SmallVectorImpl<Value> &out) {
  SmallVector<Type> types(getInputs().getTypes());
  for (Type t : types)
    if (t != types.front())
      return emitOpError("is differentiable only when its inputs have one "
                         "shape (its VJP is an even trl.split)");
  auto split = b.create<SplitOp>(getLoc(), types, grads[0], getAxisAttr());
  out.append(split.getResults().begin(), split.getResults().end());
  return success();
}

LogicalResult RopeOp::buildVJP(OpBuilder &b, ValueRange grads,
                               SmallVectorImpl<Value> &out) {
  // A rotation's transpose is the rotation by the opposite angle.
  out.push_back(b.create<RopeOp>(getLoc(), getType(), grads[0],
                                 getPositions(), getThetaAttr(),
                                 getScalingAttr(),
                                 getInverse() ? UnitAttr() : b.getUnitAttr()));
  out.push_back(nullptr);
  return success();
}

LogicalResult AttentionOp::buildVJP(OpBuilder &b, ValueRange grads,
                                    SmallVectorImpl<Value> &out) {
  if (grads[1])
    return emitOpError("the log-sum-exp result is not differentiable");
  auto op = b.create<AttentionGradOp>(
      getLoc(), getQ().getType(), getK().getType(), getV().getType(),
      grads[0], getQ(), getK(), getV(), getOut(), getLse(), getMask(),
      getCuSeqlens(), getLayoutAttr(), getCausalAttr(), getScaleAttr(),
      getMaxSeqlenAttr());
  out.append({op.getGradQ(), op.getGradK(), op.getGradV()});
  if (getMask())
    out.push_back(nullptr);
  if (getCuSeqlens())
    out.push_back(nullptr);
  return success();
}

LogicalResult SwigluOp::buildVJP(OpBuilder &b, ValueRange grads,
                                 SmallVectorImpl<Value> &out) {
  auto op = b.create<SwigluGradOp>(getLoc(), getGate().getType(),
                                   getUp().getType(), grads[0], getGate(),
                                   getUp());
  out.append({op.getGradGate(), op.getGradUp()});
  return success();
}

LogicalResult GeluOp::buildVJP(OpBuilder &b, ValueRange grads,
                               SmallVectorImpl<Value> &out) {
  out.push_back(b.create<GeluGradOp>(getLoc(), getType(), grads[0], getX(),
                                     getApproximateAttr()));
  return success();
}

LogicalResult DropoutOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  // The same mask (a function of seed, stream and position) over the
  // gradient: kept elements scaled by 1 / (1 - p), dropped ones zero.
  out.push_back(b.create<DropoutOp>(getLoc(), grads[0].getType(), grads[0], getSeed(),
                                    getPAttr(), getStreamAttr()));
  out.push_back(nullptr);
  return success();
}

LogicalResult AddOp::buildVJP(OpBuilder &b, ValueRange grads,
                              SmallVectorImpl<Value> &out) {
  out.append({grads[0], grads[0]});
  return success();
}

LogicalResult DivOp::buildVJP(OpBuilder &b, ValueRange grads,
                              SmallVectorImpl<Value> &out) {
  // The divisor is a count of tokens or examples, never a function of the
  // parameters.
  out.push_back(b.create<DivOp>(getLoc(), getX().getType(), grads[0],
                                getDivisor()));
  out.push_back(nullptr);
  return success();
}

LogicalResult CrossEntropyOp::buildVJP(OpBuilder &b, ValueRange grads,
                                       SmallVectorImpl<Value> &out) {
  out.push_back(b.create<CrossEntropyGradOp>(
      getLoc(), getLogits().getType(), grads[0], getLogits(), getLabels(),
      getIgnoreIndexAttr()));
  out.push_back(nullptr);
  return success();
}

LogicalResult FusedLinearCrossEntropyOp::buildVJP(
    OpBuilder &b, ValueRange grads, SmallVectorImpl<Value> &out) {
  auto op = b.create<FusedLinearCrossEntropyGradOp>(
      getLoc(), getHidden().getType(), getWeight().getType(), grads[0],
      getHidden(), getWeight(), getLabels(), getIgnoreIndexAttr(),
      getChunkSizeAttr());
  out.append({op.getGradHidden(), op.getGradWeight(), nullptr});
  return success();
}

LogicalResult LogProbsOp::buildVJP(OpBuilder &b, ValueRange grads,
                                   SmallVectorImpl<Value> &out) {
  out.push_back(b.create<LogProbsGradOp>(getLoc(), getLogits().getType(),
                                         grads[0], getLogits(), getLabels(),
                                         getIgnoreIndexAttr()));
  out.push_back(nullptr);
  return success();
}

LogicalResult FusedLinearLogProbsOp::buildVJP(OpBuilder &b, ValueRange grads,
                                              SmallVectorImpl<Value> &out) {
  auto op = b.create<FusedLinearLogProbsGradOp>(
      getLoc(), getHidden().getType(), getWeight().getType(), grads[0],
      getHidden(), getWeight(), getLabels(), getIgnoreIndexAttr(),
      getChunkSizeAttr());
  out.append({op.getGradHidden(), op.getGradWeight(), nullptr});
  return success();
}

LogicalResult MaskedSumOp::buildVJP(OpBuilder &b, ValueRange grads,
                                    SmallVectorImpl<Value> &out) {
  out.push_back(b.create<MaskedSumGradOp>(getLoc(), getX().getType(),
                                          grads[0], getMask()));
  out.push_back(nullptr);
  return success();
}

LogicalResult DpoLossOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  if (failed(onlyFirstResult(*this, grads)))
    return failure();
  auto op = b.create<DpoLossGradOp>(
      getLoc(), getPolicyChosen().getType(), getPolicyRejected().getType(),
      grads[0], getPolicyChosen(), getPolicyRejected(), getRefChosen(),
      getRefRejected(), getWeights(), getNllWeight(), getBetaValue(), getBetaAttr(),
      getLossTypeAttr(), getLabelSmoothingAttr(), getRpoAlphaAttr());
  // The reference log-probabilities come from the frozen model; the
  // weights and beta from the runtime.
  out.append({op.getGradChosen(), op.getGradRejected(), nullptr, nullptr, nullptr});
  if (getNllWeight())
    out.push_back(nullptr);
  if (getBetaValue())
    out.push_back(nullptr);
  return success();
}

LogicalResult KtoLossOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  if (failed(onlyFirstResult(*this, grads)))
    return failure();
  // The KL estimate is detached, as in TRL.
  out.push_back(b.create<KtoLossGradOp>(
      getLoc(), getPolicy().getType(), grads[0], getPolicy(), getRef(), getLabel(),
      getWeights(), getKl(), getBetaAttr(), getDesirableWeightAttr(),
      getUndesirableWeightAttr(), getLossTypeAttr()));
  out.append({nullptr, nullptr, nullptr});
  if (getKl())
    out.push_back(nullptr);
  return success();
}

LogicalResult GrpoLossOp::buildVJP(OpBuilder &b, ValueRange grads,
                                   SmallVectorImpl<Value> &out) {
  out.push_back(b.create<GrpoLossGradOp>(
      getLoc(), getLogp().getType(), grads[0], getLogp(), getOldLogp(),
      getAdvantages(), getMask(), getNormalizer(), getRefLogp(),
      getEpsilonLowAttr(), getEpsilonHighAttr(), getBetaAttr(),
      getLossTypeAttr(), getSequenceLevelAttr()));
  out.append({nullptr, nullptr, nullptr, nullptr});
  if (getRefLogp())
    out.push_back(nullptr);
  return success();
}

LogicalResult PpoLossOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  auto op = b.create<PpoLossGradOp>(
      getLoc(), getLogp().getType(), getValues().getType(), grads[0], getLogp(), getOldLogp(),
      getAdvantages(), getMask(), getValues(), getOldValues(), getReturns(), getValueMask(),
      getPgWeight(), getVfWeight(), getCliprangeAttr(), getCliprangeValueAttr(),
      getVfCoefAttr());
  // The rollout's log-probabilities, values, advantages and returns, the
  // masks and the weights come from the runtime.
  out.append({op.getGradLogp(), nullptr, nullptr, nullptr, op.getGradValues(), nullptr, nullptr,
              nullptr, nullptr, nullptr});
  return success();
}

LogicalResult RlooLossOp::buildVJP(OpBuilder &b, ValueRange grads,
                                   SmallVectorImpl<Value> &out) {
  out.push_back(b.create<RlooLossGradOp>(getLoc(), getLogp().getType(), grads[0], getLogp(),
                                         getOldLogp(), getAdvantages(), getMask(),
                                         getNormalizer(), getEpsilonLowAttr(),
                                         getEpsilonHighAttr()));
  out.append({nullptr, nullptr, nullptr, nullptr});
  return success();
}

LogicalResult OffloadOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  out.push_back(b.create<ReloadOp>(getLoc(), getX().getType(), grads[0]));
  return success();
}

LogicalResult ReloadOp::buildVJP(OpBuilder &b, ValueRange grads,
                                 SmallVectorImpl<Value> &out) {
  out.push_back(b.create<OffloadOp>(getLoc(), getX().getType(), grads[0]));
  return success();
}

LogicalResult AllGatherOp::buildVJP(OpBuilder &b, ValueRange grads,
                                    SmallVectorImpl<Value> &out) {
  out.push_back(b.create<ReduceScatterOp>(
      getLoc(), getX().getType(), grads[0], getWorldSizeAttr(),
      ReduceKindAttr::get(getContext(), ReduceKind::sum)));
  return success();
}

LogicalResult ReduceScatterOp::buildVJP(OpBuilder &b, ValueRange grads,
                                        SmallVectorImpl<Value> &out) {
  if (getReduce() != ReduceKind::sum)
    return emitOpError("is differentiable only with reduce = sum");
  out.push_back(b.create<AllGatherOp>(getLoc(), getX().getType(), grads[0],
                                      getWorldSizeAttr()));
  return success();
}

LogicalResult AllReduceOp::buildVJP(OpBuilder &b, ValueRange grads,
                                    SmallVectorImpl<Value> &out) {
  if (getReduce() != ReduceKind::sum)
    return emitOpError("is differentiable only with reduce = sum");
  out.push_back(b.create<AllReduceOp>(getLoc(), getType(), grads[0],
                                      getWorldSizeAttr(), getReduceAttr()));
  return success();
}
