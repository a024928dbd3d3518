// RUN: trl-opt %s -split-input-file -verify-diagnostics
// One case per verifier rule of the trl dialect.

func.func @param_no_name() {
  // expected-error @+1 {{needs the parameter's checkpoint name}}
  %w = trl.param "" : tensor<4xf32>
  return
}

// -----

func.func @param_bad_set() {
  // expected-error @+1 {{expects set "policy", "reference" or "reward_model_K", got "ema"}}
  %w = trl.param "w" {set = "ema"} : tensor<4xf32>
  return
}

// -----

func.func @param_reference_trainable() {
  // expected-error @+1 {{reference and reward-model parameters are frozen}}
  %w = trl.param "w" {set = "reference"} : tensor<4xf32>
  return
}

// -----

func.func @param_dynamic() {
  // expected-error @+1 {{expects a statically shaped parameter}}
  %w = trl.param "w" : tensor<?xf32>
  return
}

// -----

func.func @embedding_table_rank(%t: tensor<8xf32>, %ids: tensor<2x4xi64>) {
  // expected-error @+1 {{expects a [vocab, hidden] table, got [8]}}
  %h = trl.embedding %t, %ids : (tensor<8xf32>, tensor<2x4xi64>) -> tensor<2x4x8xf32>
  return
}

// -----

func.func @embedding_result_shape(%t: tensor<8x16xf32>, %ids: tensor<2x4xi64>) {
  // expected-error @+1 {{expects result of shape [2, 4, 16], got [2, 4, 8]}}
  %h = trl.embedding %t, %ids : (tensor<8x16xf32>, tensor<2x4xi64>) -> tensor<2x4x8xf32>
  return
}

// -----

func.func @rms_norm_weight(%x: tensor<2x8xf32>, %w: tensor<4xf32>) {
  // expected-error @+1 {{expects weight of shape [8], got [4]}}
  %y = trl.rms_norm %x, %w : (tensor<2x8xf32>, tensor<4xf32>) -> tensor<2x8xf32>
  return
}

// -----

// bf16 mixes with f32 (storage precision); other element types do not.
func.func @rms_norm_dtype(%x: tensor<2x8xf32>, %w: tensor<8xf64>) {
  // expected-error @+1 {{expects weight to have element type 'f32' like x, got 'f64'}}
  %y = trl.rms_norm %x, %w : (tensor<2x8xf32>, tensor<8xf64>) -> tensor<2x8xf32>
  return
}

// -----

func.func @rms_norm_eps(%x: tensor<2x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{expects eps > 0, got 0}}
  %y = trl.rms_norm %x, %w {eps = 0.0 : f64} : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  return
}

// -----

func.func @layer_norm_bias(%x: tensor<2x8xf32>, %w: tensor<8xf32>, %b: tensor<7xf32>) {
  // expected-error @+1 {{expects bias of shape [8], got [7]}}
  %y = trl.layer_norm %x, %w, %b : (tensor<2x8xf32>, tensor<8xf32>, tensor<7xf32>) -> tensor<2x8xf32>
  return
}

// -----

func.func @linear_in_features(%x: tensor<2x8xf32>, %w: tensor<4x6xf32>) {
  // expected-error @+1 {{expects the input's last dimension to equal the weight's in features (6), got input [2, 8]}}
  %y = trl.linear %x, %w : (tensor<2x8xf32>, tensor<4x6xf32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @linear_out(%x: tensor<2x8xf32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{expects output of shape [2, 4], got [2, 8]}}
  %y = trl.linear %x, %w : (tensor<2x8xf32>, tensor<4x8xf32>) -> tensor<2x8xf32>
  return
}

// -----

func.func @linear_weight_rank(%x: tensor<2x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{expects a weight of shape [out, in], got [8]}}
  %y = trl.linear %x, %w : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  return
}

// -----

func.func @linear_bias(%x: tensor<2x8xf32>, %w: tensor<4x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{expects bias of shape [4], got [8]}}
  %y = trl.linear %x, %w bias %b : (tensor<2x8xf32>, tensor<4x8xf32>, tensor<8xf32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @reshape_count(%x: tensor<2x8xf32>) {
  // expected-error @+1 {{cannot reshape 'tensor<2x8xf32>' into 'tensor<3x5xf32>'}}
  %y = trl.reshape %x : (tensor<2x8xf32>) -> tensor<3x5xf32>
  return
}

// -----

func.func @reshape_dynamic(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{expects static shapes}}
  %y = trl.reshape %x : (tensor<?x8xf32>) -> tensor<16xf32>
  return
}

// -----

func.func @split_unequal(%x: tensor<2x8xf32>) {
  // expected-error @+1 {{splits into equal parts}}
  %a:2 = trl.split %x {axis = 1 : i64} : (tensor<2x8xf32>) -> (tensor<2x3xf32>, tensor<2x5xf32>)
  return
}

// -----

func.func @split_total(%x: tensor<2x8xf32>) {
  // expected-error @+1 {{parts add up to 6 along axis 1, expected 8}}
  %a:2 = trl.split %x {axis = 1 : i64} : (tensor<2x8xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>)
  return
}

// -----

func.func @split_axis(%x: tensor<2x8xf32>) {
  // expected-error @+1 {{expects 0 <= axis < 2, got 2}}
  %a:2 = trl.split %x {axis = 2 : i64} : (tensor<2x8xf32>) -> (tensor<2x4xf32>, tensor<2x4xf32>)
  return
}

// -----

func.func @concat_other_dims(%a: tensor<2x4xf32>, %b: tensor<3x4xf32>) {
  // expected-error @+1 {{parts must match [2, 8] outside axis 1, got [3, 4]}}
  %c = trl.concat %a, %b {axis = 1 : i64} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x8xf32>
  return
}

// -----

