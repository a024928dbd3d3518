//===- Passes.td - trl passes ---------------------------------*- tablegen -*-===//

#ifndef TRL_PASSES_TD
#define TRL_PASSES_TD

include "mlir/Pass/PassBase.td"

def TrlTruncationBounds : Pass<"trl-truncation-bounds", "ModuleOp"> {
  let summary = "every sequence dimension has a static bound that the data fits";
  let description = [{
    Checks that every tensor is statically shaped, that every batch argument
    with a sequence dimension carries `trl.seq_bound` (the bound and its
    source: the recipe's max_length, or the data plan's longest row when the
    compiler tightened it), and that the data plan's longest row
    (the larger of `data-max` and the module's `trl.data` max_length) fits it. Records
    the step's bound as the module attribute `trl.sequence_bound`.
  }];
  let dependentDialects = ["::mlir::trl::TrlDialect"];
  let options = [
    Option<"dataMax", "data-max", "int64_t", "0",
           "the data plan's longest row (the larger of this and the module's trl.data max_length)">,
  ];
}

def TrlLora : Pass<"trl-lora", "ModuleOp"> {
  let summary = "LoRA adapters (PEFT): frozen base weights, trained low-rank updates";
  let description = [{
    Every `trl.linear` of every program whose weight is a policy parameter
    named `<module>.<target>.weight`, for a target of `targets`, becomes
    base + B(scale * A(x)): new trainable parameters
    `<module>.<target>.lora_A.weight` [r, in] and `lora_B.weight` [out, r]
    (PEFT's layout), scale `alpha` / r (`alpha` / sqrt(r) with `rslora`).
    Every other policy parameter, but those of the `save` modules (a
    component of their name), is then frozen (no gradient, no optimizer
    state; trl-mixed-precision stores it in bf16), and the frozen
    reference's parameters are replaced by the policy's frozen ones of the
    same name: the reference is the base model with the adapters off, as
    TRL's with PEFT, and holds no copy. Fails when a target names no linear.

    With `dropout` > 0, the adapters of `@train_step` read
    `trl.dropout(x)` (PEFT's lora_dropout), one `stream` per adapter, all
    seeded by a new 0-d i64 batch input `dropout_seed`; the other programs
    (generation, reference and old log-probabilities) run without it, as
    PEFT's modules in eval mode. Parameters whose names start with a `keep`
    prefix (PPO's `value_model.`) are neither adapted nor frozen.
  }];
  let dependentDialects = ["::mlir::trl::TrlDialect"];
  let options = [
    Option<"targets", "targets", "std::string", "\"\"",
           "comma-separated module names (q_proj,v_proj, ...)">,
    Option<"rank", "rank", "int64_t", "8", "the adapters' rank r">,
    Option<"alpha", "alpha", "double", "8.0", "lora_alpha">,
    Option<"rslora", "rslora", "bool", "false", "scale alpha / sqrt(r) (rank-stabilised LoRA)">,
    Option<"save", "save", "std::string", "\"\"",
           "comma-separated modules trained whole (modules_to_save: embed_tokens, lm_head, ...)">,
    Option<"dropout", "dropout", "double", "0.0", "lora_dropout: dropout on the adapters' input in @train_step">,
    Option<"keep", "keep", "std::string", "\"\"",
           "comma-separated parameter-name prefixes left alone (trained whole, no adapters)">,
  ];
}

def TrlPackingLayout : Pass<"trl-packing-layout", "ModuleOp"> {
  let summary = "packed rows: padded attention becomes block-diagonal varlen attention";
  let description = [{
    For packed or padding-free data (several documents per row). Every
    padded `trl.attention` of `@train_step` becomes varlen attention over
    the B*S tokens flattened, delimited by a new `cu_seqlens` input
    (`trl.input = "cu_seqlens"`, B*S+1 int32 offsets; the padding at the end
    of a row is a document of its own). Token-wise ops keep their [B, S]
    shapes; position ids restart per document in the data. Runs before
    trl-autodiff, whose VJP gives the varlen backward.
  }];
  let dependentDialects = ["::mlir::trl::TrlDialect"];
}

def TrlFuseLoss : Pass<"trl-fuse-loss", "ModuleOp"> {
  let summary = "lm_head + cross entropy / log-probs as one chunked op (no [T, V] logits)";
  let description = [{
    Rewrites `trl.cross_entropy` and `trl.log_probs` of a bias-free
    `trl.linear` whose logits nothing else reads into
    `trl.fused_linear_cross_entropy` / `trl.fused_linear_log_probs`, which
    compute (and differentiate) `chunk_size` rows at a time. The chunk size
    is `chunk-size`, or Liger-Kernel's rule when 0:
    next_power_of_2(ceil(T / ceil(V / H))) for T rows, vocabulary V and
    hidden size H. Logits that are also a program output (`@predict`) stay.
  }];
  let dependentDialects = ["::mlir::trl::TrlDialect"];
  let options = [
    Option<"chunkSize", "chunk-size", "int64_t", "0",
           "rows per chunk (0: Liger's rule)">,
  ];
}

def TrlAutodiff : Pass<"trl-autodiff", "ModuleOp"> {
  let summary = "reverse-mode differentiation of @train_step";
  let description = [{
    Walks `@train_step` backwards from its loss through the VJP op
    interface and returns, after the loss, the gradient of every trainable
    `trl.param` (result attribute `trl.grad = NAME`). Only values that
    depend on a trainable parameter are differentiated, so the frozen
    reference model of DPO/KTO/GRPO gets no backward pass. A parameter read
    twice (tied embeddings) gets the sum of both cotangents.
  }];
  let dependentDialects = ["::mlir::trl::TrlDialect"];
}

def TrlMixedPrecision : Pass<"trl-mixed-precision", "ModuleOp"> {
  let summary = "bf16 storage of the forward's activations; f32 master weights, gradients and state";
  let description = [{
    Runs after trl-autodiff on `@train_step` (`[model] dtype = "bf16"`),
    and on every function marked `trl.step_forward` (a forward pass that
    must compute as the step does: RLOO's old log-probabilities).
    The forward's results of trl.linear, trl.rms_norm, trl.layer_norm,
    trl.rope, trl.attention (its output, not the log-sum-exp), trl.swiglu
    and trl.gelu, and their reshapes and splits, are retyped to bf16: the
    values the matrix products read and the backward keeps, as autocast
    stores them. Ops keep computing in f32 (they widen bf16 operands and
    round bf16 results). A value stays f32 when a value that must share its
    element type is not such a result: the linear outputs a residual
    trl.add reads (the residual stream stays f32) and function results.
    Parameters, gradients, optimizer state and losses are never touched.
    Records `trl.bf16_values` (values retyped) and `trl.bf16_bytes_saved`
    on the function.
  }];
  let dependentDialects = ["::mlir::trl::TrlDialect"];
}

def TrlOffloadRemat : Pass<"trl-offload-remat", "ModuleOp"> {
  let summary = "keep, recompute or offload each activation the backward pass reads";
  let description = [{
    Runs after trl-autodiff on `@train_step`. With `layers` (Hugging Face
    gradient checkpointing), each decoder layer (ops tagged `trl.layer` by
    the model builder, and untagged ops whose operands come from one
    layer, such as trl-lora's adapters) keeps only its input and output:
    its whole forward, products included, is cloned (`trl.recomputed`)
    before the first backward use of anything else it saved, so the
    gradients are those of the run without it, bit for bit
    (`trl.recomputed_layers`). With `recompute`, a saved
    activation made by a cheap op (rms_norm, layer_norm, rope, swiglu, gelu,
    add) whose operands the backward keeps anyway is recomputed by a clone
    of that op (`trl.recomputed`) before its first backward use. With
    `offload`, every other saved activation of at least `min-bytes` bytes is
    copied to host memory (`trl.offload`) after its last forward use and
    back (`trl.reload`) before its first backward use, as TRL's
    activation offloading does; parameters, inputs and the output head's
    activations stay on the device. With `max-cost`, a cost model prices
    each saved activation's two options on the backend `profile`
    (recomputation: the op's FLOPs at peak plus a launch; offload: two
    copies over the host link, each with its latency) and takes the cheaper
    one when it costs at most `max-cost` seconds per byte freed; the
    compiler searches that bound for the cheapest schedule under
    `[memory] budget`. The counts and the estimated time added per step
    are recorded on the function (`trl.recomputed_values`,
    `trl.offloaded_values`, `trl.remat_overhead_s`).
  }];
  let dependentDialects = ["::mlir::trl::TrlDialect"];
  let options = [
    Option<"offload", "offload", "bool", "false", "offload saved activations to host memory">,
    Option<"layers", "layers", "bool", "false",
           "recompute whole decoder layers in the backward, keeping each layer's input (Hugging Face gradient checkpointing)">,
    Option<"recompute", "recompute", "bool", "false", "recompute cheap saved activations">,
    Option<"minBytes", "min-bytes", "int64_t", "1024", "smallest activation worth offloading">,
    Option<"maxCost", "max-cost", "double", "-1",
           "cost model: take the cheaper decision for every activation whose cost is at most this many seconds per byte freed (-1: off)">,
    Option<"profile", "profile", "std::string", "\"cpu\"",
           "backend profile pricing decisions: cpu | cuda (peak FLOP/s, host link bytes/s, copy latency)">,
  ];
}

def TrlOptimizer : Pass<"trl-optimizer", "ModuleOp"> {
  let summary = "gradient accumulation, clipping, LR schedule and AdamW";
  let description = [{
    Turns the gradients of `@train_step` into accumulators (arguments and
    results with `trl.state = "grad:NAME"`, summed every micro-batch; a
    weight gradient of `trl.linear_grad` that feeds nothing else is summed
    by the product itself, `accumulate %acc`) and
    adds `@optimizer_step(%step)`: the global gradient norm, the
    learning-rate schedule and one AdamW update per trainable parameter,
    which clips its gradient by that norm itself (`clip %norm`: no clipped
    copy of any gradient is held), returning the new parameters and moments
    as `trl.state` results and cleared accumulators.
    Weight decay applies to matrices only (not to biases and norm weights),
    as the Hugging Face Trainer does.
  }];
  let dependentDialects = ["::mlir::trl::TrlDialect"];
  let options = [
    Option<"maxGradNorm", "max-grad-norm", "double", "1.0",
           "clip the global gradient norm to this (0 disables clipping)">,
    Option<"learningRate", "learning-rate", "double", "2e-5", "peak learning rate">,
    Option<"schedule", "schedule", "std::string", "\"linear\"",
           "constant | linear | cosine">,
    Option<"warmupSteps", "warmup-steps", "int64_t", "0", "linear warm-up steps">,
    Option<"totalSteps", "total-steps", "int64_t", "1", "optimizer steps of the run">,
    Option<"beta1", "beta1", "double", "0.9", "AdamW beta1">,
    Option<"beta2", "beta2", "double", "0.999", "AdamW beta2">,
    Option<"epsilon", "epsilon", "double", "1e-8", "AdamW epsilon">,
    Option<"weightDecay", "weight-decay", "double", "0.0", "decoupled weight decay">,
  ];
}

def TrlZero3Shard : Pass<"trl-zero3-shard", "ModuleOp"> {
  let summary = "ZeRO-3: parameters, gradients and AdamW state sharded over the ranks";
  let description = [{
    Runs after `trl-optimizer`. The trainable parameters are grouped per
    layer (the name up to its layer index; outside the layers, per module),
    matrices and vectors apart (only matrices are decayed), and each group
    is flattened into one buffer padded to a multiple of `world-size` and
    split evenly: rank r keeps elements [r*S, (r+1)*S) as the persistent
    `trl.param "zero3:GROUP"` (and `grad:` / `exp_avg:` / `exp_avg_sq:`
    states of the same shape). In every function that reads them,
    `trl.all_gather` rebuilds a group's buffer before its first forward use
    and again before its first backward use (the parameters are
    `trl.flat_view`s into it), so the memory planner frees it after the
    phase's last use. With `prefetch`, the gather of the next group is
    issued before the current group's first use (it overlaps that group's
    compute). Each micro-batch's gradients of a group are packed
    (`trl.pack_flat`), reduced with `trl.reduce_scatter` and added to the
    shard accumulator. `@optimizer_step` clips by the global norm (squares
    summed with `trl.all_reduce`) and runs AdamW on the shards. The layout
    is recorded in the module attribute `trl.zero` for the runtime (loading,
    checkpoints, the consolidated model). Stage 0 leaves the module as it
    is (the runtime all-reduces gradients); stages 1 and 2 are not
    implemented.

    Generation's programs (`trl.generation`: @prefill, @decode) are
    rewritten by `gather-for-generation` (GRPO's
    `ds3_gather_for_generation`). True: a new program `@gather_model`
    gathers every group they read once, into state `gathered:GROUP` (the
    lowering places it beside the KV cache, in the activation region), and
    they read their parameters as views of it: no collective per token,
    the whole model in memory while generating. False: they gather like
    the step, one group before its first use, so every decoding step moves
    the whole model and only a layer or two is gathered at a time.
  }];
  let dependentDialects = ["::mlir::trl::TrlDialect"];
  let options = [
    Option<"worldSize", "world-size", "int64_t", "1", "data-parallel ranks">,
    Option<"stage", "stage", "int64_t", "3", "ZeRO stage (0 or 3)">,
    Option<"prefetch", "prefetch", "bool", "true",
           "gather the next group while the current one computes">,
    Option<"gatherForGeneration", "gather-for-generation", "bool", "true",
           "generation reads the model gathered once by @gather_model">,
  ];
}

def TrlPlanMemory : Pass<"trl-plan-memory", "ModuleOp"> {
  let summary = "liveness over the final schedule: in-place updates and every buffer's offset";
  let description = [{
    The last pass. For every function: results returned as persistent state
    are written in place when the op allows it and nothing later reads the
    old state (`trl.in_place`); fills returned only into states need no
    buffer (`trl.no_buffer`); reshapes share their source's buffer; every
    other value is an activation live from its definition (inputs: the
    start) to its last use (returned values: the end), placed largest first
    at the lowest `alignment`-aligned offset free for its whole lifetime,
    device and host (#trl.space<host>) values in separate regions. Records
    `trl.offsets` per op, `trl.offset` per input argument and
    `trl.activation_bytes` / `trl.host_bytes` per function; lowering builds
    the plan from exactly these.
  }];
  let dependentDialects = ["::mlir::trl::TrlDialect"];
  let options = [
    Option<"alignment", "alignment", "int64_t", "64", "buffer alignment in bytes (per backend)">,
  ];
}

#endif // TRL_PASSES_TD
