// RUN: trl-opt %s | trl-opt | FileCheck %s
// Every trl op parses, verifies, prints and parses again.

// CHECK-LABEL: func.func @forward
func.func @forward(%ids: tensor<2x16xi64>, %pos: tensor<2x16xi64>, %mask: tensor<2x16xi64>, %labels: tensor<2x16xi64>, %n: tensor<f32>) -> tensor<f32> {
  // CHECK: trl.param "model.embed_tokens.weight" : tensor<256x64xf32>
  %emb = trl.param "model.embed_tokens.weight" : tensor<256x64xf32>
  // CHECK: trl.param "model.embed_tokens.weight" {set = "reference", trainable = false}
  %ref = trl.param "model.embed_tokens.weight" {set = "reference", trainable = false} : tensor<256x64xf32>
  // CHECK: trl.param "h.0.attn.c_attn.weight" {hf_transposed}
  %conv = trl.param "h.0.attn.c_attn.weight" {hf_transposed} : tensor<192x64xf32>
  %nw = trl.param "n.weight" : tensor<64xf32>
  %nb = trl.param "n.bias" : tensor<64xf32>
  %wq = trl.param "q.weight" : tensor<64x64xf32>
  %bq = trl.param "q.bias" : tensor<64xf32>
  %wk = trl.param "k.weight" : tensor<32x64xf32>
  // CHECK: trl.embedding
  %h = trl.embedding %emb, %ids : (tensor<256x64xf32>, tensor<2x16xi64>) -> tensor<2x16x64xf32>
  // CHECK: trl.rms_norm {{.*}} {eps = 1.000000e-05 : f64}
  %n1 = trl.rms_norm %h, %nw {eps = 1.0e-05 : f64} : (tensor<2x16x64xf32>, tensor<64xf32>) -> tensor<2x16x64xf32>
  // CHECK: trl.layer_norm
  %n2 = trl.layer_norm %h, %nw, %nb : (tensor<2x16x64xf32>, tensor<64xf32>, tensor<64xf32>) -> tensor<2x16x64xf32>
  // CHECK: trl.linear {{.*}} bias
  %q = trl.linear %n1, %wq bias %bq : (tensor<2x16x64xf32>, tensor<64x64xf32>, tensor<64xf32>) -> tensor<2x16x64xf32>
  // CHECK: trl.linear
  %k = trl.linear %n2, %wk : (tensor<2x16x64xf32>, tensor<32x64xf32>) -> tensor<2x16x32xf32>
  // CHECK: trl.reshape
  %q4 = trl.reshape %q : (tensor<2x16x64xf32>) -> tensor<2x16x4x16xf32>
  %k4 = trl.reshape %k : (tensor<2x16x32xf32>) -> tensor<2x16x2x16xf32>
  // CHECK: trl.rope {{.*}}scaling = #trl.rope_scaling<factor = 8.000000e+00 : f64, low_freq_factor = 1.000000e+00 : f64, high_freq_factor = 4.000000e+00 : f64, original_max_position_embeddings = 8192>
  %qr = trl.rope %q4, %pos {theta = 500000.0 : f64, scaling = #trl.rope_scaling<factor = 8.0 : f64, low_freq_factor = 1.0 : f64, high_freq_factor = 4.0 : f64, original_max_position_embeddings = 8192>} : (tensor<2x16x4x16xf32>, tensor<2x16xi64>) -> tensor<2x16x4x16xf32>
  // CHECK: trl.rope {{.*}} {inverse}
  %kr = trl.rope %k4, %pos {inverse} : (tensor<2x16x2x16xf32>, tensor<2x16xi64>) -> tensor<2x16x2x16xf32>
  // CHECK: trl.attention {{.*}} mask {{.*}}layout = #trl.layout<padded>
  %o, %lse = trl.attention %qr, %kr, %kr mask %mask {layout = #trl.layout<padded>, scale = 0.25 : f64} : (tensor<2x16x4x16xf32>, tensor<2x16x2x16xf32>, tensor<2x16x2x16xf32>, tensor<2x16xi64>) -> (tensor<2x16x4x16xf32>, tensor<2x4x16xf32>)
  %o3 = trl.reshape %o : (tensor<2x16x4x16xf32>) -> tensor<2x16x64xf32>
  // CHECK: trl.swiglu
  %a = trl.swiglu %o3, %q : (tensor<2x16x64xf32>, tensor<2x16x64xf32>) -> tensor<2x16x64xf32>
  // CHECK: trl.gelu {{.*}} {approximate = #trl.gelu<tanh>}
  %g = trl.gelu %a {approximate = #trl.gelu<tanh>} : tensor<2x16x64xf32>
  // CHECK: trl.add
  %r = trl.add %g, %h : tensor<2x16x64xf32>
  // CHECK: trl.split {{.*}} {axis = 2 : i64}
  %parts:2 = trl.split %r {axis = 2 : i64} : (tensor<2x16x64xf32>) -> (tensor<2x16x32xf32>, tensor<2x16x32xf32>)
  // CHECK: trl.concat
  %c = trl.concat %parts#1, %parts#0 {axis = 2 : i64} : (tensor<2x16x32xf32>, tensor<2x16x32xf32>) -> tensor<2x16x64xf32>
  %logits = trl.linear %c, %emb : (tensor<2x16x64xf32>, tensor<256x64xf32>) -> tensor<2x16x256xf32>
  // CHECK: trl.cross_entropy
  %s = trl.cross_entropy %logits, %labels : (tensor<2x16x256xf32>, tensor<2x16xi64>) -> tensor<f32>
  // CHECK: trl.fused_linear_cross_entropy {{.*}} {chunk_size = 8 : i64}
  %fs = trl.fused_linear_cross_entropy %c, %emb, %labels {chunk_size = 8 : i64} : (tensor<2x16x64xf32>, tensor<256x64xf32>, tensor<2x16xi64>) -> tensor<f32>
  // CHECK: trl.div
  %loss = trl.div %s, %n : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return %loss : tensor<f32>
}

// CHECK-LABEL: func.func @losses
func.func @losses(%logits: tensor<4x16x256xf32>, %h: tensor<4x16x64xf32>, %w: tensor<256x64xf32>, %labels: tensor<4x16xi64>, %mask: tensor<4x16xf32>, %label: tensor<2xi1>, %adv: tensor<4xf32>, %n: tensor<f32>, %row: tensor<1x16xf32>) {
  // CHECK: trl.log_probs
  %lp = trl.log_probs %logits, %labels : (tensor<4x16x256xf32>, tensor<4x16xi64>) -> tensor<4x16xf32>
  // CHECK: trl.fused_linear_log_probs
  %flp = trl.fused_linear_log_probs %h, %w, %labels {chunk_size = 16 : i64} : (tensor<4x16x64xf32>, tensor<256x64xf32>, tensor<4x16xi64>) -> tensor<4x16xf32>
  // CHECK: trl.masked_sum
  %seq = trl.masked_sum %lp, %mask : (tensor<4x16xf32>, tensor<4x16xf32>) -> tensor<4xf32>
  %halves:2 = trl.split %seq {axis = 0 : i64} : (tensor<4xf32>) -> (tensor<2xf32>, tensor<2xf32>)
  // CHECK: trl.masked_sum {{.*}} : (tensor<1x16xf32>, tensor<4x16xf32>) -> tensor<4xf32>
  %shared = trl.masked_sum %row, %mask : (tensor<1x16xf32>, tensor<4x16xf32>) -> tensor<4xf32>
  // CHECK: trl.dpo_loss {{.*}}loss_type = #trl.dpo_loss<ipo>
  %dl, %rc, %rr = trl.dpo_loss %halves#0, %halves#1, %halves#0, %halves#1, %halves#0 {beta = 0.5 : f64, loss_type = #trl.dpo_loss<ipo>} : (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<f32>, tensor<2xf32>, tensor<2xf32>)
  // CHECK: trl.dpo_loss {{.*}} nll {{.*}}rpo_alpha = 1.000000e+00
  %rl, %rrc, %rrr = trl.dpo_loss %halves#0, %halves#1, %halves#0, %halves#1, %halves#0 nll %n {rpo_alpha = 1.0 : f64, loss_type = #trl.dpo_loss<apo_down>} : (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<f32>) -> (tensor<f32>, tensor<2xf32>, tensor<2xf32>)
  // CHECK: trl.kto_kl
  %kle = trl.kto_kl %halves#0, %halves#1, %halves#0 : (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<f32>
  // CHECK: trl.kto_loss {{.*}} kl
  %kl, %kr, %kkl = trl.kto_loss %halves#0, %halves#1, %label, %halves#0 kl %kle : (tensor<2xf32>, tensor<2xf32>, tensor<2xi1>, tensor<2xf32>, tensor<f32>) -> (tensor<f32>, tensor<2xf32>, tensor<f32>)
  // CHECK: trl.kto_loss {{.*}}loss_type = #trl.kto_loss<apo_zero_unpaired>
  %al, %ar, %akl = trl.kto_loss %halves#0, %halves#1, %label, %halves#0 {loss_type = #trl.kto_loss<apo_zero_unpaired>} : (tensor<2xf32>, tensor<2xf32>, tensor<2xi1>, tensor<2xf32>) -> (tensor<f32>, tensor<2xf32>, tensor<f32>)
  // CHECK: trl.grpo_loss {{.*}} ref
  %gl = trl.grpo_loss %lp, %flp, %adv, %mask, %n ref %flp {beta = 4.0e-02 : f64, loss_type = #trl.grpo_loss<bnpo>} : (tensor<4x16xf32>, tensor<4x16xf32>, tensor<4xf32>, tensor<4x16xf32>, tensor<f32>, tensor<4x16xf32>) -> tensor<f32>
  // CHECK: trl.rloo_loss {{.*}}epsilon_high = 2.800000e-01
  %rloo = trl.rloo_loss %lp, %adv, %adv, %mask, %n {epsilon_high = 0.28 : f64} : (tensor<4x16xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4x16xf32>, tensor<f32>) -> tensor<f32>
  // CHECK: trl.ppo_loss {{.*}}cliprange_value = 1.500000e-01
  %ppo = trl.ppo_loss %lp, %flp, %lp, %mask, %lp, %flp, %lp, %mask, %n, %n {cliprange_value = 0.15 : f64} : (tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<f32>, tensor<f32>) -> tensor<f32>
  return
}

// CHECK-LABEL: func.func @backward
func.func @backward(%dy: tensor<2x16x64xf32>, %x: tensor<2x16x64xf32>, %ids: tensor<2x16xi64>, %w: tensor<64xf32>, %lw: tensor<128x64xf32>, %dl: tensor<2x16x128xf32>, %q: tensor<16x4x16xf32>, %k: tensor<16x2x16xf32>, %lse: tensor<4x16xf32>, %cu: tensor<3xi32>, %g: tensor<f32>, %logits: tensor<2x16x256xf32>, %labels: tensor<2x16xi64>, %emb: tensor<256x64xf32>, %dlp: tensor<2x16xf32>, %v2: tensor<2xf32>, %lab: tensor<2xi1>, %adv: tensor<2xf32>) {
  // CHECK: trl.embedding_grad
  %de = trl.embedding_grad %dy, %ids : (tensor<2x16x64xf32>, tensor<2x16xi64>) -> tensor<256x64xf32>
  // CHECK: trl.rms_norm_grad
  %dx, %dw = trl.rms_norm_grad %dy, %x, %w : (tensor<2x16x64xf32>, tensor<2x16x64xf32>, tensor<64xf32>) -> (tensor<2x16x64xf32>, tensor<64xf32>)
  // CHECK: trl.layer_norm_grad
  %lx, %lwg, %lb = trl.layer_norm_grad %dy, %x, %w : (tensor<2x16x64xf32>, tensor<2x16x64xf32>, tensor<64xf32>) -> (tensor<2x16x64xf32>, tensor<64xf32>, tensor<64xf32>)
  // CHECK: trl.linear_grad {{.*}} {has_bias}
  %gx, %gw, %gb = trl.linear_grad %dl, %x, %lw {has_bias} : (tensor<2x16x128xf32>, tensor<2x16x64xf32>, tensor<128x64xf32>) -> (tensor<2x16x64xf32>, tensor<128x64xf32>, tensor<128xf32>)
  // CHECK: trl.attention {{.*}} cu_seqlens {{.*}}layout = #trl.layout<varlen>
  %o, %l2 = trl.attention %q, %k, %k cu_seqlens %cu {layout = #trl.layout<varlen>, scale = 0.25 : f64, max_seqlen = 9 : i64} : (tensor<16x4x16xf32>, tensor<16x2x16xf32>, tensor<16x2x16xf32>, tensor<3xi32>) -> (tensor<16x4x16xf32>, tensor<4x16xf32>)
  // CHECK: trl.attention_grad
  %dq, %dk, %dv = trl.attention_grad %o, %q, %k, %k, %o, %l2 cu_seqlens %cu {layout = #trl.layout<varlen>, scale = 0.25 : f64} : (tensor<16x4x16xf32>, tensor<16x4x16xf32>, tensor<16x2x16xf32>, tensor<16x2x16xf32>, tensor<16x4x16xf32>, tensor<4x16xf32>, tensor<3xi32>) -> (tensor<16x4x16xf32>, tensor<16x2x16xf32>, tensor<16x2x16xf32>)
  // CHECK: trl.swiglu_grad
  %sg, %su = trl.swiglu_grad %dy, %x, %x : (tensor<2x16x64xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>) -> (tensor<2x16x64xf32>, tensor<2x16x64xf32>)
  // CHECK: trl.gelu_grad
  %gg = trl.gelu_grad %dy, %x : (tensor<2x16x64xf32>, tensor<2x16x64xf32>) -> tensor<2x16x64xf32>
  // CHECK: trl.cross_entropy_grad
  %ce = trl.cross_entropy_grad %g, %logits, %labels : (tensor<f32>, tensor<2x16x256xf32>, tensor<2x16xi64>) -> tensor<2x16x256xf32>
  // CHECK: trl.fused_linear_cross_entropy_grad
  %fh, %fw = trl.fused_linear_cross_entropy_grad %g, %x, %emb, %labels {chunk_size = 4 : i64} : (tensor<f32>, tensor<2x16x64xf32>, tensor<256x64xf32>, tensor<2x16xi64>) -> (tensor<2x16x64xf32>, tensor<256x64xf32>)
  // CHECK: trl.log_probs_grad
  %lg = trl.log_probs_grad %dlp, %logits, %labels : (tensor<2x16xf32>, tensor<2x16x256xf32>, tensor<2x16xi64>) -> tensor<2x16x256xf32>
  // CHECK: trl.fused_linear_log_probs_grad
  %ph, %pw = trl.fused_linear_log_probs_grad %dlp, %x, %emb, %labels {chunk_size = 4 : i64} : (tensor<2x16xf32>, tensor<2x16x64xf32>, tensor<256x64xf32>, tensor<2x16xi64>) -> (tensor<2x16x64xf32>, tensor<256x64xf32>)
  // CHECK: trl.masked_sum_grad
  %ms = trl.masked_sum_grad %v2, %dlp : (tensor<2xf32>, tensor<2x16xf32>) -> tensor<2x16xf32>
  // CHECK: trl.dpo_loss_grad
  %dc, %dr = trl.dpo_loss_grad %g, %v2, %v2, %v2, %v2, %v2 : (tensor<f32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<2xf32>, tensor<2xf32>)
  // CHECK: trl.kto_loss_grad
  %kg = trl.kto_loss_grad %g, %v2, %v2, %lab, %v2 kl %g : (tensor<f32>, tensor<2xf32>, tensor<2xf32>, tensor<2xi1>, tensor<2xf32>, tensor<f32>) -> tensor<2xf32>
  // CHECK: trl.grpo_loss_grad
  %gr = trl.grpo_loss_grad %g, %dlp, %dlp, %adv, %dlp, %g : (tensor<f32>, tensor<2x16xf32>, tensor<2x16xf32>, tensor<2xf32>, tensor<2x16xf32>, tensor<f32>) -> tensor<2x16xf32>
  // CHECK: trl.rloo_loss_grad
  %rg = trl.rloo_loss_grad %g, %dlp, %adv, %adv, %dlp, %g : (tensor<f32>, tensor<2x16xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2x16xf32>, tensor<f32>) -> tensor<2x16xf32>
  // CHECK: trl.ppo_loss_grad
  %pg, %pv = trl.ppo_loss_grad %g, %dlp, %dlp, %dlp, %dlp, %dlp, %dlp, %dlp, %dlp, %g, %g : (tensor<f32>, tensor<2x16xf32>, tensor<2x16xf32>, tensor<2x16xf32>, tensor<2x16xf32>, tensor<2x16xf32>, tensor<2x16xf32>, tensor<2x16xf32>, tensor<2x16xf32>, tensor<f32>, tensor<f32>) -> (tensor<2x16xf32>, tensor<2x16xf32>)
  return
}

// CHECK-LABEL: func.func @optimizer
func.func @optimizer(%p: tensor<64xf32>, %g: tensor<64xf32>, %g2: tensor<8x8xf32>, %step: tensor<i64>) {
  // CHECK: trl.grad_norm
  %n = trl.grad_norm %g, %g2 : (tensor<64xf32>, tensor<8x8xf32>) -> tensor<f32>
  // CHECK: trl.lr_schedule {{.*}}schedule = #trl.lr_schedule<cosine>
  %lr = trl.lr_schedule %step {schedule = #trl.lr_schedule<cosine>, base_lr = 2.0e-05 : f64, warmup_steps = 10 : i64, total_steps = 100 : i64} : (tensor<i64>) -> tensor<f32>
  // CHECK: trl.adamw {{.*}} {weight_decay
  %p1, %m1, %v1 = trl.adamw %p, %g, %p, %p, %lr, %step {weight_decay = 0.01 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<f32>, tensor<i64>) -> (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>)
  // CHECK: trl.adamw {{.*}} clip %{{.*}} {max_grad_norm = 1.000000e+00 : f64}
  %p2, %m2, %v2 = trl.adamw %p, %g, %p, %p, %lr, %step clip %n {max_grad_norm = 1.0 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>)
  return
}

// CHECK-LABEL: func.func @memory_and_collectives
func.func @memory_and_collectives(%x: tensor<16x64xf32>, %w: tensor<64xf32>) -> tensor<16x64xf32> {
  // CHECK: trl.offload {{.*}} -> tensor<16x64xf32, #trl.space<host>>
  %h = trl.offload %x : (tensor<16x64xf32>) -> tensor<16x64xf32, #trl.space<host>>
  // CHECK: trl.reload
  %d = trl.reload %h : (tensor<16x64xf32, #trl.space<host>>) -> tensor<16x64xf32>
  // CHECK: trl.recompute
  // CHECK: trl.yield
  %r = trl.recompute %d, %w : (tensor<16x64xf32>, tensor<64xf32>) -> tensor<16x64xf32> {
  ^bb0(%a: tensor<16x64xf32>, %b: tensor<64xf32>):
    %n = trl.rms_norm %a, %b : (tensor<16x64xf32>, tensor<64xf32>) -> tensor<16x64xf32>
    trl.yield %n : tensor<16x64xf32>
  }
  // CHECK: trl.all_gather
  %full = trl.all_gather %r {world_size = 4 : i64} : (tensor<16x64xf32>) -> tensor<64x64xf32>
  // CHECK: trl.reduce_scatter {{.*}}reduce = #trl.reduce<avg>
  %shard = trl.reduce_scatter %full {world_size = 4 : i64, reduce = #trl.reduce<avg>} : (tensor<64x64xf32>) -> tensor<16x64xf32>
  // CHECK: trl.all_reduce
  %s = trl.all_reduce %shard {world_size = 4 : i64} : tensor<16x64xf32>
  // CHECK: trl.broadcast
  %b = trl.broadcast %s {world_size = 4 : i64, root = 3 : i64} : tensor<16x64xf32>
  return %b : tensor<16x64xf32>
}

// CHECK-LABEL: func.func @attributes
// CHECK-SAME: #trl.seq_bound<max = 1024, source = "max_length">
// CHECK-SAME: trl.packing = #trl.packing<strategy = bfd_split, seq_length = 1024, padding_free = true>
func.func @attributes(%ids: tensor<1x1024xi64> {trl.seq_bound = #trl.seq_bound<max = 1024, source = "max_length">}) attributes {trl.packing = #trl.packing<strategy = bfd_split, seq_length = 1024, padding_free = true>} {
  return
}

// CHECK-LABEL: func.func @linear_grad_accumulate
// CHECK: trl.linear_grad %arg0, %arg1, %arg2 accumulate %arg3
func.func @linear_grad_accumulate(%dy: tensor<3x5xf32>, %x: tensor<3x4xf32>, %w: tensor<5x4xf32>, %acc: tensor<5x4xf32>) -> tensor<5x4xf32> {
  %dx, %dw = trl.linear_grad %dy, %x, %w accumulate %acc : (tensor<3x5xf32>, tensor<3x4xf32>, tensor<5x4xf32>, tensor<5x4xf32>) -> (tensor<3x4xf32>, tensor<5x4xf32>)
  return %dw : tensor<5x4xf32>
}

// bf16 storage mixes with f32 compute: a norm of the f32 residual stored in
// bf16, a product of bf16 activations and f32 weights, f32 gradients of
// bf16 activations.
// CHECK-LABEL: func.func @mixed_precision
// CHECK: trl.rms_norm {{.*}} -> tensor<2x8xbf16>
// CHECK: trl.linear {{.*}} -> tensor<2x4xbf16>
// CHECK: trl.gelu {{.*}} : tensor<2x4xbf16>
// CHECK: trl.gelu_grad {{.*}} : (tensor<2x4xf32>, tensor<2x4xbf16>) -> tensor<2x4xf32>
// CHECK: trl.linear_grad {{.*}} -> (tensor<2x8xf32>, tensor<4x8xf32>)
func.func @mixed_precision(%x: tensor<2x8xf32>, %nw: tensor<8xf32>, %w: tensor<4x8xf32>, %dy: tensor<2x4xf32>) -> tensor<2x8xf32> {
  %h = trl.rms_norm %x, %nw {eps = 1.0e-06 : f64} : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xbf16>
  %y = trl.linear %h, %w : (tensor<2x8xbf16>, tensor<4x8xf32>) -> tensor<2x4xbf16>
  %a = trl.gelu %y : tensor<2x4xbf16>
  %dg = trl.gelu_grad %dy, %y : (tensor<2x4xf32>, tensor<2x4xbf16>) -> tensor<2x4xf32>
  %dx, %dw = trl.linear_grad %dg, %h, %w : (tensor<2x4xf32>, tensor<2x8xbf16>, tensor<4x8xf32>) -> (tensor<2x8xf32>, tensor<4x8xf32>)
  return %dx : tensor<2x8xf32>
}

// LoRA's dropout: the seed is a 0-d i64 batch input; bf16 storage passes
// through.
// CHECK-LABEL: func.func @dropout
// CHECK: trl.dropout %{{.*}}, %{{.*}} {p = 5.000000e-02 : f64, stream = 3 : i64} : (tensor<2x8xbf16>, tensor<i64>) -> tensor<2x8xbf16>
func.func @dropout(%x: tensor<2x8xbf16>, %seed: tensor<i64>) -> tensor<2x8xbf16> {
  %y = trl.dropout %x, %seed {p = 0.05 : f64, stream = 3 : i64} : (tensor<2x8xbf16>, tensor<i64>) -> tensor<2x8xbf16>
  return %y : tensor<2x8xbf16>
}
