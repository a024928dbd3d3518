// RUN: trl-opt %s -trl-autodiff -trl-optimizer="weight-decay=0.1" -trl-zero3-shard="world-size=3" | FileCheck %s --check-prefixes=CHECK,GEN
// RUN: trl-opt %s -trl-autodiff -trl-optimizer -trl-zero3-shard="world-size=3 gather-for-generation=false" | FileCheck %s --check-prefix=LAYERS
// RUN: trl-opt %s -trl-autodiff -trl-optimizer -trl-zero3-shard="world-size=3 prefetch=false" | FileCheck %s --check-prefix=NOPREFETCH
// RUN: trl-opt %s -trl-autodiff -trl-optimizer -trl-zero3-shard="stage=0" | FileCheck %s --check-prefix=STAGE0
// RUN: not trl-opt %s -trl-autodiff -trl-optimizer -trl-zero3-shard="stage=2" 2>&1 | FileCheck %s --check-prefix=STAGE2
// RUN: not trl-opt %s -trl-zero3-shard 2>&1 | FileCheck %s --check-prefix=ORDER

func.func @train_step(%ids: tensor<2x3xi64>, %labels: tensor<2x3xi64>, %n: tensor<f32>) -> tensor<f32> {
  %table = trl.param "model.embed_tokens.weight" : tensor<8x4xf32>
  %w0 = trl.param "model.layers.0.mlp.weight" : tensor<4x4xf32>
  %g0 = trl.param "model.layers.0.norm.weight" : tensor<4xf32>
  %g1 = trl.param "model.layers.0.post_norm.weight" : tensor<4xf32>
  %w1 = trl.param "model.layers.1.mlp.weight" : tensor<4x4xf32>
  %h = trl.embedding %table, %ids : (tensor<8x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %a = trl.linear %h, %w0 : (tensor<2x3x4xf32>, tensor<4x4xf32>) -> tensor<2x3x4xf32>
  %b = trl.rms_norm %a, %g0 : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %b2 = trl.rms_norm %b, %g1 : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %c = trl.linear %b2, %w1 : (tensor<2x3x4xf32>, tensor<4x4xf32>) -> tensor<2x3x4xf32>
  %logits = trl.linear %c, %table : (tensor<2x3x4xf32>, tensor<8x4xf32>) -> tensor<2x3x8xf32>
  %sum = trl.cross_entropy %logits, %labels : (tensor<2x3x8xf32>, tensor<2x3xi64>) -> tensor<f32>
  %loss = trl.div %sum, %n : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return %loss : tensor<f32>
}

// A generation program (@decode of one token) reads a subset of the groups.
func.func @decode(%ids: tensor<2x1xi64>) -> tensor<2x1x8xf32> attributes {trl.generation} {
  %table = trl.param "model.embed_tokens.weight" : tensor<8x4xf32>
  %w0 = trl.param "model.layers.0.mlp.weight" : tensor<4x4xf32>
  %h = trl.embedding %table, %ids : (tensor<8x4xf32>, tensor<2x1xi64>) -> tensor<2x1x4xf32>
  %a = trl.linear %h, %w0 : (tensor<2x1x4xf32>, tensor<4x4xf32>) -> tensor<2x1x4xf32>
  %logits = trl.linear %a, %table : (tensor<2x1x4xf32>, tensor<8x4xf32>) -> tensor<2x1x8xf32>
  return %logits : tensor<2x1x8xf32>
}

// Groups: per layer (matrices and vectors apart), per module outside the
// layers; members start on 64-byte boundaries (16 elements), flat buffers
// are padded to a multiple of the world size (32 -> 33, 20 -> 21).
// CHECK: trl.zero = {groups = [{members = [{hf_transposed = false, name = "model.embed_tokens.weight", offset = 0 : i64, shape = array<i64: 8, 4>}], name = "model.embed_tokens", numel = 32 : i64, shard = 11 : i64}, {{.*}}name = "model.layers.0", numel = 16 : i64, shard = 6 : i64}, {members = [{hf_transposed = false, name = "model.layers.0.norm.weight", offset = 0 : i64, shape = array<i64: 4>}, {hf_transposed = false, name = "model.layers.0.post_norm.weight", offset = 16 : i64, shape = array<i64: 4>}], name = "model.layers.0/no_decay", numel = 20 : i64, shard = 7 : i64}, {{.*}}name = "model.layers.1"{{.*}}], stage = 3 : i64, world_size = 3 : i64}

// The accumulators are shards; the persistent parameters are shards.
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: %[[ACC_E:[^:]*]]: tensor<11xf32> {trl.state = "grad:zero3:model.embed_tokens"}, %[[ACC_0:[^:]*]]: tensor<6xf32> {trl.state = "grad:zero3:model.layers.0"}
// CHECK-SAME: -> (tensor<f32> {trl.output = "loss"}, tensor<11xf32> {trl.state = "grad:zero3:model.embed_tokens"}, tensor<6xf32> {trl.state = "grad:zero3:model.layers.0"}, tensor<7xf32> {trl.state = "grad:zero3:model.layers.0/no_decay"}, tensor<6xf32> {trl.state = "grad:zero3:model.layers.1"})
// CHECK: %[[SE:.*]] = trl.param "zero3:model.embed_tokens" : tensor<11xf32>
// CHECK: %[[S0:.*]] = trl.param "zero3:model.layers.0" : tensor<6xf32>
// CHECK-NOT: trl.param "model.
// Forward: each gather right before its group is needed, the next one
// prefetched before the current group computes; parameters are views.
// CHECK: %[[GE:.*]] = trl.all_gather %[[SE]] {group = "model.embed_tokens", phase = "forward", world_size = 3 : i64} : (tensor<11xf32>) -> tensor<33xf32>
// CHECK: %[[E:.*]] = trl.flat_view %[[GE]] {offset = 0 : i64} : (tensor<33xf32>) -> tensor<8x4xf32>
// CHECK: %[[G0:.*]] = trl.all_gather %[[S0]] {group = "model.layers.0", phase = "forward", prefetch, world_size = 3 : i64}
// CHECK: %[[W0:.*]] = trl.flat_view %[[G0]]
// CHECK: trl.embedding %[[E]]
// CHECK: trl.all_gather {{.*}}group = "model.layers.0/no_decay", phase = "forward", prefetch
// CHECK: trl.linear %{{.*}}, %[[W0]]
// CHECK: trl.cross_entropy
// Backward: gathered again (the forward copy was freed), gradients
// packed, reduce-scattered and added to the shard accumulator.
// CHECK: trl.all_gather %[[SE]] {group = "model.embed_tokens", phase = "backward"
// CHECK: %[[B0:.*]] = trl.all_gather %[[S0]] {group = "model.layers.0", phase = "backward", prefetch
// CHECK: %[[V0:.*]] = trl.flat_view %[[B0]]
// CHECK: trl.pack_flat %{{.*}}, %{{.*}} {offsets = array<i64: 0, 16>} : (tensor<4xf32>, tensor<4xf32>) -> tensor<21xf32>
// CHECK: %{{.*}}, %[[DW0:.*]] = trl.linear_grad %{{.*}}, %{{.*}}, %[[V0]] :
// CHECK: %[[P0:.*]] = trl.pack_flat %[[DW0]] {offsets = array<i64: 0>} : (tensor<4x4xf32>) -> tensor<18xf32>
// CHECK: %[[R0:.*]] = trl.reduce_scatter %[[P0]] {group = "model.layers.0", world_size = 3 : i64} : (tensor<18xf32>) -> tensor<6xf32>
// CHECK: %[[N0:.*]] = trl.add %[[ACC_0]], %[[R0]] : tensor<6xf32>
// CHECK: %[[PE:.*]] = trl.pack_flat %{{.*}} {offsets = array<i64: 0>} : (tensor<8x4xf32>) -> tensor<33xf32>
// CHECK: %[[RE:.*]] = trl.reduce_scatter %[[PE]]
// CHECK: %[[NE:.*]] = trl.add %[[ACC_E]], %[[RE]] : tensor<11xf32>
// CHECK: return %{{.*}}, %[[NE]], %[[N0]],

// gather-for-generation (ds3_gather_for_generation = true): @decode reads
// views of the gathered model, state that @gather_model fills once per
// generation (all_gather into it); no collective per token.
// GEN-LABEL: func.func @decode
// GEN-SAME: (%{{[^:]*}}: tensor<2x1xi64>, %[[FE:[^:]*]]: tensor<33xf32> {trl.state = "gathered:model.embed_tokens"}, %[[F0:[^:]*]]: tensor<18xf32> {trl.state = "gathered:model.layers.0"})
// GEN-NOT: trl.all_gather
// GEN: %[[E:.*]] = trl.flat_view %[[FE]] {offset = 0 : i64} : (tensor<33xf32>) -> tensor<8x4xf32>
// GEN: %[[W:.*]] = trl.flat_view %[[F0]] {offset = 0 : i64} : (tensor<18xf32>) -> tensor<4x4xf32>
// GEN: trl.embedding %[[E]]
// GEN: trl.linear %{{.*}}, %[[W]]

// The optimizer: the global norm sums every rank's squares; AdamW on the
// shards, matrices decayed, vectors not.
// CHECK-LABEL: func.func @optimizer_step
// CHECK-SAME: %[[STEP:[^:]*]]: tensor<i64> {trl.input = "step"}, %[[GE2:[^:]*]]: tensor<11xf32> {trl.state = "grad:zero3:model.embed_tokens"}
// CHECK: %[[SQ:.*]] = trl.grad_norm %[[GE2]], %{{.*}}, %{{.*}}, %{{.*}} {squared}
// CHECK: %[[TOT:.*]] = trl.all_reduce %[[SQ]] {world_size = 3 : i64} : tensor<f32>
// CHECK: %[[NORM:.*]] = trl.sqrt %[[TOT]] : tensor<f32>
// CHECK: trl.param "zero3:model.embed_tokens" : tensor<11xf32>
// CHECK: trl.adamw {{.*}}, %[[GE2]], {{.*}} clip %[[NORM]] {max_grad_norm = 1.000000e+00 : f64, weight_decay = 1.000000e-01 : f64} : (tensor<11xf32>
// CHECK: trl.param "zero3:model.layers.0/no_decay" : tensor<7xf32>
// CHECK: trl.adamw {{.*}} clip %[[NORM]] {max_grad_norm = 1.000000e+00 : f64} : (tensor<7xf32>
// CHECK: return %[[NORM]]

// NOPREFETCH-NOT: prefetch
// NOPREFETCH: trl.embedding
// NOPREFETCH: trl.all_gather {{.*}}group = "model.layers.0", phase = "forward"
// NOPREFETCH-NEXT: trl.flat_view
// NOPREFETCH-NEXT: trl.linear

// Stage 0 keeps the parameters replicated (the runtime all-reduces).
// STAGE0-NOT: trl.all_gather
// STAGE0: trl.param "model.embed_tokens.weight"
// STAGE2: trl-zero3-shard: ZeRO stage 2 is not implemented (use 0 or 3)
// ORDER: trl-zero3-shard needs @train_step and @optimizer_step (run trl-optimizer first)

// ... filled by @gather_model, one all_gather per group into the state.
// GEN-LABEL: func.func @gather_model() -> (tensor<33xf32> {trl.state = "gathered:model.embed_tokens"}, tensor<18xf32> {trl.state = "gathered:model.layers.0"}) attributes {trl.generation}
// GEN: %[[S:.*]] = trl.param "zero3:model.embed_tokens" : tensor<11xf32>
// GEN: trl.all_gather %[[S]] {group = "model.embed_tokens", phase = "generation", world_size = 3 : i64} : (tensor<11xf32>) -> tensor<33xf32>
// GEN: trl.all_gather %{{.*}} {group = "model.layers.0", phase = "generation", world_size = 3 : i64} : (tensor<6xf32>) -> tensor<18xf32>
// GEN-NOT: trl.all_gather

// false: @decode gathers like the step's forward, every call.
// LAYERS-LABEL: func.func @decode(%{{[^:]*}}: tensor<2x1xi64>) -> tensor<2x1x8xf32>
// LAYERS: trl.all_gather %{{.*}} {group = "model.embed_tokens", phase = "forward", world_size = 3 : i64}
// LAYERS: trl.all_gather %{{.*}} {group = "model.layers.0", phase = "forward", prefetch, world_size = 3 : i64}
// LAYERS: trl.linear
// LAYERS-NOT: @gather_model
