// RUN: trl-opt %s -split-input-file -trl-autodiff -trl-mixed-precision -verify-diagnostics | FileCheck %s
// RUN: not trl-opt %s -split-input-file -trl-mixed-precision 2>&1 | FileCheck %s --check-prefix=ORDER

// A llama MLP block and an unfused head: the norm outputs, the gate/up
// products, the swiglu and the logits are stored in bf16, with the reshapes
// of a bf16 value; the down projection feeds the residual add and stays
// f32, as do the residual stream, the parameters and every gradient.
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: trl.bf16_bytes_saved = 504 : i64, trl.bf16_values = 8 : i64
// CHECK: %[[H:.*]] = trl.embedding {{.*}} -> tensor<2x3x4xf32>
// CHECK: %[[X:.*]] = trl.rms_norm %[[H]], {{.*}} -> tensor<2x3x4xbf16>
// CHECK: %[[G:.*]] = trl.linear %[[X]], {{.*}} -> tensor<2x3x6xbf16>
// CHECK: %[[U:.*]] = trl.linear %[[X]], {{.*}} -> tensor<2x3x6xbf16>
// CHECK: %[[A:.*]] = trl.swiglu %[[G]], %[[U]] : {{.*}} -> tensor<2x3x6xbf16>
// CHECK: %[[D:.*]] = trl.linear %[[A]], {{.*}} -> tensor<2x3x4xf32>
// CHECK: trl.add %[[H]], %[[D]] : tensor<2x3x4xf32>
// CHECK: trl.reshape {{.*}} : (tensor<2x3x4xbf16>) -> tensor<6x4xbf16>
// CHECK: trl.reshape {{.*}} : (tensor<6x4xbf16>) -> tensor<2x3x4xbf16>
// CHECK: %[[L:.*]] = trl.linear {{.*}} -> tensor<2x3x8xbf16>
// CHECK: trl.cross_entropy %[[L]], {{.*}} -> tensor<f32>
// CHECK: trl.cross_entropy_grad {{.*}} -> tensor<2x3x8xf32>
// CHECK: trl.swiglu_grad {{.*}} : (tensor<2x3x6xf32>, tensor<2x3x6xbf16>, tensor<2x3x6xbf16>) -> (tensor<2x3x6xf32>, tensor<2x3x6xf32>)
// CHECK: return {{.*}} : tensor<f32>, tensor<8x4xf32>, tensor<4xf32>, tensor<6x4xf32>, tensor<6x4xf32>, tensor<4x6xf32>
func.func @train_step(%ids: tensor<2x3xi64>, %labels: tensor<2x3xi64>, %n: tensor<f32>) -> tensor<f32> {
  %table = trl.param "embed" : tensor<8x4xf32>
  %nw = trl.param "norm" : tensor<4xf32>
  %wg = trl.param "gate" : tensor<6x4xf32>
  %wu = trl.param "up" : tensor<6x4xf32>
  %wd = trl.param "down" : tensor<4x6xf32>
  %h = trl.embedding %table, %ids : (tensor<8x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %x = trl.rms_norm %h, %nw : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %g = trl.linear %x, %wg : (tensor<2x3x4xf32>, tensor<6x4xf32>) -> tensor<2x3x6xf32>
  %u = trl.linear %x, %wu : (tensor<2x3x4xf32>, tensor<6x4xf32>) -> tensor<2x3x6xf32>
  %a = trl.swiglu %g, %u : (tensor<2x3x6xf32>, tensor<2x3x6xf32>) -> tensor<2x3x6xf32>
  %d = trl.linear %a, %wd : (tensor<2x3x6xf32>, tensor<4x6xf32>) -> tensor<2x3x4xf32>
  %r = trl.add %h, %d : tensor<2x3x4xf32>
  %y = trl.rms_norm %r, %nw : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %flat = trl.reshape %y : (tensor<2x3x4xf32>) -> tensor<6x4xf32>
  %back = trl.reshape %flat : (tensor<6x4xf32>) -> tensor<2x3x4xf32>
  %logits = trl.linear %back, %table : (tensor<2x3x4xf32>, tensor<8x4xf32>) -> tensor<2x3x8xf32>
  %sum = trl.cross_entropy %logits, %labels : (tensor<2x3x8xf32>, tensor<2x3xi64>) -> tensor<f32>
  %loss = trl.div %sum, %n : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return %loss : tensor<f32>
}

// -----

// Groups: gelu ties its input and result to one element type, and the
// residual add ties the gelu result to the f32 stream, so the product
// feeding gelu stays f32 as well. The head's logits and their reshape go
// bf16 together.
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: trl.bf16_values = 2 : i64
// CHECK: trl.linear {{.*}} -> tensor<2x3x4xf32>
// CHECK: trl.gelu {{.*}} : tensor<2x3x4xf32>
// CHECK: trl.add {{.*}} : tensor<2x3x4xf32>
// CHECK: trl.linear {{.*}} -> tensor<2x3x8xbf16>
// CHECK: trl.reshape {{.*}} : (tensor<2x3x8xbf16>) -> tensor<6x8xbf16>
// CHECK: trl.gelu_grad {{.*}} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
func.func @train_step(%ids: tensor<2x3xi64>, %labels: tensor<2x3xi64>) -> tensor<f32> {
  %table = trl.param "embed" : tensor<8x4xf32>
  %w = trl.param "fc" : tensor<4x4xf32>
  %h = trl.embedding %table, %ids : (tensor<8x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %f = trl.linear %h, %w : (tensor<2x3x4xf32>, tensor<4x4xf32>) -> tensor<2x3x4xf32>
  %a = trl.gelu %f {approximate = #trl.gelu<tanh>} : tensor<2x3x4xf32>
  %r = trl.add %h, %a : tensor<2x3x4xf32>
  %logits = trl.linear %r, %table : (tensor<2x3x4xf32>, tensor<8x4xf32>) -> tensor<2x3x8xf32>
  %flat = trl.reshape %logits : (tensor<2x3x8xf32>) -> tensor<6x8xf32>
  %loss = trl.cross_entropy %logits, %labels : (tensor<2x3x8xf32>, tensor<2x3xi64>) -> tensor<f32>
  return %loss : tensor<f32>
}

// Before trl-autodiff there is no loss result to find the forward by.
// ORDER: error: {{.*}}trl-mixed-precision runs after trl-autodiff (no loss result found)

// -----

// A frozen reference's weights are stored in bf16 (it is only read); the
// trained parameters stay f32 master weights.
// CHECK-LABEL: func.func @train_step
// CHECK: trl.param "w" : tensor<8x4xf32>
// CHECK: trl.param "w" {set = "reference", trainable = false} : tensor<8x4xbf16>
// CHECK: trl.linear {{.*}} : (tensor<2x3x4xf32>, tensor<8x4xbf16>) -> tensor<2x3x8xbf16>
func.func @train_step(%x: tensor<2x3x4xf32>, %labels: tensor<2x3xi64>) -> tensor<f32> {
  %w = trl.param "w" : tensor<8x4xf32>
  %ref = trl.param "w" {set = "reference", trainable = false} : tensor<8x4xf32>
  %lp = trl.linear %x, %w : (tensor<2x3x4xf32>, tensor<8x4xf32>) -> tensor<2x3x8xf32>
  %lr = trl.linear %x, %ref : (tensor<2x3x4xf32>, tensor<8x4xf32>) -> tensor<2x3x8xf32>
  %p = trl.log_probs %lp, %labels : (tensor<2x3x8xf32>, tensor<2x3xi64>) -> tensor<2x3xf32>
  %r = trl.log_probs %lr, %labels : (tensor<2x3x8xf32>, tensor<2x3xi64>) -> tensor<2x3xf32>
  %d = trl.add %p, %r : tensor<2x3xf32>
  %one = trl.fill {value = 1.0 : f64} : tensor<2x3xf32>
  %s = trl.masked_sum %d, %one : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2xf32>
  %h:2 = trl.split %s {axis = 0 : i64} : (tensor<2xf32>) -> (tensor<1xf32>, tensor<1xf32>)
  %w1 = trl.fill {value = 1.0 : f64} : tensor<1xf32>
  %loss, %c, %rj = trl.dpo_loss %h#0, %h#1, %h#0, %h#1, %w1 : (tensor<1xf32>, tensor<1xf32>, tensor<1xf32>, tensor<1xf32>, tensor<1xf32>) -> (tensor<f32>, tensor<1xf32>, tensor<1xf32>)
  return %loss : tensor<f32>
}

// -----

// A forward pass marked trl.step_forward (RLOO's old log-probabilities)
// stores its activations as the step does, so both compute the same values;
// other functions (here @other) are left alone.
// CHECK-LABEL: func.func @train_step
// CHECK-LABEL: func.func @old_token_logps
// CHECK-SAME: trl.bf16_values = 2 : i64
// CHECK: trl.rms_norm {{.*}} -> tensor<2x3x4xbf16>
// CHECK: trl.linear {{.*}} -> tensor<2x3x8xbf16>
// CHECK-LABEL: func.func @other
// CHECK: trl.linear {{.*}} -> tensor<2x3x8xf32>
func.func @train_step(%x: tensor<2x3x4xf32>, %labels: tensor<2x3xi64>, %n: tensor<f32>) -> tensor<f32> {
  %g = trl.param "g" : tensor<4xf32>
  %w = trl.param "w" : tensor<8x4xf32>
  %h = trl.rms_norm %x, %g : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %l = trl.linear %h, %w : (tensor<2x3x4xf32>, tensor<8x4xf32>) -> tensor<2x3x8xf32>
  %s = trl.cross_entropy %l, %labels : (tensor<2x3x8xf32>, tensor<2x3xi64>) -> tensor<f32>
  %loss = trl.div %s, %n : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return %loss : tensor<f32>
}
func.func @old_token_logps(%x: tensor<2x3x4xf32>, %labels: tensor<2x3xi64>) -> tensor<2x3xf32> attributes {trl.step_forward} {
  %g = trl.param "g" : tensor<4xf32>
  %w = trl.param "w" : tensor<8x4xf32>
  %h = trl.rms_norm %x, %g : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %l = trl.linear %h, %w : (tensor<2x3x4xf32>, tensor<8x4xf32>) -> tensor<2x3x8xf32>
  %lp = trl.log_probs %l, %labels : (tensor<2x3x8xf32>, tensor<2x3xi64>) -> tensor<2x3xf32>
  return %lp : tensor<2x3xf32>
}
func.func @other(%x: tensor<2x3x4xf32>, %labels: tensor<2x3xi64>) -> tensor<2x3xf32> {
  %w = trl.param "w" : tensor<8x4xf32>
  %l = trl.linear %x, %w : (tensor<2x3x4xf32>, tensor<8x4xf32>) -> tensor<2x3x8xf32>
  %lp = trl.log_probs %l, %labels : (tensor<2x3x8xf32>, tensor<2x3xi64>) -> tensor<2x3xf32>
  return %lp : tensor<2x3xf32>
}

// -----

// A one-score head (reward modelling): trl.masked_sum reads f32 only, so
// the head's product and its reshape stay f32 while the norm before it
// goes bf16.
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: trl.bf16_values = 1 : i64
// CHECK: trl.rms_norm {{.*}} -> tensor<2x3x4xbf16>
// CHECK: trl.linear {{.*}} -> tensor<2x3x1xf32>
// CHECK: trl.reshape {{.*}} : (tensor<2x3x1xf32>) -> tensor<2x3xf32>
// CHECK: trl.masked_sum {{.*}} : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2xf32>
func.func @train_step(%ids: tensor<2x3xi64>, %last: tensor<2x3xf32>, %w: tensor<1x2xf32>) -> tensor<f32> {
  %table = trl.param "embed" : tensor<8x4xf32>
  %nw = trl.param "norm" : tensor<4xf32>
  %ws = trl.param "score" : tensor<1x4xf32>
  %h = trl.embedding %table, %ids : (tensor<8x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %x = trl.rms_norm %h, %nw : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %s = trl.linear %x, %ws : (tensor<2x3x4xf32>, tensor<1x4xf32>) -> tensor<2x3x1xf32>
  %s2 = trl.reshape %s : (tensor<2x3x1xf32>) -> tensor<2x3xf32>
  %scores = trl.masked_sum %s2, %last : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2xf32>
  %row = trl.reshape %scores : (tensor<2xf32>) -> tensor<1x2xf32>
  %total = trl.masked_sum %row, %w : (tensor<1x2xf32>, tensor<1x2xf32>) -> tensor<1xf32>
  %loss = trl.reshape %total : (tensor<1xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}

// -----

// A sum of two stored activations (trl-lora's base output + its update) is
// stored in bf16 with them; the residual add that reads the f32 stream is
// not.
// CHECK-LABEL: func.func @train_step
// CHECK: %[[Y:.*]] = trl.linear {{.*}} -> tensor<2x3x4xbf16>
// CHECK: %[[D:.*]] = trl.linear {{.*}} -> tensor<2x3x4xbf16>
// CHECK: %[[S:.*]] = trl.add %[[Y]], %[[D]] : tensor<2x3x4xbf16>
// CHECK: trl.rms_norm %[[S]]
func.func @train_step(%ids: tensor<2x3xi64>, %labels: tensor<2x3xi64>) -> tensor<f32> {
  %table = trl.param "embed" : tensor<8x4xf32>
  %nw = trl.param "norm" : tensor<4xf32>
  %w = trl.param "w" : tensor<4x4xf32>
  %a = trl.param "a" : tensor<2x4xf32>
  %b = trl.param "b" : tensor<4x2xf32>
  %h = trl.embedding %table, %ids : (tensor<8x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %x = trl.rms_norm %h, %nw : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %y = trl.linear %x, %w : (tensor<2x3x4xf32>, tensor<4x4xf32>) -> tensor<2x3x4xf32>
  %t = trl.linear %x, %a : (tensor<2x3x4xf32>, tensor<2x4xf32>) -> tensor<2x3x2xf32>
  %d = trl.linear %t, %b : (tensor<2x3x2xf32>, tensor<4x2xf32>) -> tensor<2x3x4xf32>
  %s = trl.add %y, %d : tensor<2x3x4xf32>
  %n = trl.rms_norm %s, %nw : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %r = trl.add %h, %n : tensor<2x3x4xf32>
  %logits = trl.linear %r, %table : (tensor<2x3x4xf32>, tensor<8x4xf32>) -> tensor<2x3x8xf32>
  %loss = trl.cross_entropy %logits, %labels : (tensor<2x3x8xf32>, tensor<2x3xi64>) -> tensor<f32>
  return %loss : tensor<f32>
}

// -----

// lora_dropout's dropout of a bf16 norm output is stored in bf16 with it
// (not its i64 seed); its backward over the f32 gradient stays f32.
// CHECK-LABEL: func.func @train_step
// CHECK: %[[X:.*]] = trl.rms_norm {{.*}} -> tensor<2x3x4xbf16>
// CHECK: %[[DX:.*]] = trl.dropout %[[X]], %{{.*}} {p = 1.000000e-01 : f64, stream = 0 : i64} : (tensor<2x3x4xbf16>, tensor<i64>) -> tensor<2x3x4xbf16>
// CHECK: trl.linear %[[DX]]
// CHECK: trl.dropout {{.*}} : (tensor<2x3x4xf32>, tensor<i64>) -> tensor<2x3x4xf32>
func.func @train_step(%ids: tensor<2x3xi64>, %labels: tensor<2x3xi64>, %seed: tensor<i64>) -> tensor<f32> {
  %table = trl.param "embed" : tensor<8x4xf32>
  %nw = trl.param "norm" : tensor<4xf32>
  %a = trl.param "a" : tensor<4x4xf32>
  %h = trl.embedding %table, %ids : (tensor<8x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %x = trl.rms_norm %h, %nw : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %dx = trl.dropout %x, %seed {p = 0.1 : f64, stream = 0 : i64} : (tensor<2x3x4xf32>, tensor<i64>) -> tensor<2x3x4xf32>
  %y = trl.linear %dx, %a : (tensor<2x3x4xf32>, tensor<4x4xf32>) -> tensor<2x3x4xf32>
  %r = trl.add %h, %y : tensor<2x3x4xf32>
  %logits = trl.linear %r, %table : (tensor<2x3x4xf32>, tensor<8x4xf32>) -> tensor<2x3x8xf32>
  %loss = trl.cross_entropy %logits, %labels : (tensor<2x3x8xf32>, tensor<2x3xi64>) -> tensor<f32>
  return %loss : tensor<f32>
}
