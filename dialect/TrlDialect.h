//===- TrlDialect.h - the trl dialect ---------------------------*- C++ -*-===//

#ifndef TRLC_DIALECT_TRLDIALECT_H
#define TRLC_DIALECT_TRLDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialect/TrlDialect.h.inc"
#include "dialect/TrlEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialect/TrlAttrs.h.inc"

namespace mlir::trl::detail {
/// Default FLOP count of an op: one operation per result element.
int64_t elementwiseFlops(Operation *op);
} // namespace mlir::trl::detail

#include "dialect/TrlInterfaces.h.inc"

#define GET_OP_CLASSES
#include "dialect/TrlOps.h.inc"

namespace mlir::trl {
/// Bytes of a statically shaped tensor (0 for unranked/dynamic tensors).
int64_t tensorBytes(Type type);
/// Element count of a statically shaped tensor.
int64_t tensorElements(Type type);
/// True when the tensor type carries the `#trl.space<host>` encoding.
bool isHostTensor(Type type);

/// trl-zero3-shard names the parameter holding a rank's shard of ZeRO-3
/// group GROUP "zero3:GROUP" (its gradient and moments are states
/// "grad:zero3:GROUP", ...). These two are the only places that spell it.
inline std::string zeroShardParamName(StringRef group) {
  return ("zero3:" + group).str();
}
/// The group of a shard parameter's name; empty for a model tensor.
inline StringRef zeroShardGroup(StringRef paramName) {
  return paramName.starts_with("zero3:") ? paramName.drop_front(6) : StringRef();
}
} // namespace mlir::trl

#endif // TRLC_DIALECT_TRLDIALECT_H
