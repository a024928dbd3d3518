//===- TrlAttrs.td - trl attributes and enums -------------*- tablegen -*-===//

#ifndef TRL_ATTRS_TD
#define TRL_ATTRS_TD

include "mlir/IR/EnumAttr.td"
include "dialect/TrlDialect.td"

class Trl_I32Enum<string name, string summary, list<I32EnumAttrCase> cases>
    : I32EnumAttr<name, summary, cases> {
  let cppNamespace = "::mlir::trl";
  let genSpecializedAttr = 0;
}

class Trl_EnumAttr<EnumAttrInfo info, string mnemonic>
    : EnumAttr<Trl_Dialect, info, mnemonic> {
  let assemblyFormat = "`<` $value `>`";
}

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Trl_AttentionLayout : Trl_I32Enum<"AttentionLayout",
    "how a batch of sequences is laid out for attention", [
  I32EnumAttrCase<"padded", 0>,  // [B, S, H, D] with an optional key mask
  I32EnumAttrCase<"varlen", 1>,  // [T, H, D] documents delimited by cu_seqlens
]>;
def Trl_AttentionLayoutAttr : Trl_EnumAttr<Trl_AttentionLayout, "layout">;

def Trl_MemorySpace : Trl_I32Enum<"MemorySpace", "where a tensor lives", [
  I32EnumAttrCase<"device", 0>,
  I32EnumAttrCase<"host", 1>,
]>;
def Trl_MemorySpaceAttr : Trl_EnumAttr<Trl_MemorySpace, "space">;

def Trl_PackingStrategy : Trl_I32Enum<"PackingStrategy",
    "how examples are packed into rows (TRL pack_dataset)", [
  I32EnumAttrCase<"none", 0>,
  I32EnumAttrCase<"bfd", 1>,
  I32EnumAttrCase<"bfd_split", 2>,
  I32EnumAttrCase<"wrapped", 3>,
]>;

def Trl_GeluApproximation : Trl_I32Enum<"GeluApproximation",
    "GELU formula", [
  I32EnumAttrCase<"none", 0>,  // exact, erf
  I32EnumAttrCase<"tanh", 1>,  // gelu_new / gelu_pytorch_tanh
]>;
def Trl_GeluApproximationAttr : Trl_EnumAttr<Trl_GeluApproximation, "gelu">;

def Trl_ReduceKind : Trl_I32Enum<"ReduceKind", "collective reduction", [
  I32EnumAttrCase<"sum", 0>,
  I32EnumAttrCase<"avg", 1>,
  I32EnumAttrCase<"max", 2>,
]>;
def Trl_ReduceKindAttr : Trl_EnumAttr<Trl_ReduceKind, "reduce">;

// The order is trlc/PreferenceMath.h's DpoKind and KtoKind.
def Trl_DpoLossType : Trl_I32Enum<"DpoLossType", "DPO loss variant", [
  I32EnumAttrCase<"sigmoid", 0>,
  I32EnumAttrCase<"hinge", 1>,
  I32EnumAttrCase<"ipo", 2>,
  I32EnumAttrCase<"robust", 3>,
  I32EnumAttrCase<"apo_zero", 4>,
  I32EnumAttrCase<"apo_down", 5>,
]>;
def Trl_DpoLossTypeAttr : Trl_EnumAttr<Trl_DpoLossType, "dpo_loss">;

def Trl_KtoLossType : Trl_I32Enum<"KtoLossType", "KTO loss variant", [
  I32EnumAttrCase<"kto", 0>,
  I32EnumAttrCase<"apo_zero_unpaired", 1>,
]>;
def Trl_KtoLossTypeAttr : Trl_EnumAttr<Trl_KtoLossType, "kto_loss">;

def Trl_GrpoLossType : Trl_I32Enum<"GrpoLossType", "GRPO loss normalisation", [
  I32EnumAttrCase<"grpo", 0>,     // mean over each sequence, then over sequences
  I32EnumAttrCase<"bnpo", 1>,     // sum over the local batch's active tokens
  I32EnumAttrCase<"dr_grpo", 2>,  // sum / (batch * max_completion_length)
  I32EnumAttrCase<"dapo", 3>,     // sum / active tokens of the global batch
]>;
def Trl_GrpoLossTypeAttr : Trl_EnumAttr<Trl_GrpoLossType, "grpo_loss">;

def Trl_LrSchedule : Trl_I32Enum<"LrSchedule", "learning-rate schedule", [
  I32EnumAttrCase<"constant", 0>,
  I32EnumAttrCase<"linear", 1>,
  I32EnumAttrCase<"cosine", 2>,
]>;
def Trl_LrScheduleAttr : Trl_EnumAttr<Trl_LrSchedule, "lr_schedule">;

//===----------------------------------------------------------------------===//
// Structured attributes
//===----------------------------------------------------------------------===//

class Trl_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Trl_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def Trl_SeqBoundAttr : Trl_Attr<"SeqBound", "seq_bound"> {
  let summary = "static upper bound of a sequence dimension and where it comes from";
  let description = [{
    Attached to a step function's batch arguments. `max` is the bound every
    buffer is sized for; `source` names the recipe key or data statistic it
    comes from.

    ```mlir
    #trl.seq_bound<max = 1024, source = "max_length">
    ```
  }];
  let parameters = (ins "int64_t":$max, StringRefParameter<>:$source);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Trl_PackingAttr : Trl_Attr<"Packing", "packing"> {
  let summary = "packing layout of the step's batch";
  let description = [{
    `seq_length` is the longest document a row holds: the row length for
    packed rows, max_length (or the data plan's tighter bound) for
    padding-free rows, whose documents are whole examples.

    ```mlir
    #trl.packing<strategy = bfd, seq_length = 1024, padding_free = true>
    ```
  }];
  let parameters = (ins
    EnumParameter<Trl_PackingStrategy>:$strategy,
    "int64_t":$seq_length,
    "bool":$padding_free);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Trl_RopeScalingAttr : Trl_Attr<"RopeScaling", "rope_scaling"> {
  let summary = "Llama-3 frequency scaling of rotary embeddings";
  let description = [{
    The `rope_scaling` block of a Llama-3.x config.json (`rope_type = "llama3"`).

    ```mlir
    #trl.rope_scaling<factor = 8.0 : f64, low_freq_factor = 1.0 : f64,
                      high_freq_factor = 4.0 : f64,
                      original_max_position_embeddings = 8192>
    ```
  }];
  let parameters = (ins "::mlir::FloatAttr":$factor,
                        "::mlir::FloatAttr":$low_freq_factor,
                        "::mlir::FloatAttr":$high_freq_factor,
                        "int64_t":$original_max_position_embeddings);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

#endif // TRL_ATTRS_TD
