//===- Passes.h - trl pass declarations -------------------------*- C++ -*-===//

#ifndef TRLC_PASSES_PASSES_H
#define TRLC_PASSES_PASSES_H

#include "dialect/TrlDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::trl {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

} // namespace mlir::trl

#endif // TRLC_PASSES_PASSES_H
