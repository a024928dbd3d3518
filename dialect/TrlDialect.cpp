//===- TrlDialect.cpp - trl dialect registration and attributes -----------===//

#include "dialect/TrlDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::trl;

#include "dialect/TrlDialect.cpp.inc"
#include "dialect/TrlEnums.cpp.inc"
#include "dialect/TrlInterfaces.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialect/TrlAttrs.cpp.inc"

void TrlDialect::initialize() {
  registerAttributes();
  addOperations<
#define GET_OP_LIST
#include "dialect/TrlOps.cpp.inc"
      >();
}

void TrlDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialect/TrlAttrs.cpp.inc"
      >();
}

LogicalResult SeqBoundAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                   int64_t max, StringRef source) {
  if (max <= 0)
    return emitError() << "sequence bound must be positive, got " << max;
  if (source.empty())
    return emitError() << "sequence bound needs a source (the recipe key or "
                          "data statistic it comes from)";
  return success();
}

LogicalResult PackingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                  PackingStrategy strategy, int64_t seqLength,
                                  bool paddingFree) {
  if (seqLength <= 0)
    return emitError() << "packing seq_length must be positive, got "
                       << seqLength;
  if (strategy == PackingStrategy::wrapped && paddingFree)
    return emitError() << "wrapped packing ignores document boundaries and "
                          "cannot be padding-free";
  return success();
}

LogicalResult
RopeScalingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                        FloatAttr factorAttr, FloatAttr lowAttr,
                        FloatAttr highAttr, int64_t originalMax) {
  if (!factorAttr || !lowAttr || !highAttr)
    return emitError() << "rope_scaling needs factor, low_freq_factor and "
                          "high_freq_factor";
  double factor = factorAttr.getValueAsDouble();
  double lowFreqFactor = lowAttr.getValueAsDouble();
  double highFreqFactor = highAttr.getValueAsDouble();
  if (factor <= 0)
    return emitError() << "rope_scaling factor must be positive";
  if (lowFreqFactor <= 0 || highFreqFactor <= lowFreqFactor)
    return emitError() << "rope_scaling needs 0 < low_freq_factor < "
                          "high_freq_factor";
  if (originalMax <= 0)
    return emitError()
           << "rope_scaling original_max_position_embeddings must be positive";
  return success();
}

int64_t mlir::trl::tensorElements(Type type) {
  auto ranked = dyn_cast<RankedTensorType>(type);
  if (!ranked || !ranked.hasStaticShape())
    return 0;
  return ranked.getNumElements();
}

int64_t mlir::trl::tensorBytes(Type type) {
  auto ranked = dyn_cast<RankedTensorType>(type);
  if (!ranked || !ranked.hasStaticShape())
    return 0;
  int64_t bits = ranked.getElementTypeBitWidth();
  return (ranked.getNumElements() * bits + 7) / 8;
}

bool mlir::trl::isHostTensor(Type type) {
  auto ranked = dyn_cast<RankedTensorType>(type);
  if (!ranked)
    return false;
  auto space = dyn_cast_or_null<MemorySpaceAttr>(ranked.getEncoding());
  return space && space.getValue() == MemorySpace::host;
}

int64_t mlir::trl::detail::elementwiseFlops(Operation *op) {
  int64_t flops = 0;
  for (Type t : op->getResultTypes())
    flops += tensorElements(t);
  return flops;
}
