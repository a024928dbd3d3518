//===- TrlDialect.td - the trl dialect and its op base class -*- tablegen -*-===//
//
// The `trl` dialect describes one training step of a language model: the
// forward pass, the loss of a TRL method, the backward pass, the optimizer
// update, memory movement between device and host, and collectives.
// Tensors are value-semantic builtin ranked tensors; shapes are static once
// the truncation bounds are known.
//
//===----------------------------------------------------------------------===//

#ifndef TRL_DIALECT_TD
#define TRL_DIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "dialect/TrlInterfaces.td"

def Trl_Dialect : Dialect {
  let name = "trl";
  let summary = "Training steps of language models (forward, loss, backward, optimizer, memory, collectives)";
  let description = [{
    The `trl` dialect is what `trlc` compiles a training recipe into. A module
    holds one `func.func` per step function; parameters are read with
    `trl.param`, batch tensors are function arguments, and every computation
    is a `trl` op whose verifier checks shapes, dtypes and head counts.
  }];
  let cppNamespace = "::mlir::trl";
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
  }];
}

// Every trl op describes its cost to the memory planner. Ops that are not
// elementwise override `getFlops` in their extraClassDeclaration.
class Trl_Op<string mnemonic, list<Trait> traits = []>
    : Op<Trl_Dialect, mnemonic, traits # [Trl_MemoryCostOpInterface]>;

// Float tensors: f64 is accepted so that finite-difference checks can run in
// double precision; training uses f32. bf16 is a storage precision
// (trl-mixed-precision): ops compute in f32, widen bf16 operands and round
// bf16 results, so where an op asks operands for one element type, bf16 and
// f32 mix freely.
def Trl_Float : AnyTypeOf<[F16, BF16, F32, F64]>;
def Trl_FloatTensor : RankedTensorOf<[F16, BF16, F32, F64]>;
def Trl_IndexTensor : RankedTensorOf<[I32, I64]>;
def Trl_Scalar : 0DTensorOf<[F32, F64]>;
def Trl_Vector : 1DTensorOf<[F32, F64]>;

#endif // TRL_DIALECT_TD
