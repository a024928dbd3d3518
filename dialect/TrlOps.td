//===- TrlOps.td - trl operations -------------------------*- tablegen -*-===//
//
// Conventions shared by every op:
// - activations are [B, S, ...] (padded layout) or [T, ...] (varlen layout);
//   the last dimension is the feature dimension;
// - linear weights are [out_features, in_features] (Hugging Face nn.Linear);
//   gpt2's Conv1D weights are transposed when they are loaded;
// - losses are f32 (or f64 in gradient checks) 0-d tensors.
//
//===----------------------------------------------------------------------===//

#ifndef TRL_OPS_TD
#define TRL_OPS_TD

include "dialect/TrlDialect.td"
include "dialect/TrlAttrs.td"
include "dialect/TrlInterfaces.td"
include "mlir/IR/OpBase.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"

// Ops that `trl-autodiff` differentiates through; their vector-Jacobian
// products live in TrlVJP.cpp.
defvar Trl_Differentiable = DeclareOpInterfaceMethods<Trl_VJPOpInterface>;

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

def Trl_ParamOp : Trl_Op<"param", [Pure]> {
  let summary = "reads a model parameter by its Hugging Face name";
  let description = [{
    `name` is the tensor name in the Hugging Face checkpoint. `trainable`
    parameters receive gradients; frozen ones (the DPO/KTO reference model,
    `set = "reference"`) do not. `hf_transposed` marks weights stored as
    [in, out] in the checkpoint (gpt2 Conv1D); the op's type is always the
    [out, in] layout the linear op expects.

    ```mlir
    %w = trl.param "model.embed_tokens.weight" : tensor<256x64xf32>
    %r = trl.param "model.embed_tokens.weight" {set = "reference", trainable = false} : tensor<256x64xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name,
                   DefaultValuedAttr<BoolAttr, "true">:$trainable,
                   DefaultValuedAttr<StrAttr, "\"policy\"">:$set,
                   UnitAttr:$hf_transposed);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Trl_FillOp : Trl_Op<"fill", [Pure]> {
  let summary = "a tensor with every element equal to `value`";
  let description = [{
    The seed cotangent of the loss, zero cotangents and cleared gradient
    accumulators.

    ```mlir
    %one = trl.fill {value = 1.0 : f64} : tensor<f32>
    ```
  }];
  let arguments = (ins F64Attr:$value);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Forward ops
//===----------------------------------------------------------------------===//

def Trl_EmbeddingOp : Trl_Op<"embedding", [Trl_Differentiable, Pure]> {
  let summary = "token (or learned position) embedding lookup";
  let description = [{
    Gathers rows of `table` [V, H] at `ids` [...] giving [..., H].

    ```mlir
    %h = trl.embedding %table, %ids : (tensor<256x64xf32>, tensor<2x16xi64>) -> tensor<2x16x64xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$table, Trl_IndexTensor:$ids);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$table `,` $ids attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_RmsNormOp : Trl_Op<"rms_norm", [Trl_Differentiable, Pure]> {
  let summary = "RMSNorm over the last dimension: x / rms(x) * weight";
  let description = [{
    ```mlir
    %y = trl.rms_norm %x, %w {eps = 1.0e-06 : f64} : (tensor<2x16x64xf32>, tensor<64xf32>) -> tensor<2x16x64xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$x, Trl_FloatTensor:$weight,
                   DefaultValuedAttr<F64Attr, "1e-6">:$eps);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$x `,` $weight attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_LayerNormOp : Trl_Op<"layer_norm", [Trl_Differentiable, Pure]> {
  let summary = "LayerNorm over the last dimension with weight and bias";
  let description = [{
    ```mlir
    %y = trl.layer_norm %x, %w, %b {eps = 1.0e-05 : f64} : (tensor<2x16x64xf32>, tensor<64xf32>, tensor<64xf32>) -> tensor<2x16x64xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$x, Trl_FloatTensor:$weight,
                   Trl_FloatTensor:$bias,
                   DefaultValuedAttr<F64Attr, "1e-5">:$eps);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$x `,` $weight `,` $bias attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_LinearOp : Trl_Op<"linear", [Trl_Differentiable, Pure]> {
  let summary = "y = x W^T (+ b), W in [out, in] layout";
  let description = [{
    ```mlir
    %y = trl.linear %x, %w : (tensor<2x16x64xf32>, tensor<128x64xf32>) -> tensor<2x16x128xf32>
    %z = trl.linear %x, %w bias %b : (tensor<2x16x64xf32>, tensor<128x64xf32>, tensor<128xf32>) -> tensor<2x16x128xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$x, Trl_FloatTensor:$weight,
                   Optional<Trl_FloatTensor>:$bias);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = [{
    $x `,` $weight (`bias` $bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_ReshapeOp : Trl_Op<"reshape", [Trl_Differentiable, Pure]> {
  let summary = "reinterprets a tensor with another shape of the same size";
  let description = [{
    Splits or merges dimensions (for example [B, S, H*D] to [B, S, H, D]).

    ```mlir
    %q4 = trl.reshape %q : (tensor<2x16x64xf32>) -> tensor<2x16x4x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$x);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$x attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops() { return 0; } }];
}

def Trl_SplitOp : Trl_Op<"split", [Trl_Differentiable, Pure]> {
  let summary = "splits a tensor into equal parts along an axis";
  let description = [{
    Used for gpt2's fused q/k/v projection and for the chosen/rejected halves
    of a preference batch. Its vector-Jacobian product is `trl.concat`.

    ```mlir
    %q, %k, %v = trl.split %qkv {axis = 2 : i64} : (tensor<2x16x192xf32>) -> (tensor<2x16x64xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$x, I64Attr:$axis);
  let results = (outs Variadic<AnyRankedTensor>:$parts);
  let assemblyFormat = "$x attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops() { return 0; } }];
}

def Trl_ConcatOp : Trl_Op<"concat", [Trl_Differentiable, Pure]> {
  let summary = "concatenates tensors along an axis";
  let description = [{
    ```mlir
    %qkv = trl.concat %q, %k, %v {axis = 2 : i64} : (tensor<2x16x64xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>) -> tensor<2x16x192xf32>
    ```
  }];
  let arguments = (ins Variadic<AnyRankedTensor>:$inputs, I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$inputs attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops() { return 0; } }];
}

def Trl_RopeOp : Trl_Op<"rope", [Trl_Differentiable, Pure]> {
  let summary = "rotary position embedding, rotate-half convention";
  let description = [{
    Rotates the pairs (x[i], x[i + D/2]) of each head by position * inv_freq[i]
    with inv_freq[i] = theta^(-2i/D), optionally rescaled Llama-3 style.
    `x` is [B, S, H, D] with `positions` [B, S], or [T, H, D] with
    `positions` [T] (positions restart at every packed document). `inverse`
    rotates by the opposite angle, which is the op's vector-Jacobian product.

    ```mlir
    %qr = trl.rope %q, %pos {theta = 10000.0 : f64} : (tensor<2x16x4x16xf32>, tensor<2x16xi64>) -> tensor<2x16x4x16xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$x, Trl_IndexTensor:$positions,
                   DefaultValuedAttr<F64Attr, "10000.0">:$theta,
                   OptionalAttr<Trl_RopeScalingAttr>:$scaling,
                   UnitAttr:$inverse);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$x `,` $positions attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_AttentionOp : Trl_Op<"attention", [Trl_Differentiable, Pure, AttrSizedOperandSegments]> {
  let summary = "scaled dot-product attention with grouped-query heads";
  let description = [{
    `padded` layout: q [B, S, Hq, D], k and v [B, S, Hkv, D], optional key
    `mask` [B, S] (nonzero = real token). `varlen` layout: q [T, Hq, D], k and
    v [T, Hkv, D], `cu_seqlens` [N+1] (i32) delimits N documents that never
    attend to each other. Hq must be a multiple of Hkv. Results: the output
    (shape of q) and the log-sum-exp of every softmax row (f32, [B, Hq, S] or
    [Hq, T]) that the backward pass reuses.

    ```mlir
    %o, %lse = trl.attention %q, %k, %v {layout = #trl.layout<padded>, causal = true, scale = 0.25 : f64}
        : (tensor<2x16x4x16xf32>, tensor<2x16x2x16xf32>, tensor<2x16x2x16xf32>) -> (tensor<2x16x4x16xf32>, tensor<2x4x16xf32>)
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$q, Trl_FloatTensor:$k,
                   Trl_FloatTensor:$v,
                   Optional<RankedTensorOf<[I1, I32, I64, F32]>>:$mask,
                   Optional<1DTensorOf<[I32]>>:$cu_seqlens,
                   Trl_AttentionLayoutAttr:$layout,
                   DefaultValuedAttr<BoolAttr, "true">:$causal,
                   F64Attr:$scale,
                   OptionalAttr<I64Attr>:$max_seqlen);
  let results = (outs Trl_FloatTensor:$out, RankedTensorOf<[F32, F64]>:$lse);
  let assemblyFormat = [{
    $q `,` $k `,` $v (`mask` $mask^)? (`cu_seqlens` $cu_seqlens^)? attr-dict
    `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_CacheWriteOp : Trl_Op<"cache_write", [Pure]> {
  let summary = "writes new keys or values into a key/value cache";
  let description = [{
    Generation's KV cache: `cache` [B, T, H, D] holds the keys (or values)
    of T slots per row; `x` [B, S, H, D] are the new ones, token s of row b
    written at slot `positions`[b, s] (slot = position: each row's tokens
    sit at their own positions, whatever the other rows' lengths). Returns
    the cache with those slots replaced; trl-plan-memory writes it in place
    when it is returned into its state. A position outside [0, T) is a
    runtime error.

    ```mlir
    %c1 = trl.cache_write %c, %k, %pos : (tensor<2x32x2x16xf32>, tensor<2x1x2x16xf32>, tensor<2x1xi64>) -> tensor<2x32x2x16xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$cache, Trl_FloatTensor:$x,
                   Trl_IndexTensor:$positions);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$cache `,` $x `,` $positions attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_CachedAttentionOp : Trl_Op<"cached_attention", [Pure]> {
  let summary = "attention of new queries over a key/value cache";
  let description = [{
    q [B, S, Hq, D] are the queries of S new tokens per row at `positions`
    [B, S]; `k_cache` and `v_cache` [B, T, Hkv, D] hold every slot written
    so far (trl.cache_write). Query (b, s) attends to slot j when
    `mask`[b, j] is nonzero and j <= positions[b, s]: causal by position,
    so a prefill (S = T) and a decoding step (S = 1) are the same op. Hq must
    be a multiple of Hkv. Forward only (generation): no gradient.

    ```mlir
    %o = trl.cached_attention %q, %kc, %vc, %mask, %pos {scale = 0.25 : f64}
        : (tensor<2x1x4x16xf32>, tensor<2x32x2x16xf32>, tensor<2x32x2x16xf32>, tensor<2x32xi64>, tensor<2x1xi64>) -> tensor<2x1x4x16xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$q, Trl_FloatTensor:$k_cache,
                   Trl_FloatTensor:$v_cache, Trl_IndexTensor:$mask,
                   Trl_IndexTensor:$positions, F64Attr:$scale);
  let results = (outs Trl_FloatTensor:$out);
  let assemblyFormat = [{
    $q `,` $k_cache `,` $v_cache `,` $mask `,` $positions attr-dict
    `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_SwigluOp : Trl_Op<"swiglu", [Trl_Differentiable, Pure]> {
  let summary = "silu(gate) * up";
  let description = [{
    ```mlir
    %a = trl.swiglu %gate, %up : (tensor<2x16x128xf32>, tensor<2x16x128xf32>) -> tensor<2x16x128xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$gate, Trl_FloatTensor:$up);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$gate `,` $up attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_GeluOp : Trl_Op<"gelu", [Trl_Differentiable, Pure, SameOperandsAndResultType]> {
  let summary = "GELU activation, exact or tanh-approximated";
  let description = [{
    ```mlir
    %a = trl.gelu %x {approximate = #trl.gelu<tanh>} : tensor<2x16x256xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$x,
                   DefaultValuedAttr<Trl_GeluApproximationAttr,
                     "::mlir::trl::GeluApproximation::none">:$approximate);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$x attr-dict `:` type($x)";
}

def Trl_DropoutOp : Trl_Op<"dropout", [Trl_Differentiable, Pure]> {
  let summary = "inverted dropout with a counter-based mask (LoRA's lora_dropout)";
  let description = [{
    Element i of `x` is kept, scaled by 1 / (1 - p), unless the hash of
    (`seed`, `stream`, i) falls below p; then it is zero. The mask is a
    function of those three alone, so the same op over the output gradient
    (the VJP) drops the same elements and no mask is stored. `seed` is a
    0-d i64 batch input the runtime sets per micro-batch; `stream` tells
    the dropouts of one step apart. The hash (splitmix64) is the same on
    every backend:

        h = mix(seed * 0x9E3779B97F4A7C15 + (stream + 1) * 0xD1B54A32D192ED03 + i)
        keep = (h >> 40) >= round(p * 2^24)

    ```mlir
    %d = trl.dropout %x, %seed {p = 0.05 : f64, stream = 3 : i64} : (tensor<2x16x64xf32>, tensor<i64>) -> tensor<2x16x64xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$x, 0DTensorOf<[I64]>:$seed, F64Attr:$p,
                   I64Attr:$stream);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$x `,` $seed attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_AddOp : Trl_Op<"add", [Trl_Differentiable, Pure, SameOperandsAndResultType]> {
  let summary = "elementwise sum (residual connections, gradient accumulation)";
  let description = [{
    ```mlir
    %h2 = trl.add %h, %attn : tensor<2x16x64xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$lhs, Trl_FloatTensor:$rhs);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
}

def Trl_DivOp : Trl_Op<"div", [Trl_Differentiable, Pure]> {
  let summary = "divides every element by a 0-d divisor (loss normalisation)";
  let description = [{
    ```mlir
    %loss = trl.div %sum, %num_tokens : (tensor<f32>, tensor<f32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$x, Trl_Scalar:$divisor);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$x `,` $divisor attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Losses and log-probabilities
//===----------------------------------------------------------------------===//

def Trl_CrossEntropyOp : Trl_Op<"cross_entropy", [Trl_Differentiable, Pure]> {
  let summary = "sum over non-ignored labels of -log softmax(logits)[label]";
  let description = [{
    `logits` [..., V], `labels` [...] (already shifted: label t is the token
    that follows position t). Labels equal to `ignore_index` do not count.
    The result is the sum; the step divides by the number of trainable
    tokens of the whole accumulated batch, as TRL does.

    ```mlir
    %s = trl.cross_entropy %logits, %labels : (tensor<2x16x256xf32>, tensor<2x16xi64>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$logits, Trl_IndexTensor:$labels,
                   DefaultValuedAttr<I64Attr, "-100">:$ignore_index);
  let results = (outs Trl_Scalar:$loss);
  let assemblyFormat = "$logits `,` $labels attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_FusedLinearCrossEntropyOp
    : Trl_Op<"fused_linear_cross_entropy", [Trl_Differentiable, Pure]> {
  let summary = "lm_head matmul + cross entropy in row chunks, no [T, V] logits";
  let description = [{
    Same value as `trl.cross_entropy(trl.linear(hidden, weight), labels)`,
    computed `chunk_size` rows at a time so the full logits never exist.

    ```mlir
    %s = trl.fused_linear_cross_entropy %h, %w, %labels {chunk_size = 256 : i64}
        : (tensor<2x16x64xf32>, tensor<256x64xf32>, tensor<2x16xi64>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$hidden, Trl_FloatTensor:$weight,
                   Trl_IndexTensor:$labels,
                   DefaultValuedAttr<I64Attr, "-100">:$ignore_index,
                   I64Attr:$chunk_size);
  let results = (outs Trl_Scalar:$loss);
  let assemblyFormat = [{
    $hidden `,` $weight `,` $labels attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_LogProbsOp : Trl_Op<"log_probs", [Trl_Differentiable, Pure]> {
  let summary = "per-token log softmax(logits)[label] (0 where ignored)";
  let description = [{
    The per-token log-probabilities that DPO, KTO and GRPO sum or compare.

    ```mlir
    %lp = trl.log_probs %logits, %labels : (tensor<2x16x256xf32>, tensor<2x16xi64>) -> tensor<2x16xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$logits, Trl_IndexTensor:$labels,
                   DefaultValuedAttr<I64Attr, "-100">:$ignore_index);
  let results = (outs RankedTensorOf<[F32, F64]>:$result);
  let assemblyFormat = "$logits `,` $labels attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_FusedLinearLogProbsOp : Trl_Op<"fused_linear_log_probs", [Trl_Differentiable, Pure]> {
  let summary = "lm_head matmul + per-token log-probabilities in row chunks";
  let description = [{
    ```mlir
    %lp = trl.fused_linear_log_probs %h, %w, %labels {chunk_size = 256 : i64}
        : (tensor<2x16x64xf32>, tensor<256x64xf32>, tensor<2x16xi64>) -> tensor<2x16xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$hidden, Trl_FloatTensor:$weight,
                   Trl_IndexTensor:$labels,
                   DefaultValuedAttr<I64Attr, "-100">:$ignore_index,
                   I64Attr:$chunk_size);
  let results = (outs RankedTensorOf<[F32, F64]>:$result);
  let assemblyFormat = [{
    $hidden `,` $weight `,` $labels attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_MaskedSumOp : Trl_Op<"masked_sum", [Trl_Differentiable, Pure]> {
  let summary = "sum over the last dimension of x * mask";
  let description = [{
    Sequence log-probability of the completion tokens: [B, S] -> [B]. x may
    also be one row [1, S] that every mask row reads (padding-free pairs:
    all sequences back to back in one token row, a mask row per sequence).

    ```mlir
    %seq = trl.masked_sum %lp, %mask : (tensor<4x16xf32>, tensor<4x16xf32>) -> tensor<4xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32, F64]>:$x,
                   RankedTensorOf<[F32, F64]>:$mask);
  let results = (outs RankedTensorOf<[F32, F64]>:$result);
  let assemblyFormat = "$x `,` $mask attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_DpoLossOp : Trl_Op<"dpo_loss", [Trl_Differentiable, Pure, AttrSizedOperandSegments]> {
  let summary = "DPO loss from policy and reference sequence log-probabilities";
  let description = [{
    Per pair i, with h_c = pi_c - ref_c, h_r = pi_r - ref_r and
    z = beta (h_c - h_r), TRL's losses: sigmoid
    -log sigmoid(z) (1 - eps) - log sigmoid(-z) eps (eps = label_smoothing);
    robust (-log sigmoid(z) (1 - eps) + log sigmoid(-z) eps) / (1 - 2 eps);
    hinge relu(1 - z); ipo (h_c - h_r - 1/(2 beta))^2; apo_zero
    1 - sigmoid(beta h_c) + sigmoid(beta h_r); apo_down
    sigmoid(beta h_c) + 1 - sigmoid(z). The loss is sum_i weights_i l_i
    (the runtime's weights: 1 / (real pairs x accumulation x ranks), 0 for
    padding pairs), plus with `nll_weight` rpo_alpha * nll_weight *
    sum_i (-pi_c), the NLL of the chosen completions (TRL's rpo_alpha).
    Also returns the rewards beta h_c and beta h_r for the metrics. With
    `beta_value` (a scalar the runtime sets: online DPO's beta scheduled
    over epochs) that value is beta and the attribute is unused.

    ```mlir
    %l, %rc, %rr = trl.dpo_loss %pc, %pr, %refc, %refr, %w {beta = 1.0e-01 : f64}
        : (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<f32>, tensor<2xf32>, tensor<2xf32>)
    ```
  }];
  let arguments = (ins Trl_Vector:$policy_chosen, Trl_Vector:$policy_rejected,
                   Trl_Vector:$ref_chosen, Trl_Vector:$ref_rejected,
                   Trl_Vector:$weights, Optional<Trl_Scalar>:$nll_weight,
                   Optional<Trl_Scalar>:$beta_value,
                   DefaultValuedAttr<F64Attr, "0.1">:$beta,
                   DefaultValuedAttr<Trl_DpoLossTypeAttr,
                     "::mlir::trl::DpoLossType::sigmoid">:$loss_type,
                   DefaultValuedAttr<F64Attr, "0.0">:$label_smoothing,
                   DefaultValuedAttr<F64Attr, "0.0">:$rpo_alpha);
  let results = (outs Trl_Scalar:$loss, Trl_Vector:$chosen_rewards,
                 Trl_Vector:$rejected_rewards);
  let assemblyFormat = [{
    $policy_chosen `,` $policy_rejected `,` $ref_chosen `,` $ref_rejected `,` $weights
    (`nll` $nll_weight^)? (`beta` $beta_value^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Trl_KtoKlOp : Trl_Op<"kto_kl", [Pure]> {
  let summary = "KTO's KL estimate of one micro-batch: sum_i weights_i (kl_policy_i - kl_ref_i)";
  let description = [{
    Over the mismatched prompt/completion pairs, weighted as the runtime
    sets it (1 / (real rows x ranks)), so a sum over ranks is the mean TRL
    gathers. Detached: kto_loss does not differentiate through it.

    ```mlir
    %kl = trl.kto_kl %klp, %klr, %w : (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Trl_Vector:$kl_policy, Trl_Vector:$kl_ref, Trl_Vector:$weights);
  let results = (outs Trl_Scalar:$kl);
  let assemblyFormat = "$kl_policy `,` $kl_ref `,` $weights attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_KtoLossOp : Trl_Op<"kto_loss", [Trl_Differentiable, Pure]> {
  let summary = "KTO loss for unpaired desirable/undesirable completions";
  let description = [{
    r = pi - ref per example; KL = max(0, kl) (kto_kl, detached).
    loss_type kto: desirable (label true) desirable_weight *
    (1 - sigmoid(beta (r - KL))), undesirable undesirable_weight *
    (1 - sigmoid(beta (KL - r))); apo_zero_unpaired (no KL): desirable
    desirable_weight * (1 - sigmoid(beta r)), undesirable
    undesirable_weight * sigmoid(beta r). The loss is sum_i weights_i l_i
    (1 / (real rows x accumulation x ranks), 0 for padding). Returns the
    loss, the rewards beta r and the clamped KL.

    ```mlir
    %l, %r, %kl = trl.kto_loss %pi, %ref, %label, %w kl %k {beta = 1.0e-01 : f64}
        : (tensor<4xf32>, tensor<4xf32>, tensor<4xi1>, tensor<4xf32>, tensor<f32>) -> (tensor<f32>, tensor<4xf32>, tensor<f32>)
    ```
  }];
  let arguments = (ins Trl_Vector:$policy, Trl_Vector:$ref, 1DTensorOf<[I1]>:$label,
                   Trl_Vector:$weights, Optional<Trl_Scalar>:$kl,
                   DefaultValuedAttr<F64Attr, "0.1">:$beta,
                   DefaultValuedAttr<F64Attr, "1.0">:$desirable_weight,
                   DefaultValuedAttr<F64Attr, "1.0">:$undesirable_weight,
                   DefaultValuedAttr<Trl_KtoLossTypeAttr,
                     "::mlir::trl::KtoLossType::kto">:$loss_type);
  let results = (outs Trl_Scalar:$loss, Trl_Vector:$rewards, Trl_Scalar:$kl_out);
  let assemblyFormat = [{
    $policy `,` $ref `,` $label `,` $weights (`kl` $kl^)? attr-dict
    `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Trl_GrpoLossOp : Trl_Op<"grpo_loss", [Trl_Differentiable, Pure]> {
  let summary = "clipped GRPO policy loss over completion tokens";
  let description = [{
    Per token: ratio = exp(logp - old_logp),
    -min(ratio A, clip(ratio, 1 - epsilon_low, 1 + epsilon_high) A) + beta KL3;
    with `sequence_level` (GSPO) one ratio per row, exp of the masked mean
    of logp - old_logp over its tokens, shared by all of them
    (KL3 = exp(ref - logp) - (ref - logp) - 1, needs `ref_logp`, present iff
    beta != 0), masked by `mask`, normalised by `loss_type` (grpo: each
    sequence's mean, averaged over the rows; bnpo: over the micro-batch's
    active tokens; dr_grpo: over the rows; dapo: none) and then divided by
    `normalizer`: the active tokens of the global batch (dapo), the
    micro-batches of the global batch (grpo, bnpo) or those times
    max_completion_length (dr_grpo), so that the accumulated sum is TRL's
    loss.

    ```mlir
    %l = trl.grpo_loss %lp, %old, %adv, %mask, %n {epsilon_low = 2.0e-01 : f64, epsilon_high = 2.0e-01 : f64}
        : (tensor<8x32xf32>, tensor<8x32xf32>, tensor<8xf32>, tensor<8x32xf32>, tensor<f32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32, F64]>:$logp,
                   RankedTensorOf<[F32, F64]>:$old_logp,
                   Trl_Vector:$advantages,
                   RankedTensorOf<[F32, F64]>:$mask,
                   Trl_Scalar:$normalizer,
                   Optional<RankedTensorOf<[F32, F64]>>:$ref_logp,
                   DefaultValuedAttr<F64Attr, "0.2">:$epsilon_low,
                   DefaultValuedAttr<F64Attr, "0.2">:$epsilon_high,
                   DefaultValuedAttr<F64Attr, "0.0">:$beta,
                   DefaultValuedAttr<Trl_GrpoLossTypeAttr,
                     "::mlir::trl::GrpoLossType::dapo">:$loss_type,
                   UnitAttr:$sequence_level);
  let results = (outs Trl_Scalar:$loss);
  let assemblyFormat = [{
    $logp `,` $old_logp `,` $advantages `,` $mask `,` $normalizer
    (`ref` $ref_logp^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Trl_RlooLossOp : Trl_Op<"rloo_loss", [Trl_Differentiable, Pure]> {
  let summary = "clipped RLOO policy loss over whole completions";
  let description = [{
    TRL's RLOO objective: per row, the completion's log-probability
    logps = sum mask * logp and ratio = exp(logps - old_logps) (one per
    sequence), -min(ratio A, clip(ratio, 1 - epsilon_low, 1 + epsilon_high) A),
    summed over the rows and divided by `normalizer` (the sequences of the
    global batch, so that the accumulated sum is TRL's mean). The KL to the
    reference is in the advantages (the reward), not here.

    ```mlir
    %l = trl.rloo_loss %lp, %old, %adv, %mask, %n {epsilon_low = 2.0e-01 : f64, epsilon_high = 2.0e-01 : f64}
        : (tensor<8x32xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8x32xf32>, tensor<f32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32, F64]>:$logp,
                   Trl_Vector:$old_logp,
                   Trl_Vector:$advantages,
                   RankedTensorOf<[F32, F64]>:$mask,
                   Trl_Scalar:$normalizer,
                   DefaultValuedAttr<F64Attr, "0.2">:$epsilon_low,
                   DefaultValuedAttr<F64Attr, "0.2">:$epsilon_high);
  let results = (outs Trl_Scalar:$loss);
  let assemblyFormat = [{
    $logp `,` $old_logp `,` $advantages `,` $mask `,` $normalizer attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Trl_PpoLossOp : Trl_Op<"ppo_loss", [Trl_Differentiable, Pure]> {
  let summary = "PPO's clipped policy loss plus its clipped value loss";
  let description = [{
    TRL's PPOTrainer objective over response tokens. Per token, with
    r = exp(logp - old_logp): the policy term max(-A r, -A clip(r, 1 -
    cliprange, 1 + cliprange)) where `mask` counts it; the value term
    max((v - R)^2, (v' - R)^2), v' = old_v + clip(v - old_v, -cliprange_value,
    cliprange_value), where `value_mask` counts it. The loss is
    pg_weight * sum(policy terms) + vf_coef * 0.5 * vf_weight * sum(value
    terms): the runtime's weights make each a masked mean over the
    micro-batch divided by the accumulation steps and ranks (TRL's
    masked_mean and gradient accumulation). Differentiable in logp and v.

    ```mlir
    %l = trl.ppo_loss %lp, %old, %adv, %mask, %v, %oldv, %ret, %vmask, %wp, %wv {cliprange = 2.0e-01 : f64, cliprange_value = 2.0e-01 : f64, vf_coef = 1.0e-01 : f64}
        : (tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<f32>, tensor<f32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32, F64]>:$logp,
                   RankedTensorOf<[F32, F64]>:$old_logp,
                   RankedTensorOf<[F32, F64]>:$advantages,
                   RankedTensorOf<[F32, F64]>:$mask,
                   RankedTensorOf<[F32, F64]>:$values,
                   RankedTensorOf<[F32, F64]>:$old_values,
                   RankedTensorOf<[F32, F64]>:$returns,
                   RankedTensorOf<[F32, F64]>:$value_mask,
                   Trl_Scalar:$pg_weight, Trl_Scalar:$vf_weight,
                   DefaultValuedAttr<F64Attr, "0.2">:$cliprange,
                   DefaultValuedAttr<F64Attr, "0.2">:$cliprange_value,
                   DefaultValuedAttr<F64Attr, "0.1">:$vf_coef);
  let results = (outs Trl_Scalar:$loss);
  let assemblyFormat = [{
    $logp `,` $old_logp `,` $advantages `,` $mask `,` $values `,` $old_values `,` $returns `,`
    $value_mask `,` $pg_weight `,` $vf_weight attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Backward ops
//===----------------------------------------------------------------------===//

def Trl_EmbeddingGradOp : Trl_Op<"embedding_grad", [Pure]> {
  let summary = "scatter-adds output cotangents into a [V, H] table gradient";
  let description = [{
    ```mlir
    %dt = trl.embedding_grad %dy, %ids : (tensor<2x16x64xf32>, tensor<2x16xi64>) -> tensor<256x64xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$grad, Trl_IndexTensor:$ids);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$grad `,` $ids attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_RmsNormGradOp : Trl_Op<"rms_norm_grad", [Pure]> {
  let summary = "gradients of rms_norm w.r.t. its input and weight";
  let description = [{
    ```mlir
    %dx, %dw = trl.rms_norm_grad %dy, %x, %w {eps = 1.0e-06 : f64}
        : (tensor<2x16x64xf32>, tensor<2x16x64xf32>, tensor<64xf32>) -> (tensor<2x16x64xf32>, tensor<64xf32>)
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$grad, Trl_FloatTensor:$x,
                   Trl_FloatTensor:$weight,
                   DefaultValuedAttr<F64Attr, "1e-6">:$eps);
  let results = (outs Trl_FloatTensor:$grad_x, Trl_FloatTensor:$grad_weight);
  let assemblyFormat = "$grad `,` $x `,` $weight attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_LayerNormGradOp : Trl_Op<"layer_norm_grad", [Pure]> {
  let summary = "gradients of layer_norm w.r.t. its input, weight and bias";
  let description = [{
    ```mlir
    %dx, %dw, %db = trl.layer_norm_grad %dy, %x, %w {eps = 1.0e-05 : f64}
        : (tensor<2x16x64xf32>, tensor<2x16x64xf32>, tensor<64xf32>) -> (tensor<2x16x64xf32>, tensor<64xf32>, tensor<64xf32>)
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$grad, Trl_FloatTensor:$x,
                   Trl_FloatTensor:$weight,
                   DefaultValuedAttr<F64Attr, "1e-5">:$eps);
  let results = (outs Trl_FloatTensor:$grad_x, Trl_FloatTensor:$grad_weight,
                 Trl_FloatTensor:$grad_bias);
  let assemblyFormat = "$grad `,` $x `,` $weight attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_LinearGradOp : Trl_Op<"linear_grad", [Pure]> {
  let summary = "gradients of linear w.r.t. input, weight and (optional) bias";
  let description = [{
    dx = dy W, dW = dy^T x summed over all leading dimensions, db = sum dy.
    The bias gradient is produced iff `has_bias`. With `accumulate %acc`,
    dW = acc + dy^T x: the weight gradient is added into a gradient
    accumulator by the matrix product itself (trl-optimizer fuses it).

    ```mlir
    %dx, %dw = trl.linear_grad %dy, %x, %w
        : (tensor<2x16x128xf32>, tensor<2x16x64xf32>, tensor<128x64xf32>) -> (tensor<2x16x64xf32>, tensor<128x64xf32>)
    %dx2, %acc2 = trl.linear_grad %dy, %x, %w accumulate %acc
        : (tensor<2x16x128xf32>, tensor<2x16x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>) -> (tensor<2x16x64xf32>, tensor<128x64xf32>)
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$grad, Trl_FloatTensor:$x,
                   Trl_FloatTensor:$weight,
                   Optional<Trl_FloatTensor>:$accumulate, UnitAttr:$has_bias);
  let results = (outs Trl_FloatTensor:$grad_x, Trl_FloatTensor:$grad_weight,
                 Optional<Trl_FloatTensor>:$grad_bias);
  let assemblyFormat = [{
    $grad `,` $x `,` $weight (`accumulate` $accumulate^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_AttentionGradOp
    : Trl_Op<"attention_grad", [Pure, AttrSizedOperandSegments]> {
  let summary = "gradients of attention w.r.t. q, k and v";
  let description = [{
    Recomputes the probabilities from q, k and the saved log-sum-exp, as
    flash attention's backward does. Layout rules are those of
    `trl.attention`.

    ```mlir
    %dq, %dk, %dv = trl.attention_grad %do, %q, %k, %v, %o, %lse {layout = #trl.layout<padded>, scale = 0.25 : f64}
        : (tensor<2x16x4x16xf32>, tensor<2x16x4x16xf32>, tensor<2x16x2x16xf32>, tensor<2x16x2x16xf32>, tensor<2x16x4x16xf32>, tensor<2x4x16xf32>)
          -> (tensor<2x16x4x16xf32>, tensor<2x16x2x16xf32>, tensor<2x16x2x16xf32>)
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$grad_out, Trl_FloatTensor:$q,
                   Trl_FloatTensor:$k, Trl_FloatTensor:$v,
                   Trl_FloatTensor:$out, RankedTensorOf<[F32, F64]>:$lse,
                   Optional<RankedTensorOf<[I1, I32, I64, F32]>>:$mask,
                   Optional<1DTensorOf<[I32]>>:$cu_seqlens,
                   Trl_AttentionLayoutAttr:$layout,
                   DefaultValuedAttr<BoolAttr, "true">:$causal,
                   F64Attr:$scale,
                   OptionalAttr<I64Attr>:$max_seqlen);
  let results = (outs Trl_FloatTensor:$grad_q, Trl_FloatTensor:$grad_k,
                 Trl_FloatTensor:$grad_v);
  let assemblyFormat = [{
    $grad_out `,` $q `,` $k `,` $v `,` $out `,` $lse (`mask` $mask^)?
    (`cu_seqlens` $cu_seqlens^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_SwigluGradOp : Trl_Op<"swiglu_grad", [Pure]> {
  let summary = "gradients of swiglu w.r.t. gate and up";
  let description = [{
    ```mlir
    %dg, %du = trl.swiglu_grad %dy, %g, %u : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>)
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$grad, Trl_FloatTensor:$gate,
                   Trl_FloatTensor:$up);
  let results = (outs Trl_FloatTensor:$grad_gate, Trl_FloatTensor:$grad_up);
  let assemblyFormat = "$grad `,` $gate `,` $up attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_GeluGradOp : Trl_Op<"gelu_grad", [Pure, SameOperandsAndResultShape]> {
  let summary = "gradient of gelu w.r.t. its input";
  let description = [{
    ```mlir
    %dx = trl.gelu_grad %dy, %x {approximate = #trl.gelu<tanh>}
        : (tensor<4x8xf32>, tensor<4x8xbf16>) -> tensor<4x8xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$grad, Trl_FloatTensor:$x,
                   DefaultValuedAttr<Trl_GeluApproximationAttr,
                     "::mlir::trl::GeluApproximation::none">:$approximate);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$grad `,` $x attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_CrossEntropyGradOp : Trl_Op<"cross_entropy_grad", [Pure]> {
  let summary = "gradient of cross_entropy w.r.t. the logits";
  let description = [{
    dlogits = dloss * (softmax(logits) - onehot(label)), zero on ignored rows.

    ```mlir
    %dl = trl.cross_entropy_grad %dloss, %logits, %labels
        : (tensor<f32>, tensor<2x16x256xf32>, tensor<2x16xi64>) -> tensor<2x16x256xf32>
    ```
  }];
  let arguments = (ins Trl_Scalar:$grad, Trl_FloatTensor:$logits,
                   Trl_IndexTensor:$labels,
                   DefaultValuedAttr<I64Attr, "-100">:$ignore_index);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$grad `,` $logits `,` $labels attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_FusedLinearCrossEntropyGradOp
    : Trl_Op<"fused_linear_cross_entropy_grad", [Pure]> {
  let summary = "gradients of the fused lm_head + cross entropy";
  let description = [{
    Produces the hidden-state and lm_head gradients chunk by chunk with fp32
    accumulation, never holding more than `chunk_size` rows of logits.

    ```mlir
    %dh, %dw = trl.fused_linear_cross_entropy_grad %dloss, %h, %w, %labels {chunk_size = 256 : i64}
        : (tensor<f32>, tensor<2x16x64xf32>, tensor<256x64xf32>, tensor<2x16xi64>) -> (tensor<2x16x64xf32>, tensor<256x64xf32>)
    ```
  }];
  let arguments = (ins Trl_Scalar:$grad, Trl_FloatTensor:$hidden,
                   Trl_FloatTensor:$weight, Trl_IndexTensor:$labels,
                   DefaultValuedAttr<I64Attr, "-100">:$ignore_index,
                   I64Attr:$chunk_size);
  let results = (outs Trl_FloatTensor:$grad_hidden, Trl_FloatTensor:$grad_weight);
  let assemblyFormat = [{
    $grad `,` $hidden `,` $weight `,` $labels attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_LogProbsGradOp : Trl_Op<"log_probs_grad", [Pure]> {
  let summary = "gradient of log_probs w.r.t. the logits";
  let description = [{
    ```mlir
    %dl = trl.log_probs_grad %dlp, %logits, %labels
        : (tensor<2x16xf32>, tensor<2x16x256xf32>, tensor<2x16xi64>) -> tensor<2x16x256xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32, F64]>:$grad, Trl_FloatTensor:$logits,
                   Trl_IndexTensor:$labels,
                   DefaultValuedAttr<I64Attr, "-100">:$ignore_index);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$grad `,` $logits `,` $labels attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_FusedLinearLogProbsGradOp
    : Trl_Op<"fused_linear_log_probs_grad", [Pure]> {
  let summary = "gradients of the fused lm_head + log-probabilities";
  let description = [{
    ```mlir
    %dh, %dw = trl.fused_linear_log_probs_grad %dlp, %h, %w, %labels {chunk_size = 256 : i64}
        : (tensor<2x16xf32>, tensor<2x16x64xf32>, tensor<256x64xf32>, tensor<2x16xi64>) -> (tensor<2x16x64xf32>, tensor<256x64xf32>)
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32, F64]>:$grad, Trl_FloatTensor:$hidden,
                   Trl_FloatTensor:$weight, Trl_IndexTensor:$labels,
                   DefaultValuedAttr<I64Attr, "-100">:$ignore_index,
                   I64Attr:$chunk_size);
  let results = (outs Trl_FloatTensor:$grad_hidden, Trl_FloatTensor:$grad_weight);
  let assemblyFormat = [{
    $grad `,` $hidden `,` $weight `,` $labels attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_MaskedSumGradOp : Trl_Op<"masked_sum_grad", [Pure]> {
  let summary = "gradient of masked_sum: dy broadcast over the last dimension times mask";
  let description = [{
    ```mlir
    %dx = trl.masked_sum_grad %dy, %mask : (tensor<4xf32>, tensor<4x16xf32>) -> tensor<4x16xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32, F64]>:$grad,
                   RankedTensorOf<[F32, F64]>:$mask);
  let results = (outs RankedTensorOf<[F32, F64]>:$result);
  let assemblyFormat = "$grad `,` $mask attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_DpoLossGradOp : Trl_Op<"dpo_loss_grad", [Pure, AttrSizedOperandSegments]> {
  let summary = "gradient of dpo_loss w.r.t. the policy log-probabilities";
  let description = [{
    ```mlir
    %dc, %dr = trl.dpo_loss_grad %dl, %pc, %pr, %refc, %refr, %w {beta = 1.0e-01 : f64}
        : (tensor<f32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<2xf32>, tensor<2xf32>)
    ```
  }];
  let arguments = (ins Trl_Scalar:$grad, Trl_Vector:$policy_chosen,
                   Trl_Vector:$policy_rejected, Trl_Vector:$ref_chosen,
                   Trl_Vector:$ref_rejected, Trl_Vector:$weights,
                   Optional<Trl_Scalar>:$nll_weight,
                   Optional<Trl_Scalar>:$beta_value,
                   DefaultValuedAttr<F64Attr, "0.1">:$beta,
                   DefaultValuedAttr<Trl_DpoLossTypeAttr,
                     "::mlir::trl::DpoLossType::sigmoid">:$loss_type,
                   DefaultValuedAttr<F64Attr, "0.0">:$label_smoothing,
                   DefaultValuedAttr<F64Attr, "0.0">:$rpo_alpha);
  let results = (outs Trl_Vector:$grad_chosen, Trl_Vector:$grad_rejected);
  let assemblyFormat = [{
    $grad `,` $policy_chosen `,` $policy_rejected `,` $ref_chosen `,` $ref_rejected `,`
    $weights (`nll` $nll_weight^)? (`beta` $beta_value^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Trl_KtoLossGradOp : Trl_Op<"kto_loss_grad", [Pure]> {
  let summary = "gradient of kto_loss w.r.t. the policy log-probabilities (KL detached)";
  let description = [{
    ```mlir
    %dp = trl.kto_loss_grad %dl, %pi, %ref, %label, %w kl %k {beta = 1.0e-01 : f64}
        : (tensor<f32>, tensor<4xf32>, tensor<4xf32>, tensor<4xi1>, tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
    ```
  }];
  let arguments = (ins Trl_Scalar:$grad, Trl_Vector:$policy, Trl_Vector:$ref,
                   1DTensorOf<[I1]>:$label, Trl_Vector:$weights,
                   Optional<Trl_Scalar>:$kl,
                   DefaultValuedAttr<F64Attr, "0.1">:$beta,
                   DefaultValuedAttr<F64Attr, "1.0">:$desirable_weight,
                   DefaultValuedAttr<F64Attr, "1.0">:$undesirable_weight,
                   DefaultValuedAttr<Trl_KtoLossTypeAttr,
                     "::mlir::trl::KtoLossType::kto">:$loss_type);
  let results = (outs Trl_Vector:$result);
  let assemblyFormat = [{
    $grad `,` $policy `,` $ref `,` $label `,` $weights (`kl` $kl^)? attr-dict
    `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Trl_GrpoLossGradOp : Trl_Op<"grpo_loss_grad", [Pure]> {
  let summary = "gradient of grpo_loss w.r.t. the policy token log-probabilities";
  let description = [{
    ```mlir
    %dlp = trl.grpo_loss_grad %dl, %lp, %old, %adv, %mask, %n
        : (tensor<f32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8xf32>, tensor<8x32xf32>, tensor<f32>) -> tensor<8x32xf32>
    ```
  }];
  let arguments = (ins Trl_Scalar:$grad, RankedTensorOf<[F32, F64]>:$logp,
                   RankedTensorOf<[F32, F64]>:$old_logp,
                   Trl_Vector:$advantages,
                   RankedTensorOf<[F32, F64]>:$mask,
                   Trl_Scalar:$normalizer,
                   Optional<RankedTensorOf<[F32, F64]>>:$ref_logp,
                   DefaultValuedAttr<F64Attr, "0.2">:$epsilon_low,
                   DefaultValuedAttr<F64Attr, "0.2">:$epsilon_high,
                   DefaultValuedAttr<F64Attr, "0.0">:$beta,
                   DefaultValuedAttr<Trl_GrpoLossTypeAttr,
                     "::mlir::trl::GrpoLossType::dapo">:$loss_type,
                   UnitAttr:$sequence_level);
  let results = (outs RankedTensorOf<[F32, F64]>:$result);
  let assemblyFormat = [{
    $grad `,` $logp `,` $old_logp `,` $advantages `,` $mask `,` $normalizer
    (`ref` $ref_logp^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Optimizer ops
//===----------------------------------------------------------------------===//

def Trl_RlooLossGradOp : Trl_Op<"rloo_loss_grad", [Pure]> {
  let summary = "gradient of rloo_loss w.r.t. the policy token log-probabilities";
  let description = [{
    ```mlir
    %dlp = trl.rloo_loss_grad %dl, %lp, %old, %adv, %mask, %n
        : (tensor<f32>, tensor<8x32xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8x32xf32>, tensor<f32>) -> tensor<8x32xf32>
    ```
  }];
  let arguments = (ins Trl_Scalar:$grad, RankedTensorOf<[F32, F64]>:$logp,
                   Trl_Vector:$old_logp,
                   Trl_Vector:$advantages,
                   RankedTensorOf<[F32, F64]>:$mask,
                   Trl_Scalar:$normalizer,
                   DefaultValuedAttr<F64Attr, "0.2">:$epsilon_low,
                   DefaultValuedAttr<F64Attr, "0.2">:$epsilon_high);
  let results = (outs RankedTensorOf<[F32, F64]>:$result);
  let assemblyFormat = [{
    $grad `,` $logp `,` $old_logp `,` $advantages `,` $mask `,` $normalizer attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Trl_PpoLossGradOp : Trl_Op<"ppo_loss_grad", [Pure]> {
  let summary = "gradients of ppo_loss w.r.t. the log-probabilities and the values";
  let description = [{
    ```mlir
    %dlp, %dv = trl.ppo_loss_grad %dl, %lp, %old, %adv, %mask, %v, %oldv, %ret, %vmask, %wp, %wv
        : (tensor<f32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<f32>, tensor<f32>) -> (tensor<8x32xf32>, tensor<8x32xf32>)
    ```
  }];
  let arguments = (ins Trl_Scalar:$grad,
                   RankedTensorOf<[F32, F64]>:$logp,
                   RankedTensorOf<[F32, F64]>:$old_logp,
                   RankedTensorOf<[F32, F64]>:$advantages,
                   RankedTensorOf<[F32, F64]>:$mask,
                   RankedTensorOf<[F32, F64]>:$values,
                   RankedTensorOf<[F32, F64]>:$old_values,
                   RankedTensorOf<[F32, F64]>:$returns,
                   RankedTensorOf<[F32, F64]>:$value_mask,
                   Trl_Scalar:$pg_weight, Trl_Scalar:$vf_weight,
                   DefaultValuedAttr<F64Attr, "0.2">:$cliprange,
                   DefaultValuedAttr<F64Attr, "0.2">:$cliprange_value,
                   DefaultValuedAttr<F64Attr, "0.1">:$vf_coef);
  let results = (outs RankedTensorOf<[F32, F64]>:$grad_logp,
                 RankedTensorOf<[F32, F64]>:$grad_values);
  let assemblyFormat = [{
    $grad `,` $logp `,` $old_logp `,` $advantages `,` $mask `,` $values `,` $old_values `,`
    $returns `,` $value_mask `,` $pg_weight `,` $vf_weight attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Trl_GradNormOp : Trl_Op<"grad_norm", [Pure]> {
  let summary = "global L2 norm over a list of gradients (fp32 accumulation)";
  let description = [{
    With `squared`, the sum of squares without the root: sharded gradients
    (ZeRO) sum their squares over the ranks (`trl.all_reduce`) before
    `trl.sqrt`.

    ```mlir
    %n = trl.grad_norm %g0, %g1 : (tensor<256x64xf32>, tensor<64xf32>) -> tensor<f32>
    %s = trl.grad_norm %shard {squared} : (tensor<4096xf32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Variadic<Trl_FloatTensor>:$grads, UnitAttr:$squared);
  let results = (outs Trl_Scalar:$norm);
  let assemblyFormat = "$grads attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_LrScheduleOp : Trl_Op<"lr_schedule", [Pure]> {
  let summary = "learning rate at an optimizer step (Hugging Face schedules)";
  let description = [{
    Linear warm-up from 0 over `warmup_steps`, then constant, linear decay to
    0 at `total_steps`, or half-cosine decay to 0.

    ```mlir
    %lr = trl.lr_schedule %step {schedule = #trl.lr_schedule<cosine>, base_lr = 2.0e-05 : f64,
                                 warmup_steps = 10 : i64, total_steps = 100 : i64} : (tensor<i64>) -> tensor<f32>
    ```
  }];
  let arguments = (ins 0DTensorOf<[I64]>:$step, Trl_LrScheduleAttr:$schedule,
                   F64Attr:$base_lr, I64Attr:$warmup_steps, I64Attr:$total_steps);
  let results = (outs Trl_Scalar:$lr);
  let assemblyFormat = "$step attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_AdamWOp : Trl_Op<"adamw", [Pure]> {
  let summary = "one AdamW update with bias correction and decoupled weight decay";
  let description = [{
    `step` counts the updates already applied (0 for the first), so bias
    correction uses step + 1. Returns the new parameter and moments (all
    fp32 master copies); torch.optim.AdamW's arithmetic. With `clip` and
    the global gradient norm, the gradient is first scaled by
    min(1, max_grad_norm / (norm + 1e-6)), as torch.nn.utils.clip_grad_norm_
    does, inside the update: no clipped copy of the gradient is stored.

    ```mlir
    %p1, %m1, %v1 = trl.adamw %p, %g, %m, %v, %lr, %step clip %norm {beta1 = 0.9 : f64, beta2 = 0.999 : f64, eps = 1.0e-08 : f64, weight_decay = 0.0 : f64, max_grad_norm = 1.0 : f64}
        : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>)
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$param, Trl_FloatTensor:$grad,
                   Trl_FloatTensor:$exp_avg, Trl_FloatTensor:$exp_avg_sq,
                   Trl_Scalar:$lr, 0DTensorOf<[I64]>:$step,
                   Optional<Trl_Scalar>:$grad_norm,
                   DefaultValuedAttr<F64Attr, "0.9">:$beta1,
                   DefaultValuedAttr<F64Attr, "0.999">:$beta2,
                   DefaultValuedAttr<F64Attr, "1e-8">:$eps,
                   DefaultValuedAttr<F64Attr, "0.0">:$weight_decay,
                   DefaultValuedAttr<F64Attr, "0.0">:$max_grad_norm);
  let results = (outs Trl_FloatTensor:$new_param, Trl_FloatTensor:$new_exp_avg,
                 Trl_FloatTensor:$new_exp_avg_sq);
  let assemblyFormat = [{
    $param `,` $grad `,` $exp_avg `,` $exp_avg_sq `,` $lr `,` $step (`clip` $grad_norm^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Memory ops
//===----------------------------------------------------------------------===//

def Trl_OffloadOp : Trl_Op<"offload", [Trl_Differentiable, Pure]> {
  let summary = "copies a device tensor to host memory";
  let description = [{
    The result carries the `#trl.space<host>` encoding. The copy runs on the
    copy stream after the tensor's last forward use.

    ```mlir
    %h = trl.offload %x : (tensor<2x16x64xf32>) -> tensor<2x16x64xf32, #trl.space<host>>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$x);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$x attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops() { return 0; } }];
}

def Trl_ReloadOp : Trl_Op<"reload", [Trl_Differentiable, Pure]> {
  let summary = "copies a host tensor back to device memory";
  let description = [{
    ```mlir
    %x = trl.reload %h : (tensor<2x16x64xf32, #trl.space<host>>) -> tensor<2x16x64xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$x);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$x attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops() { return 0; } }];
}

def Trl_RecomputeOp : Trl_Op<"recompute", [IsolatedFromAbove]> {
  let summary = "a region re-executed in the backward pass instead of saving its results";
  let description = [{
    The block's arguments are the region's inputs; `trl.yield` gives the
    recomputed values.

    ```mlir
    %y = trl.recompute %x, %w : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32> {
    ^bb0(%a: tensor<4x8xf32>, %b: tensor<8xf32>):
      %n = trl.rms_norm %a, %b : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
      trl.yield %n : tensor<4x8xf32>
    }
    ```
  }];
  let arguments = (ins Variadic<AnyType>:$inputs);
  let results = (outs Variadic<AnyType>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $inputs attr-dict `:` functional-type($inputs, $results) $body
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops(); }];
}

def Trl_YieldOp : Trl_Op<"yield", [Pure, Terminator, HasParent<"RecomputeOp">]> {
  let summary = "returns values from a trl.recompute region";
  let description = [{
    ```mlir
    trl.yield %n : tensor<4x8xf32>
    ```
  }];
  let arguments = (ins Variadic<AnyType>:$values);
  let assemblyFormat = "($values^ `:` type($values))? attr-dict";
  let extraClassDeclaration = [{ int64_t getFlops() { return 0; } }];
}

//===----------------------------------------------------------------------===//
// Collectives
//===----------------------------------------------------------------------===//

def Trl_AllGatherOp : Trl_Op<"all_gather", [Trl_Differentiable, Pure]> {
  let summary = "concatenates every rank's shard along dimension 0";
  let description = [{
    ```mlir
    %full = trl.all_gather %shard {world_size = 4 : i64} : (tensor<16x64xf32>) -> tensor<64x64xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$x, I64Attr:$world_size);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$x attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops() { return 0; } }];
}

def Trl_ReduceScatterOp : Trl_Op<"reduce_scatter", [Trl_Differentiable, Pure]> {
  let summary = "reduces over ranks and keeps this rank's slice of dimension 0";
  let description = [{
    ```mlir
    %g = trl.reduce_scatter %full {world_size = 4 : i64, reduce = #trl.reduce<avg>} : (tensor<64x64xf32>) -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$x, I64Attr:$world_size,
                   DefaultValuedAttr<Trl_ReduceKindAttr,
                     "::mlir::trl::ReduceKind::sum">:$reduce);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$x attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Trl_AllReduceOp : Trl_Op<"all_reduce", [Trl_Differentiable, Pure, SameOperandsAndResultType]> {
  let summary = "reduces a tensor over all ranks";
  let description = [{
    ```mlir
    %s = trl.all_reduce %x {world_size = 2 : i64, reduce = #trl.reduce<sum>} : tensor<f32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F16, BF16, F32, F64, I64]>:$x,
                   I64Attr:$world_size,
                   DefaultValuedAttr<Trl_ReduceKindAttr,
                     "::mlir::trl::ReduceKind::sum">:$reduce);
  let results = (outs RankedTensorOf<[F16, BF16, F32, F64, I64]>:$result);
  let assemblyFormat = "$x attr-dict `:` type($x)";
  let hasVerifier = 1;
}

def Trl_BroadcastOp : Trl_Op<"broadcast", [Pure, SameOperandsAndResultType]> {
  let summary = "copies rank `root`'s tensor to every rank";
  let description = [{
    ```mlir
    %p = trl.broadcast %x {world_size = 2 : i64, root = 0 : i64} : tensor<64xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$x, I64Attr:$world_size,
                   DefaultValuedAttr<I64Attr, "0">:$root);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$x attr-dict `:` type($x)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops() { return 0; } }];
}

def Trl_FlatViewOp : Trl_Op<"flat_view", [Pure]> {
  let summary = "a tensor stored inside a flat buffer at an element offset (a view)";
  let description = [{
    ZeRO keeps the parameters of a layer in one flat buffer; after
    `trl.all_gather` each parameter is a view into the gathered buffer. No
    bytes move: the result shares the source's memory.

    ```mlir
    %w = trl.flat_view %full {offset = 4096 : i64} : (tensor<16384xf32>) -> tensor<64x64xf32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$x, I64Attr:$offset);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$x attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops() { return 0; } }];
}

def Trl_PackFlatOp : Trl_Op<"pack_flat", [Pure]> {
  let summary = "copies tensors one after another into a flat buffer, zero-padded";
  let description = [{
    The gradients of a ZeRO group in the layout of its flat parameter
    buffer: input i at element `offsets[i]`, zeros elsewhere (the gaps that
    align each member to 64 bytes and the padding to a multiple of the
    world size for `trl.reduce_scatter`).

    ```mlir
    %flat = trl.pack_flat %g0, %g1 {offsets = array<i64: 0, 4096>} : (tensor<64x64xf32>, tensor<64xf32>) -> tensor<4162xf32>
    ```
  }];
  let arguments = (ins Variadic<Trl_FloatTensor>:$inputs, DenseI64ArrayAttr:$offsets);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$inputs attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ int64_t getFlops() { return 0; } }];
}

def Trl_SqrtOp : Trl_Op<"sqrt", [Pure, SameOperandsAndResultType]> {
  let summary = "elementwise square root";
  let description = [{
    ```mlir
    %n = trl.sqrt %sum : tensor<f32>
    ```
  }];
  let arguments = (ins Trl_FloatTensor:$x);
  let results = (outs Trl_FloatTensor:$result);
  let assemblyFormat = "$x attr-dict `:` type($x)";
}

#endif // TRL_OPS_TD
