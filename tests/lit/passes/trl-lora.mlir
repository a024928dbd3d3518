// RUN: trl-opt %s -split-input-file -trl-lora="targets=q_proj rank=2 alpha=4" | FileCheck %s
// RUN: trl-opt %s -split-input-file -trl-lora="targets=q_proj rank=4 alpha=4 rslora=true" | FileCheck %s --check-prefix=RS
// RUN: not trl-opt %s -split-input-file -trl-lora="targets=qproj" 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: trl-opt %s -split-input-file -trl-lora="targets=q_proj rank=2 alpha=4 dropout=0.1 keep=value_model." | FileCheck %s --check-prefix=DROP
// RUN: not trl-opt %s -split-input-file -trl-lora="targets=q_proj dropout=1.0" 2>&1 | FileCheck %s --check-prefix=BADP

// The targeted linear gains A [2, 4] and B [6, 2] (PEFT's names and
// layout) and adds B(A(x) x alpha / r) (the rank-2 activation divided by
// r / alpha = 0.5); the
// untargeted one keeps its weight, now frozen like every base parameter;
// the reference reads the same frozen base weights (adapters off), not a
// copy of its own.
// CHECK-LABEL: func.func @train_step
// CHECK-DAG: %[[E:.*]] = trl.param "model.embed_tokens.weight" {trainable = false} : tensor<8x4xf32>
// CHECK-DAG: %[[Q:.*]] = trl.param "model.layers.0.self_attn.q_proj.weight" {trainable = false} : tensor<6x4xf32>
// CHECK-DAG: %[[K:.*]] = trl.param "model.layers.0.self_attn.k_proj.weight" {trainable = false} : tensor<6x4xf32>
// CHECK: %[[Y:.*]] = trl.linear %[[X:.*]], %[[Q]] : (tensor<2x3x4xf32>, tensor<6x4xf32>) -> tensor<2x3x6xf32>
// CHECK: %[[A:.*]] = trl.param "model.layers.0.self_attn.q_proj.lora_A.weight" : tensor<2x4xf32>
// CHECK: %[[B:.*]] = trl.param "model.layers.0.self_attn.q_proj.lora_B.weight" : tensor<6x2xf32>
// CHECK: %[[H:.*]] = trl.linear %[[X]], %[[A]] : (tensor<2x3x4xf32>, tensor<2x4xf32>) -> tensor<2x3x2xf32>
// CHECK: %[[S:.*]] = trl.fill {value = 5.000000e-01 : f64} : tensor<f32>
// CHECK: %[[HS:.*]] = trl.div %[[H]], %[[S]] : (tensor<2x3x2xf32>, tensor<f32>) -> tensor<2x3x2xf32>
// CHECK: %[[D:.*]] = trl.linear %[[HS]], %[[B]] : (tensor<2x3x2xf32>, tensor<6x2xf32>) -> tensor<2x3x6xf32>
// CHECK: %[[SUM:.*]] = trl.add %[[Y]], %[[D]] : tensor<2x3x6xf32>
// CHECK: trl.linear %[[X]], %[[K]]
// CHECK-NOT: set = "reference"
// CHECK: trl.add %[[SUM]]
// rsLoRA: alpha / sqrt(r) = 4 / 2, so the update is divided by 0.5.
// RS: trl.fill {value = 5.000000e-01 : f64}
// BAD: error: trl-lora: target module "qproj" names no linear layer of the model
func.func @train_step(%ids: tensor<2x3xi64>) -> tensor<2x3x6xf32> {
  %table = trl.param "model.embed_tokens.weight" : tensor<8x4xf32>
  %wq = trl.param "model.layers.0.self_attn.q_proj.weight" : tensor<6x4xf32>
  %wk = trl.param "model.layers.0.self_attn.k_proj.weight" : tensor<6x4xf32>
  %rq = trl.param "model.layers.0.self_attn.q_proj.weight" {set = "reference", trainable = false} : tensor<6x4xf32>
  %x = trl.embedding %table, %ids : (tensor<8x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %q = trl.linear %x, %wq : (tensor<2x3x4xf32>, tensor<6x4xf32>) -> tensor<2x3x6xf32>
  %k = trl.linear %x, %wk : (tensor<2x3x4xf32>, tensor<6x4xf32>) -> tensor<2x3x6xf32>
  %r = trl.linear %x, %rq : (tensor<2x3x4xf32>, tensor<6x4xf32>) -> tensor<2x3x6xf32>
  %s = trl.add %q, %k : tensor<2x3x6xf32>
  %t = trl.add %s, %r : tensor<2x3x6xf32>
  return %t : tensor<2x3x6xf32>
}

// -----

// lora_dropout: in @train_step the adapter reads trl.dropout(x) (one
// stream per adapter) seeded by a new `dropout_seed` input; @prefill's
// adapter reads x itself (no dropout outside training). A `keep` prefix
// (PPO's value model) gets no adapter and stays trainable.
// DROP-LABEL: func.func @train_step
// DROP-SAME: %[[SEED:[a-z0-9]+]]: tensor<i64> {trl.input = "dropout_seed"}
// DROP: %[[VQ:.*]] = trl.param "value_model.model.layers.0.self_attn.q_proj.weight" : tensor<6x4xf32>
// DROP: %[[X0:.*]] = trl.dropout %[[X:.*]], %[[SEED]] {p = 1.000000e-01 : f64, stream = 0 : i64} : (tensor<2x3x4xf32>, tensor<i64>) -> tensor<2x3x4xf32>
// DROP: trl.linear %[[X0]], %{{.*}} : (tensor<2x3x4xf32>, tensor<2x4xf32>) -> tensor<2x3x2xf32>
// DROP: %[[X1:.*]] = trl.dropout %[[X]], %[[SEED]] {p = 1.000000e-01 : f64, stream = 1 : i64}
// DROP: trl.linear %[[X1]]
// DROP-NOT: value_model.model.layers.0.self_attn.q_proj.lora_A
// DROP-LABEL: func.func @prefill
// DROP-NOT: trl.dropout
// DROP: trl.param "model.layers.0.self_attn.q_proj.lora_A.weight"
// DROP-NOT: trl.dropout
// DROP: return
// BADP: error: trl-lora: dropout must be in [0, 1)
func.func @train_step(%ids: tensor<2x3xi64>) -> tensor<2x3x6xf32> {
  %table = trl.param "model.embed_tokens.weight" : tensor<8x4xf32>
  %wq = trl.param "model.layers.0.self_attn.q_proj.weight" : tensor<6x4xf32>
  %wq1 = trl.param "model.layers.1.self_attn.q_proj.weight" : tensor<6x4xf32>
  %vq = trl.param "value_model.model.layers.0.self_attn.q_proj.weight" : tensor<6x4xf32>
  %x = trl.embedding %table, %ids : (tensor<8x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %q = trl.linear %x, %wq : (tensor<2x3x4xf32>, tensor<6x4xf32>) -> tensor<2x3x6xf32>
  %q1 = trl.linear %x, %wq1 : (tensor<2x3x4xf32>, tensor<6x4xf32>) -> tensor<2x3x6xf32>
  %v = trl.linear %x, %vq : (tensor<2x3x4xf32>, tensor<6x4xf32>) -> tensor<2x3x6xf32>
  %s = trl.add %q, %q1 : tensor<2x3x6xf32>
  %t = trl.add %s, %v : tensor<2x3x6xf32>
  return %t : tensor<2x3x6xf32>
}
func.func @prefill(%ids: tensor<2x3xi64>) -> tensor<2x3x6xf32> {
  %table = trl.param "model.embed_tokens.weight" : tensor<8x4xf32>
  %wq = trl.param "model.layers.0.self_attn.q_proj.weight" : tensor<6x4xf32>
  %x = trl.embedding %table, %ids : (tensor<8x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %q = trl.linear %x, %wq : (tensor<2x3x4xf32>, tensor<6x4xf32>) -> tensor<2x3x6xf32>
  return %q : tensor<2x3x6xf32>
}
