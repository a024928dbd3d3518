// RUN: trl-opt %s -trl-autodiff -split-input-file -verify-diagnostics | FileCheck %s

// A tied head: the embedding table is read once and used twice, so its
// gradient is the sum of the embedding and lm_head cotangents. The frozen
// reference parameter gets no gradient.
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: -> (tensor<f32> {trl.output = "loss"}, tensor<8x4xf32> {trl.grad = "embed"}, tensor<4xf32> {trl.grad = "norm"})
func.func @train_step(%ids: tensor<2x3xi64>, %labels: tensor<2x3xi64>, %n: tensor<f32>) -> tensor<f32> {
  %table = trl.param "embed" : tensor<8x4xf32>
  %w = trl.param "norm" : tensor<4xf32>
  %frozen = trl.param "ref" {set = "reference", trainable = false} : tensor<4xf32>
  %h = trl.embedding %table, %ids : (tensor<8x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %n1 = trl.rms_norm %h, %w : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %n2 = trl.rms_norm %n1, %frozen : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
  %logits = trl.linear %n2, %table : (tensor<2x3x4xf32>, tensor<8x4xf32>) -> tensor<2x3x8xf32>
  %sum = trl.cross_entropy %logits, %labels : (tensor<2x3x8xf32>, tensor<2x3xi64>) -> tensor<f32>
  %loss = trl.div %sum, %n : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// The seed, then the chain in reverse.
// CHECK: %[[ONE:.*]] = trl.fill {value = 1.000000e+00 : f64} : tensor<f32>
// CHECK: %[[DSUM:.*]] = trl.div %[[ONE]], %arg2
// CHECK: %[[DLOGITS:.*]] = trl.cross_entropy_grad %[[DSUM]], %{{.*}}, %arg1
// CHECK: %[[DN2:.*]], %[[DHEAD:.*]] = trl.linear_grad %[[DLOGITS]]
// CHECK: %[[DN1:.*]], %{{.*}} = trl.rms_norm_grad %[[DN2]]
// CHECK: %[[DH:.*]], %[[DW:.*]] = trl.rms_norm_grad %[[DN1]]
// CHECK: %[[DEMB:.*]] = trl.embedding_grad %[[DH]], %arg0
// CHECK: %[[DTABLE:.*]] = trl.add %[[DHEAD]], %[[DEMB]]
// CHECK: return %{{.*}}, %[[DTABLE]], %[[DW]]

// -----

// Split's VJP concatenates, with zeros for parts that do not reach the loss.
// CHECK-LABEL: func.func @train_step
func.func @train_step(%labels: tensor<2xi64>) -> tensor<f32> {
  %w = trl.param "w" : tensor<2x6xf32>
  %a, %b = trl.split %w {axis = 1 : i64} : (tensor<2x6xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>)
  %s = trl.cross_entropy %a, %labels : (tensor<2x3xf32>, tensor<2xi64>) -> tensor<f32>
  return %s : tensor<f32>
}
// CHECK: %[[DA:.*]] = trl.cross_entropy_grad
// CHECK: %[[Z:.*]] = trl.fill {value = 0.000000e+00 : f64} : tensor<2x3xf32>
// CHECK: %[[DW:.*]] = trl.concat %[[DA]], %[[Z]] {axis = 1 : i64}
// CHECK: return %{{.*}}, %[[DW]]

// -----

// An op without a vector-Jacobian product on the loss's path is an error.
func.func @train_step(%labels: tensor<2xi64>) -> tensor<f32> {
  %w = trl.param "w" : tensor<2x3xf32>
  // expected-error @+1 {{has no vector-Jacobian product}}
  %b = trl.broadcast %w {world_size = 2 : i64} : tensor<2x3xf32>
  %s = trl.cross_entropy %b, %labels : (tensor<2x3xf32>, tensor<2xi64>) -> tensor<f32>
  return %s : tensor<f32>
}

// -----

// A loss that no trainable parameter reaches cannot be trained.
// expected-error @+1 {{the loss does not depend on any trainable parameter}}
func.func @train_step(%labels: tensor<2xi64>) -> tensor<f32> {
  %w = trl.param "w" {trainable = false, set = "reference"} : tensor<2x3xf32>
  %s = trl.cross_entropy %w, %labels : (tensor<2x3xf32>, tensor<2xi64>) -> tensor<f32>
  return %s : tensor<f32>
}