func.func @concat_dtype(%a: tensor<2x4xf32>, %b: tensor<2x4xbf16>) {
  // expected-error @+1 {{expects every part to have rank 2 and element type 'f32', got 'tensor<2x4xbf16>'}}
  %c = trl.concat %a, %b {axis = 1 : i64} : (tensor<2x4xf32>, tensor<2x4xbf16>) -> tensor<2x8xf32>
  return
}

// -----

func.func @rope_rank(%x: tensor<2x8xf32>, %p: tensor<2xi64>) {
  // expected-error @+1 {{expects x as [batch, seq, heads, head_dim] or [tokens, heads, head_dim], got [2, 8]}}
  %y = trl.rope %x, %p : (tensor<2x8xf32>, tensor<2xi64>) -> tensor<2x8xf32>
  return
}

// -----

func.func @rope_positions(%x: tensor<2x4x2x8xf32>, %p: tensor<2x5xi64>) {
  // expected-error @+1 {{expects positions of shape [2, 4], got [2, 5]}}
  %y = trl.rope %x, %p : (tensor<2x4x2x8xf32>, tensor<2x5xi64>) -> tensor<2x4x2x8xf32>
  return
}

// -----

func.func @rope_odd_head_dim(%x: tensor<6x2x7xf32>, %p: tensor<6xi64>) {
  // expected-error @+1 {{expects an even head_dim, got 7}}
  %y = trl.rope %x, %p : (tensor<6x2x7xf32>, tensor<6xi64>) -> tensor<6x2x7xf32>
  return
}

// -----

func.func @rope_theta(%x: tensor<6x2x8xf32>, %p: tensor<6xi64>) {
  // expected-error @+1 {{expects theta > 0, got -1}}
  %y = trl.rope %x, %p {theta = -1.0 : f64} : (tensor<6x2x8xf32>, tensor<6xi64>) -> tensor<6x2x8xf32>
  return
}

// -----

