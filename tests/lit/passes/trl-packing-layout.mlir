// RUN: trl-opt %s -trl-packing-layout -split-input-file -verify-diagnostics | FileCheck %s

// Padded attention over [2, 8] becomes varlen attention over the 16
// tokens flattened, delimited by a new cu_seqlens input (16 + 1 offsets);
// the mask is no longer read and the result is reshaped back.
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: %[[CU:[a-z0-9]+]]: tensor<17xi32> {trl.input = "cu_seqlens"}
// CHECK: %[[Q:.*]] = trl.reshape %{{.*}} : (tensor<2x8x4x16xf32>) -> tensor<16x4x16xf32>
// CHECK: %[[K:.*]] = trl.reshape %{{.*}} : (tensor<2x8x2x16xf32>) -> tensor<16x2x16xf32>
// CHECK: %[[V:.*]] = trl.reshape %{{.*}} : (tensor<2x8x2x16xf32>) -> tensor<16x2x16xf32>
// CHECK: %[[O:.*]], %{{.*}} = trl.attention %[[Q]], %[[K]], %[[V]] cu_seqlens %[[CU]] {layout = #trl.layout<varlen>, max_seqlen = 8 : i64, scale = 2.500000e-01 : f64} : (tensor<16x4x16xf32>, tensor<16x2x16xf32>, tensor<16x2x16xf32>, tensor<17xi32>) -> (tensor<16x4x16xf32>, tensor<4x16xf32>)
// CHECK: %[[BACK:.*]] = trl.reshape %[[O]] : (tensor<16x4x16xf32>) -> tensor<2x8x4x16xf32>
// CHECK: return %[[BACK]]
// CHECK-NOT: layout = #trl.layout<padded>
func.func @train_step(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>, %v: tensor<2x8x2x16xf32>,
                      %mask: tensor<2x8xi64> {trl.input = "attention_mask"}) -> tensor<2x8x4x16xf32> {
  %o, %lse = trl.attention %q, %k, %v mask %mask {layout = #trl.layout<padded>, causal = true, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8xi64>) -> (tensor<2x8x4x16xf32>, tensor<2x4x8xf32>)
  return %o : tensor<2x8x4x16xf32>
}

// -----

// Already differentiated: the backward reads the log-sum-exp, so the
// layout can no longer change.
func.func @train_step(%q: tensor<1x4x2x8xf32>, %k: tensor<1x4x2x8xf32>, %v: tensor<1x4x2x8xf32>) -> (tensor<1x4x2x8xf32>, tensor<1x2x4xf32>) {
  // expected-error @+1 {{trl-packing-layout runs before trl-autodiff}}
  %o, %lse = trl.attention %q, %k, %v {layout = #trl.layout<padded>, causal = true, scale = 0.25 : f64}
      : (tensor<1x4x2x8xf32>, tensor<1x4x2x8xf32>, tensor<1x4x2x8xf32>) -> (tensor<1x4x2x8xf32>, tensor<1x2x4xf32>)
  return %o, %lse : tensor<1x4x2x8xf32>, tensor<1x2x4xf32>
}

// -----

// Nothing to do without attention (and no cu_seqlens input is added).
// CHECK-LABEL: func.func @train_step
// CHECK-NOT: cu_seqlens
func.func @train_step(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  return %x : tensor<2x3xf32>
}
