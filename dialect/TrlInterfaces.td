//===- TrlInterfaces.td - op interfaces used by trl passes -*- tablegen -*-===//

#ifndef TRL_INTERFACES_TD
#define TRL_INTERFACES_TD

include "mlir/IR/OpBase.td"

def Trl_MemoryCostOpInterface : OpInterface<"MemoryCostOpInterface"> {
  let description = [{
    What the offload/remat cost model needs to know about an op: the
    floating-point operations it performs (to price recomputation). The
    scratch an op's kernel needs is the runtime's to say
    (runtime/include/trlc/Kernels.h: scratchBytes), per device.
  }];
  let cppNamespace = "::mlir::trl";
  let methods = [
    InterfaceMethod<
      "Floating-point operations of one execution of the op.",
      "int64_t", "getFlops", (ins), [{}], [{
        return ::mlir::trl::detail::elementwiseFlops($_op.getOperation());
      }]>,
  ];
}

def Trl_VJPOpInterface : OpInterface<"VJPOpInterface"> {
  let description = [{
    Reverse-mode differentiation of one op: given the cotangents of the op's
    results (null where a result does not reach the loss), build the ops that
    compute the cotangents of its operands and append them to `operandGrads`
    (null for an operand that is not differentiable, such as token ids).
    The `trl-autodiff` pass walks a step function backwards through this
    interface.
  }];
  let cppNamespace = "::mlir::trl";
  let methods = [
    InterfaceMethod<
      "Builds the operand cotangents from the result cotangents.",
      "::mlir::LogicalResult", "buildVJP",
      (ins "::mlir::OpBuilder &":$builder,
           "::mlir::ValueRange":$resultGrads,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads)>,
  ];
}

#endif // TRL_INTERFACES_TD