func.func @rope_scaling(%x: tensor<6x2x8xf32>, %p: tensor<6xi64>) {
  // expected-error @+1 {{rope_scaling needs 0 < low_freq_factor < high_freq_factor}}
  %y = trl.rope %x, %p {scaling = #trl.rope_scaling<factor = 8.0 : f64, low_freq_factor = 4.0 : f64, high_freq_factor = 1.0 : f64, original_max_position_embeddings = 8192>} : (tensor<6x2x8xf32>, tensor<6xi64>) -> tensor<6x2x8xf32>
  return
}

// -----

func.func @attention_heads(%q: tensor<2x4x6x8xf32>, %k: tensor<2x4x4x8xf32>) {
  // expected-error @+1 {{expects the query heads (6) to be a multiple of the key/value heads (4)}}
  %o, %l = trl.attention %q, %k, %k {layout = #trl.layout<padded>, scale = 0.25 : f64} : (tensor<2x4x6x8xf32>, tensor<2x4x4x8xf32>, tensor<2x4x4x8xf32>) -> (tensor<2x4x6x8xf32>, tensor<2x6x4xf32>)
  return
}

// -----

func.func @attention_head_dim(%q: tensor<2x4x4x8xf32>, %k: tensor<2x4x2x16xf32>) {
  // expected-error @+1 {{expects q and k with the same head_dim, got 8 and 16}}
  %o, %l = trl.attention %q, %k, %k {layout = #trl.layout<padded>, scale = 0.25 : f64} : (tensor<2x4x4x8xf32>, tensor<2x4x2x16xf32>, tensor<2x4x2x16xf32>) -> (tensor<2x4x4x8xf32>, tensor<2x4x4xf32>)
  return
}

// -----

func.func @attention_kv_shapes(%q: tensor<2x4x4x8xf32>, %k: tensor<2x4x2x8xf32>, %v: tensor<2x4x1x8xf32>) {
  // expected-error @+1 {{expects k and v of the same shape, got [2, 4, 2, 8] and [2, 4, 1, 8]}}
  %o, %l = trl.attention %q, %k, %v {layout = #trl.layout<padded>, scale = 0.25 : f64} : (tensor<2x4x4x8xf32>, tensor<2x4x2x8xf32>, tensor<2x4x1x8xf32>) -> (tensor<2x4x4x8xf32>, tensor<2x4x4xf32>)
  return
}

// -----

func.func @attention_layout_rank(%q: tensor<8x4x8xf32>, %k: tensor<8x2x8xf32>) {
  // expected-error @+1 {{with the padded layout expects q, k, v as [batch, seq, heads, head_dim], got q [8, 4, 8] and k [8, 2, 8]}}
  %o, %l = trl.attention %q, %k, %k {layout = #trl.layout<padded>, scale = 0.25 : f64} : (tensor<8x4x8xf32>, tensor<8x2x8xf32>, tensor<8x2x8xf32>) -> (tensor<8x4x8xf32>, tensor<4x8xf32>)
  return
}

// -----

func.func @attention_batch(%q: tensor<2x4x4x8xf32>, %k: tensor<2x5x2x8xf32>) {
  // expected-error @+1 {{expects q and k to agree on batch and sequence, got [2, 4, 4, 8] and [2, 5, 2, 8]}}
  %o, %l = trl.attention %q, %k, %k {layout = #trl.layout<padded>, scale = 0.25 : f64} : (tensor<2x4x4x8xf32>, tensor<2x5x2x8xf32>, tensor<2x5x2x8xf32>) -> (tensor<2x4x4x8xf32>, tensor<2x4x4xf32>)
  return
}

// -----

func.func @attention_mask_shape(%q: tensor<2x4x4x8xf32>, %k: tensor<2x4x2x8xf32>, %m: tensor<2x5xi64>) {
  // expected-error @+1 {{expects mask of shape [2, 4], got [2, 5]}}
  %o, %l = trl.attention %q, %k, %k mask %m {layout = #trl.layout<padded>, scale = 0.25 : f64} : (tensor<2x4x4x8xf32>, tensor<2x4x2x8xf32>, tensor<2x4x2x8xf32>, tensor<2x5xi64>) -> (tensor<2x4x4x8xf32>, tensor<2x4x4xf32>)
  return
}

// -----

func.func @attention_padded_cu_seqlens(%q: tensor<2x4x4x8xf32>, %k: tensor<2x4x2x8xf32>, %cu: tensor<3xi32>) {
  // expected-error @+1 {{the padded layout takes no cu_seqlens (use layout varlen)}}
  %o, %l = trl.attention %q, %k, %k cu_seqlens %cu {layout = #trl.layout<padded>, scale = 0.25 : f64} : (tensor<2x4x4x8xf32>, tensor<2x4x2x8xf32>, tensor<2x4x2x8xf32>, tensor<3xi32>) -> (tensor<2x4x4x8xf32>, tensor<2x4x4xf32>)
  return
}

// -----

func.func @attention_lse(%q: tensor<2x4x4x8xf32>, %k: tensor<2x4x2x8xf32>) {
  // expected-error @+1 {{expects lse of shape [2, 4, 4], got [2, 4, 8]}}
  %o, %l = trl.attention %q, %k, %k {layout = #trl.layout<padded>, scale = 0.25 : f64} : (tensor<2x4x4x8xf32>, tensor<2x4x2x8xf32>, tensor<2x4x2x8xf32>) -> (tensor<2x4x4x8xf32>, tensor<2x4x8xf32>)
  return
}

// -----

func.func @attention_scale(%q: tensor<2x4x4x8xf32>, %k: tensor<2x4x2x8xf32>) {
  // expected-error @+1 {{expects scale > 0, got 0}}
  %o, %l = trl.attention %q, %k, %k {layout = #trl.layout<padded>, scale = 0.0 : f64} : (tensor<2x4x4x8xf32>, tensor<2x4x2x8xf32>, tensor<2x4x2x8xf32>) -> (tensor<2x4x4x8xf32>, tensor<2x4x4xf32>)
  return
}

// -----

func.func @attention_varlen_needs_cu(%q: tensor<8x4x8xf32>, %k: tensor<8x2x8xf32>) {
  // expected-error @+1 {{the varlen layout needs cu_seqlens delimiting the documents}}
  %o, %l = trl.attention %q, %k, %k {layout = #trl.layout<varlen>, scale = 0.25 : f64} : (tensor<8x4x8xf32>, tensor<8x2x8xf32>, tensor<8x2x8xf32>) -> (tensor<8x4x8xf32>, tensor<4x8xf32>)
  return
}

// -----

func.func @attention_varlen_mask(%q: tensor<8x4x8xf32>, %k: tensor<8x2x8xf32>, %m: tensor<8xi64>, %cu: tensor<3xi32>) {
  // expected-error @+1 {{the varlen layout takes no mask: documents are delimited by cu_seqlens}}
  %o, %l = trl.attention %q, %k, %k mask %m cu_seqlens %cu {layout = #trl.layout<varlen>, scale = 0.25 : f64} : (tensor<8x4x8xf32>, tensor<8x2x8xf32>, tensor<8x2x8xf32>, tensor<8xi64>, tensor<3xi32>) -> (tensor<8x4x8xf32>, tensor<4x8xf32>)
  return
}

// -----

func.func @attention_varlen_cu_size(%q: tensor<8x4x8xf32>, %k: tensor<8x2x8xf32>, %cu: tensor<1xi32>) {
  // expected-error @+1 {{expects cu_seqlens with at least 2 entries}}
  %o, %l = trl.attention %q, %k, %k cu_seqlens %cu {layout = #trl.layout<varlen>, scale = 0.25 : f64} : (tensor<8x4x8xf32>, tensor<8x2x8xf32>, tensor<8x2x8xf32>, tensor<1xi32>) -> (tensor<8x4x8xf32>, tensor<4x8xf32>)
  return
}

// -----

func.func @attention_varlen_max_seqlen(%q: tensor<8x4x8xf32>, %k: tensor<8x2x8xf32>, %cu: tensor<3xi32>) {
  // expected-error @+1 {{expects 0 < max_seqlen <= tokens (8), got 9}}
  %o, %l = trl.attention %q, %k, %k cu_seqlens %cu {layout = #trl.layout<varlen>, scale = 0.25 : f64, max_seqlen = 9 : i64} : (tensor<8x4x8xf32>, tensor<8x2x8xf32>, tensor<8x2x8xf32>, tensor<3xi32>) -> (tensor<8x4x8xf32>, tensor<4x8xf32>)
  return
}

// -----

func.func @attention_output(%q: tensor<8x4x8xf32>, %k: tensor<8x2x8xf32>, %cu: tensor<3xi32>) {
  // expected-error @+1 {{expects output of type 'tensor<8x4x8xf32>', got 'tensor<8x2x8xf32>'}}
  %o, %l = trl.attention %q, %k, %k cu_seqlens %cu {layout = #trl.layout<varlen>, scale = 0.25 : f64} : (tensor<8x4x8xf32>, tensor<8x2x8xf32>, tensor<8x2x8xf32>, tensor<3xi32>) -> (tensor<8x2x8xf32>, tensor<4x8xf32>)
  return
}

// -----

func.func @swiglu_types(%g: tensor<2x8xf32>, %u: tensor<2x4xf32>) {
  // expected-error @+1 {{expects up of type 'tensor<2x8xf32>', got 'tensor<2x4xf32>'}}
  %y = trl.swiglu %g, %u : (tensor<2x8xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
  return
}

// -----

func.func @div_result(%x: tensor<4xf32>, %d: tensor<f32>) {
  // expected-error @+1 {{expects result of type 'tensor<4xf32>', got 'tensor<f32>'}}
  %y = trl.div %x, %d : (tensor<4xf32>, tensor<f32>) -> tensor<f32>
  return
}

// -----

func.func @cross_entropy_labels(%l: tensor<2x4x16xf32>, %y: tensor<2x5xi64>) {
  // expected-error @+1 {{expects labels of shape [2, 4], got [2, 5]}}
  %s = trl.cross_entropy %l, %y : (tensor<2x4x16xf32>, tensor<2x5xi64>) -> tensor<f32>
  return
}

// -----

func.func @cross_entropy_rank(%l: tensor<16xf32>, %y: tensor<i64>) {
  // expected-error @+1 {{expects logits of rank >= 2, got [16]}}
  %s = trl.cross_entropy %l, %y : (tensor<16xf32>, tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @flce_weight(%h: tensor<2x4x8xf32>, %w: tensor<16x6xf32>, %y: tensor<2x4xi64>) {
  // expected-error @+1 {{expects the lm_head weight as [vocab, 8], got [16, 6]}}
  %s = trl.fused_linear_cross_entropy %h, %w, %y {chunk_size = 4 : i64} : (tensor<2x4x8xf32>, tensor<16x6xf32>, tensor<2x4xi64>) -> tensor<f32>
  return
}

// -----

func.func @flce_chunk(%h: tensor<2x4x8xf32>, %w: tensor<16x8xf32>, %y: tensor<2x4xi64>) {
  // expected-error @+1 {{expects chunk_size > 0, got 0}}
  %s = trl.fused_linear_cross_entropy %h, %w, %y {chunk_size = 0 : i64} : (tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<2x4xi64>) -> tensor<f32>
  return
}

// -----

func.func @flce_hidden_rank(%h: tensor<8xf32>, %w: tensor<16x8xf32>, %y: tensor<i64>) {
  // expected-error @+1 {{expects hidden states of rank >= 2, got [8]}}
  %s = trl.fused_linear_cross_entropy %h, %w, %y {chunk_size = 4 : i64} : (tensor<8xf32>, tensor<16x8xf32>, tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @log_probs_result(%l: tensor<2x4x16xf32>, %y: tensor<2x4xi64>) {
  // expected-error @+1 {{expects result of shape [2, 4], got [2, 4, 16]}}
  %s = trl.log_probs %l, %y : (tensor<2x4x16xf32>, tensor<2x4xi64>) -> tensor<2x4x16xf32>
  return
}

// -----

func.func @fused_log_probs_result(%h: tensor<2x4x8xf32>, %w: tensor<16x8xf32>, %y: tensor<2x4xi64>) {
  // expected-error @+1 {{expects result of shape [2, 4], got [8]}}
  %s = trl.fused_linear_log_probs %h, %w, %y {chunk_size = 4 : i64} : (tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<2x4xi64>) -> tensor<8xf32>
  return
}

// -----

func.func @masked_sum_mask(%x: tensor<2x4xf32>, %m: tensor<2x5xf32>) {
  // expected-error @+1 {{expects x of the mask's shape [2, 5] or one shared row [1, .., 5], got [2, 4]}}
  %s = trl.masked_sum %x, %m : (tensor<2x4xf32>, tensor<2x5xf32>) -> tensor<2xf32>
  return
}

// -----

func.func @masked_sum_shared_rows(%x: tensor<2x5xf32>, %m: tensor<3x5xf32>) {
  // expected-error @+1 {{expects x of the mask's shape [3, 5] or one shared row [1, .., 5], got [2, 5]}}
  %s = trl.masked_sum %x, %m : (tensor<2x5xf32>, tensor<3x5xf32>) -> tensor<3xf32>
  return
}

// -----

func.func @masked_sum_result(%x: tensor<2x4xf32>, %m: tensor<2x4xf32>) {
  // expected-error @+1 {{expects result of shape [2], got [4]}}
  %s = trl.masked_sum %x, %m : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @dpo_pairs(%a: tensor<2xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{expects policy_rejected of type 'tensor<2xf32>', got 'tensor<3xf32>'}}
  %l, %c, %r = trl.dpo_loss %a, %b, %a, %a, %a : (tensor<2xf32>, tensor<3xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<f32>, tensor<2xf32>, tensor<2xf32>)
  return
}

// -----

func.func @dpo_weights(%a: tensor<2xf32>, %w: tensor<4xf32>) {
  // expected-error @+1 {{expects weights of type 'tensor<2xf32>', got 'tensor<4xf32>'}}
  %l, %c, %r = trl.dpo_loss %a, %a, %a, %a, %w : (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<4xf32>) -> (tensor<f32>, tensor<2xf32>, tensor<2xf32>)
  return
}

// -----

func.func @dpo_beta(%a: tensor<2xf32>) {
  // expected-error @+1 {{expects beta > 0, got 0}}
  %l, %c, %r = trl.dpo_loss %a, %a, %a, %a, %a {beta = 0.0 : f64} : (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<f32>, tensor<2xf32>, tensor<2xf32>)
  return
}

// -----

func.func @dpo_label_smoothing(%a: tensor<2xf32>) {
  // expected-error @+1 {{expects 0 <= label_smoothing <= 0.5 (< 0.5 for robust), got 0.7}}
  %l, %c, %r = trl.dpo_loss %a, %a, %a, %a, %a {label_smoothing = 0.7 : f64} : (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<f32>, tensor<2xf32>, tensor<2xf32>)
  return
}

// -----

func.func @dpo_robust_half(%a: tensor<2xf32>) {
  // expected-error @+1 {{expects 0 <= label_smoothing <= 0.5 (< 0.5 for robust), got 0.5}}
  %l, %c, %r = trl.dpo_loss %a, %a, %a, %a, %a {label_smoothing = 0.5 : f64, loss_type = #trl.dpo_loss<robust>} : (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<f32>, tensor<2xf32>, tensor<2xf32>)
  return
}

// -----

func.func @dpo_rpo(%a: tensor<2xf32>) {
  // expected-error @+1 {{takes an nll weight exactly when rpo_alpha > 0}}
  %l, %c, %r = trl.dpo_loss %a, %a, %a, %a, %a {rpo_alpha = 1.0 : f64} : (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<f32>, tensor<2xf32>, tensor<2xf32>)
  return
}

// -----

func.func @kto_label(%a: tensor<4xf32>, %lab: tensor<3xi1>, %k: tensor<f32>) {
  // expected-error @+1 {{expects label of shape [4], got [3]}}
  %l, %r, %kl = trl.kto_loss %a, %a, %lab, %a kl %k : (tensor<4xf32>, tensor<4xf32>, tensor<3xi1>, tensor<4xf32>, tensor<f32>) -> (tensor<f32>, tensor<4xf32>, tensor<f32>)
  return
}

// -----

func.func @kto_weights(%a: tensor<4xf32>, %lab: tensor<4xi1>, %k: tensor<f32>) {
  // expected-error @+1 {{expects non-negative desirable/undesirable weights}}
  %l, %r, %kl = trl.kto_loss %a, %a, %lab, %a kl %k {desirable_weight = -1.0 : f64} : (tensor<4xf32>, tensor<4xf32>, tensor<4xi1>, tensor<4xf32>, tensor<f32>) -> (tensor<f32>, tensor<4xf32>, tensor<f32>)
  return
}

// -----

func.func @kto_needs_kl(%a: tensor<4xf32>, %lab: tensor<4xi1>) {
  // expected-error @+1 {{loss_type kto needs the KL estimate (kl %k)}}
  %l, %r, %kl = trl.kto_loss %a, %a, %lab, %a : (tensor<4xf32>, tensor<4xf32>, tensor<4xi1>, tensor<4xf32>) -> (tensor<f32>, tensor<4xf32>, tensor<f32>)
  return
}

// -----

func.func @kto_apo_no_kl(%a: tensor<4xf32>, %lab: tensor<4xi1>, %k: tensor<f32>) {
  // expected-error @+1 {{loss_type apo_zero_unpaired takes no KL estimate}}
  %l, %r, %kl = trl.kto_loss %a, %a, %lab, %a kl %k {loss_type = #trl.kto_loss<apo_zero_unpaired>} : (tensor<4xf32>, tensor<4xf32>, tensor<4xi1>, tensor<4xf32>, tensor<f32>) -> (tensor<f32>, tensor<4xf32>, tensor<f32>)
  return
}

// -----

func.func @kto_kl_pairs(%a: tensor<4xf32>, %k: tensor<3xf32>) {
  // expected-error @+1 {{expects kl_ref of type 'tensor<4xf32>', got 'tensor<3xf32>'}}
  %kl = trl.kto_kl %a, %k, %a : (tensor<4xf32>, tensor<3xf32>, tensor<4xf32>) -> tensor<f32>
  return
}

// -----

func.func @grpo_ref_needs_beta(%lp: tensor<4x8xf32>, %adv: tensor<4xf32>, %n: tensor<f32>) {
  // expected-error @+1 {{needs ref_logp exactly when beta != 0 (beta = 0.04)}}
  %l = trl.grpo_loss %lp, %lp, %adv, %lp, %n {beta = 0.04 : f64} : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4x8xf32>, tensor<f32>) -> tensor<f32>
  return
}

// -----

func.func @grpo_advantages(%lp: tensor<4x8xf32>, %adv: tensor<8xf32>, %n: tensor<f32>) {
  // expected-error @+1 {{expects advantages of shape [4], got [8]}}
  %l = trl.grpo_loss %lp, %lp, %adv, %lp, %n : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<8xf32>, tensor<4x8xf32>, tensor<f32>) -> tensor<f32>
  return
}

// -----

func.func @grpo_rank(%lp: tensor<32xf32>, %adv: tensor<32xf32>, %n: tensor<f32>) {
  // expected-error @+1 {{expects per-token log-probs as [batch, completion_length], got [32]}}
  %l = trl.grpo_loss %lp, %lp, %adv, %lp, %n : (tensor<32xf32>, tensor<32xf32>, tensor<32xf32>, tensor<32xf32>, tensor<f32>) -> tensor<f32>
  return
}

// -----

func.func @grpo_eps(%lp: tensor<4x8xf32>, %adv: tensor<4xf32>, %n: tensor<f32>) {
  // expected-error @+1 {{expects non-negative clipping epsilons}}
  %l = trl.grpo_loss %lp, %lp, %adv, %lp, %n {epsilon_low = -0.1 : f64} : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4x8xf32>, tensor<f32>) -> tensor<f32>
  return
}

// -----

func.func @embedding_grad(%dy: tensor<2x4x8xf32>, %ids: tensor<2x4xi64>) {
  // expected-error @+1 {{expects incoming gradient of shape [2, 4, 16], got [2, 4, 8]}}
  %d = trl.embedding_grad %dy, %ids : (tensor<2x4x8xf32>, tensor<2x4xi64>) -> tensor<32x16xf32>
  return
}

// -----

func.func @embedding_grad_rank(%dy: tensor<2x4x8xf32>, %ids: tensor<2x4xi64>) {
  // expected-error @+1 {{expects a [vocab, hidden] table gradient, got [8]}}
  %d = trl.embedding_grad %dy, %ids : (tensor<2x4x8xf32>, tensor<2x4xi64>) -> tensor<8xf32>
  return
}

// -----

func.func @rms_norm_grad(%dy: tensor<2x8xf32>, %x: tensor<2x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{expects grad_weight of type 'tensor<8xf32>', got 'tensor<2x8xf32>'}}
  %dx, %dw = trl.rms_norm_grad %dy, %x, %w : (tensor<2x8xf32>, tensor<2x8xf32>, tensor<8xf32>) -> (tensor<2x8xf32>, tensor<2x8xf32>)
  return
}

// -----

func.func @layer_norm_grad(%dy: tensor<2x8xf32>, %x: tensor<2x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{expects grad_bias of type 'tensor<8xf32>', got 'tensor<4xf32>'}}
  %dx, %dw, %db = trl.layer_norm_grad %dy, %x, %w : (tensor<2x8xf32>, tensor<2x8xf32>, tensor<8xf32>) -> (tensor<2x8xf32>, tensor<8xf32>, tensor<4xf32>)
  return
}

// -----

func.func @linear_grad_bias(%dy: tensor<2x4xf32>, %x: tensor<2x8xf32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{produces a bias gradient exactly when has_bias is set}}
  %dx, %dw, %db = trl.linear_grad %dy, %x, %w : (tensor<2x4xf32>, tensor<2x8xf32>, tensor<4x8xf32>) -> (tensor<2x8xf32>, tensor<4x8xf32>, tensor<4xf32>)
  return
}

// -----

func.func @linear_grad_dy(%dy: tensor<2x5xf32>, %x: tensor<2x8xf32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{expects output of shape [2, 4], got [2, 5]}}
  %dx, %dw = trl.linear_grad %dy, %x, %w : (tensor<2x5xf32>, tensor<2x8xf32>, tensor<4x8xf32>) -> (tensor<2x8xf32>, tensor<4x8xf32>)
  return
}

// -----

func.func @attention_grad(%q: tensor<8x4x8xf32>, %k: tensor<8x2x8xf32>, %l: tensor<4x8xf32>, %cu: tensor<3xi32>) {
  // expected-error @+1 {{expects grad_k of type 'tensor<8x2x8xf32>', got 'tensor<8x4x8xf32>'}}
  %dq, %dk, %dv = trl.attention_grad %q, %q, %k, %k, %q, %l cu_seqlens %cu {layout = #trl.layout<varlen>, scale = 0.25 : f64} : (tensor<8x4x8xf32>, tensor<8x4x8xf32>, tensor<8x2x8xf32>, tensor<8x2x8xf32>, tensor<8x4x8xf32>, tensor<4x8xf32>, tensor<3xi32>) -> (tensor<8x4x8xf32>, tensor<8x4x8xf32>, tensor<8x2x8xf32>)
  return
}

// -----

func.func @swiglu_grad(%dy: tensor<2x8xf32>, %g: tensor<2x8xf32>, %u: tensor<2x8xf32>) {
  // expected-error @+1 {{expects grad_up of type 'tensor<2x8xf32>', got 'tensor<2x4xf32>'}}
  %dg, %du = trl.swiglu_grad %dy, %g, %u : (tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) -> (tensor<2x8xf32>, tensor<2x4xf32>)
  return
}

// -----

func.func @cross_entropy_grad(%g: tensor<f32>, %l: tensor<2x4x16xf32>, %y: tensor<2x4xi64>) {
  // expected-error @+1 {{expects result of type 'tensor<2x4x16xf32>', got 'tensor<2x4x8xf32>'}}
  %d = trl.cross_entropy_grad %g, %l, %y : (tensor<f32>, tensor<2x4x16xf32>, tensor<2x4xi64>) -> tensor<2x4x8xf32>
  return
}

// -----

func.func @flce_grad(%g: tensor<f32>, %h: tensor<2x4x8xf32>, %w: tensor<16x8xf32>, %y: tensor<2x4xi64>) {
  // expected-error @+1 {{expects grad_weight of type 'tensor<16x8xf32>', got 'tensor<8x16xf32>'}}
  %dh, %dw = trl.fused_linear_cross_entropy_grad %g, %h, %w, %y {chunk_size = 4 : i64} : (tensor<f32>, tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<2x4xi64>) -> (tensor<2x4x8xf32>, tensor<8x16xf32>)
  return
}

// -----

func.func @log_probs_grad(%g: tensor<2x5xf32>, %l: tensor<2x4x16xf32>, %y: tensor<2x4xi64>) {
  // expected-error @+1 {{expects incoming gradient of shape [2, 4], got [2, 5]}}
  %d = trl.log_probs_grad %g, %l, %y : (tensor<2x5xf32>, tensor<2x4x16xf32>, tensor<2x4xi64>) -> tensor<2x4x16xf32>
  return
}

// -----

func.func @fused_log_probs_grad(%g: tensor<2x4xf32>, %h: tensor<2x4x8xf32>, %w: tensor<16x8xf32>, %y: tensor<2x4xi64>) {
  // expected-error @+1 {{expects grad_hidden of type 'tensor<2x4x8xf32>', got 'tensor<2x4x16xf32>'}}
  %dh, %dw = trl.fused_linear_log_probs_grad %g, %h, %w, %y {chunk_size = 4 : i64} : (tensor<2x4xf32>, tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<2x4xi64>) -> (tensor<2x4x16xf32>, tensor<16x8xf32>)
  return
}

// -----

func.func @masked_sum_grad(%g: tensor<3xf32>, %m: tensor<2x4xf32>) {
  // expected-error @+1 {{expects incoming gradient of shape [2], got [3]}}
  %d = trl.masked_sum_grad %g, %m : (tensor<3xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @dpo_loss_grad(%g: tensor<f32>, %a: tensor<2xf32>) {
  // expected-error @+1 {{expects grad_rejected of type 'tensor<2xf32>', got 'tensor<4xf32>'}}
  %dc, %dr = trl.dpo_loss_grad %g, %a, %a, %a, %a, %a : (tensor<f32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<2xf32>, tensor<4xf32>)
  return
}

// -----

func.func @kto_loss_grad(%g: tensor<f32>, %a: tensor<4xf32>, %b: tensor<3xf32>, %lab: tensor<4xi1>) {
  // expected-error @+1 {{expects ref of type 'tensor<4xf32>', got 'tensor<3xf32>'}}
  %d = trl.kto_loss_grad %g, %a, %b, %lab, %a kl %g : (tensor<f32>, tensor<4xf32>, tensor<3xf32>, tensor<4xi1>, tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  return
}

// -----

func.func @grpo_loss_grad(%g: tensor<f32>, %lp: tensor<4x8xf32>, %m: tensor<4x7xf32>, %adv: tensor<4xf32>) {
  // expected-error @+1 {{expects mask of type 'tensor<4x8xf32>', got 'tensor<4x7xf32>'}}
  %d = trl.grpo_loss_grad %g, %lp, %lp, %adv, %m, %g : (tensor<f32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4x7xf32>, tensor<f32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @grad_norm_empty() {
  // expected-error @+1 {{expects at least one gradient}}
  %n = trl.grad_norm : () -> tensor<f32>
  return
}

// -----

func.func @adamw_clip_without_max(%p: tensor<4xf32>, %lr: tensor<f32>, %s: tensor<i64>, %n: tensor<f32>) {
  // expected-error @+1 {{clips by a gradient norm but max_grad_norm is 0 (expected > 0)}}
  %a:3 = trl.adamw %p, %p, %p, %p, %lr, %s clip %n : (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>)
  return
}

// -----

func.func @adamw_max_without_norm(%p: tensor<4xf32>, %lr: tensor<f32>, %s: tensor<i64>) {
  // expected-error @+1 {{has max_grad_norm but no gradient norm to clip by}}
  %a:3 = trl.adamw %p, %p, %p, %p, %lr, %s {max_grad_norm = 1.0 : f64} : (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<f32>, tensor<i64>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>)
  return
}

// -----

func.func @lr_schedule_warmup(%s: tensor<i64>) {
  // expected-error @+1 {{expects warmup_steps >= 0, got -1}}
  %lr = trl.lr_schedule %s {schedule = #trl.lr_schedule<linear>, base_lr = 1.0e-03 : f64, warmup_steps = -1 : i64, total_steps = 10 : i64} : (tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @lr_schedule_total(%s: tensor<i64>) {
  // expected-error @+1 {{expects total_steps > 0, got 0}}
  %lr = trl.lr_schedule %s {schedule = #trl.lr_schedule<linear>, base_lr = 1.0e-03 : f64, warmup_steps = 0 : i64, total_steps = 0 : i64} : (tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @lr_schedule_base(%s: tensor<i64>) {
  // expected-error @+1 {{expects base_lr >= 0}}
  %lr = trl.lr_schedule %s {schedule = #trl.lr_schedule<constant>, base_lr = -1.0 : f64, warmup_steps = 0 : i64, total_steps = 5 : i64} : (tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @adamw_shapes(%p: tensor<4xf32>, %m: tensor<5xf32>, %lr: tensor<f32>, %s: tensor<i64>) {
  // expected-error @+1 {{expects exp_avg of type 'tensor<4xf32>', got 'tensor<5xf32>'}}
  %a, %b, %c = trl.adamw %p, %p, %m, %p, %lr, %s : (tensor<4xf32>, tensor<4xf32>, tensor<5xf32>, tensor<4xf32>, tensor<f32>, tensor<i64>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>)
  return
}

// -----

func.func @adamw_betas(%p: tensor<4xf32>, %lr: tensor<f32>, %s: tensor<i64>) {
  // expected-error @+1 {{expects betas in [0, 1), got (1, 0.999)}}
  %a, %b, %c = trl.adamw %p, %p, %p, %p, %lr, %s {beta1 = 1.0 : f64} : (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<f32>, tensor<i64>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>)
  return
}

// -----

func.func @adamw_eps(%p: tensor<4xf32>, %lr: tensor<f32>, %s: tensor<i64>) {
  // expected-error @+1 {{expects eps > 0, got 0}}
  %a, %b, %c = trl.adamw %p, %p, %p, %p, %lr, %s {eps = 0.0 : f64} : (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<f32>, tensor<i64>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>)
  return
}

// -----

func.func @adamw_weight_decay(%p: tensor<4xf32>, %lr: tensor<f32>, %s: tensor<i64>) {
  // expected-error @+1 {{expects weight_decay >= 0}}
  %a, %b, %c = trl.adamw %p, %p, %p, %p, %lr, %s {weight_decay = -0.1 : f64} : (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<f32>, tensor<i64>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>)
  return
}

// -----

func.func @offload_space(%x: tensor<4xf32>) {
  // expected-error @+1 {{moves a tensor from device to host: expects the result with #trl.space<host> and the other without}}
  %h = trl.offload %x : (tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @offload_shape(%x: tensor<4xf32>) {
  // expected-error @+1 {{must preserve shape and element type}}
  %h = trl.offload %x : (tensor<4xf32>) -> tensor<8xf32, #trl.space<host>>
  return
}

// -----

func.func @reload_space(%x: tensor<4xf32, #trl.space<host>>) {
  // expected-error @+1 {{moves a tensor from host to device: expects the operand with #trl.space<host> and the other without}}
  %d = trl.reload %x : (tensor<4xf32, #trl.space<host>>) -> tensor<4xf32, #trl.space<host>>
  return
}

// -----

func.func @recompute_args(%x: tensor<4xf32>) {
  // expected-error @+1 {{expects the region's arguments to match its inputs}}
  %r = trl.recompute %x : (tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: tensor<8xf32>):
    %z = trl.gelu %a : tensor<8xf32>
    trl.yield %x : tensor<4xf32>
  }
  return
}

// -----

func.func @recompute_yield(%x: tensor<4xf32>) {
  // expected-error @+1 {{expects trl.yield to return the op's result types}}
  %r = trl.recompute %x : (tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: tensor<4xf32>):
    trl.yield
  }
  return
}

// -----

func.func @recompute_terminator(%x: tensor<4xf32>) {
  // expected-error @+1 {{expects the region to end with trl.yield}}
  %r = trl.recompute %x : (tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: tensor<4xf32>):
    %z = trl.gelu %a : tensor<4xf32>
  }
  return
}

// -----

func.func @all_gather(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{expects result of shape [16, 8], got [8, 8]}}
  %y = trl.all_gather %x {world_size = 4 : i64} : (tensor<4x8xf32>) -> tensor<8x8xf32>
  return
}

// -----

func.func @all_gather_world(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{expects world_size >= 1, got 0}}
  %y = trl.all_gather %x {world_size = 0 : i64} : (tensor<4x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @reduce_scatter_divides(%x: tensor<6x8xf32>) {
  // expected-error @+1 {{expects dimension 0 of [6, 8] to divide evenly over 4 ranks (pad the flattened buffer)}}
  %y = trl.reduce_scatter %x {world_size = 4 : i64} : (tensor<6x8xf32>) -> tensor<1x8xf32>
  return
}

// -----

func.func @reduce_scatter_shape(%x: tensor<8x8xf32>) {
  // expected-error @+1 {{expects result of shape [2, 8], got [4, 8]}}
  %y = trl.reduce_scatter %x {world_size = 4 : i64} : (tensor<8x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @all_reduce_world(%x: tensor<8xf32>) {
  // expected-error @+1 {{expects world_size >= 1, got -2}}
  %y = trl.all_reduce %x {world_size = -2 : i64} : tensor<8xf32>
  return
}

// -----

func.func @broadcast_root(%x: tensor<8xf32>) {
  // expected-error @+1 {{expects 0 <= root < world_size (2), got 2}}
  %y = trl.broadcast %x {world_size = 2 : i64, root = 2 : i64} : tensor<8xf32>
  return
}

// -----

// expected-error @+1 {{sequence bound must be positive, got 0}}
func.func @seq_bound(%x: tensor<4xi64> {trl.seq_bound = #trl.seq_bound<max = 0, source = "max_length">}) {
  return
}

// -----

// expected-error @+1 {{sequence bound needs a source}}
func.func @seq_bound_source(%x: tensor<4xi64> {trl.seq_bound = #trl.seq_bound<max = 4, source = "">}) {
  return
}

// -----

// expected-error @+1 {{wrapped packing ignores document boundaries and cannot be padding-free}}
func.func @packing() attributes {trl.packing = #trl.packing<strategy = wrapped, seq_length = 8, padding_free = true>} {
  return
}

// -----

// expected-error @+1 {{packing seq_length must be positive, got 0}}
func.func @packing_len() attributes {trl.packing = #trl.packing<strategy = bfd, seq_length = 0, padding_free = false>} {
  return
}

// -----

func.func @linear_grad_accumulator(%dy: tensor<2x4xf32>, %x: tensor<2x8xf32>, %w: tensor<4x8xf32>, %acc: tensor<8x4xf32>) {
  // expected-error @+1 {{accumulator}}
  %dx, %dw = trl.linear_grad %dy, %x, %w accumulate %acc : (tensor<2x4xf32>, tensor<2x8xf32>, tensor<4x8xf32>, tensor<8x4xf32>) -> (tensor<2x8xf32>, tensor<4x8xf32>)
  return
}

// -----

func.func @rloo_old_per_sequence(%lp: tensor<4x8xf32>, %old: tensor<8xf32>, %adv: tensor<4xf32>, %n: tensor<f32>) {
  // expected-error @+1 {{expects old_logp of shape [4], got [8]}}
  %l = trl.rloo_loss %lp, %old, %adv, %lp, %n : (tensor<4x8xf32>, tensor<8xf32>, tensor<4xf32>, tensor<4x8xf32>, tensor<f32>) -> tensor<f32>
  return
}

// -----

func.func @ppo_values_shape(%lp: tensor<4x8xf32>, %v: tensor<4x7xf32>, %n: tensor<f32>) {
  // expected-error @+1 {{expects values of shape [4, 8], got [4, 7]}}
  %l = trl.ppo_loss %lp, %lp, %lp, %lp, %v, %lp, %lp, %lp, %n, %n : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x7xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<f32>, tensor<f32>) -> tensor<f32>
  return
}

// -----

func.func @ppo_negative_clip(%lp: tensor<4x8xf32>, %n: tensor<f32>) {
  // expected-error @+1 {{expects non-negative cliprange, cliprange_value and vf_coef}}
  %l = trl.ppo_loss %lp, %lp, %lp, %lp, %lp, %lp, %lp, %lp, %n, %n {cliprange = -0.1 : f64} : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<f32>, tensor<f32>) -> tensor<f32>
  return
}

// -----

func.func @dropout_p(%x: tensor<4xf32>, %seed: tensor<i64>) {
  // expected-error @+1 {{p must be in [0, 1), got 1}}
  %y = trl.dropout %x, %seed {p = 1.0 : f64, stream = 0 : i64} : (tensor<4xf32>, tensor<i64>) -> tensor<4xf32>
  return
}

// -----

func.func @dropout_shape(%x: tensor<4xf32>, %seed: tensor<i64>) {
  // expected-error @+1 {{expects result of type 'tensor<4xf32>', got 'tensor<8xf32>'}}
  %y = trl.dropout %x, %seed {p = 0.1 : f64, stream = 0 : i64} : (tensor<4xf32>, tensor<i64>) -> tensor<8xf32>
  return
}

// -----

func.func @dropout_seed(%x: tensor<4xf32>, %seed: tensor<2xi64>) {
  // expected-error @+1 {{operand #1 must be 0D tensor of 64-bit signless integer values}}
  %y = trl.dropout %x, %seed {p = 0.1 : f64, stream = 0 : i64} : (tensor<4xf32>, tensor<2xi64>) -> tensor<4xf32>
  return
}
