// RUN: trl-opt %s -trl-fuse-loss -split-input-file | FileCheck %s
// RUN: trl-opt %s -trl-fuse-loss=chunk-size=5 -split-input-file | FileCheck %s --check-prefix=FIXED

// lm_head + cross entropy: 32 rows, V = 256, H = 64, so Liger's rule gives
// next_power_of_2(ceil(32 / ceil(256 / 64))) = 8 rows per chunk; the
// [2, 16, 256] logits are gone.
// CHECK-LABEL: func.func @sft
// CHECK-NOT: trl.linear
// CHECK: %[[S:.*]] = trl.fused_linear_cross_entropy %arg0, %arg1, %arg2 {chunk_size = 8 : i64} : (tensor<2x16x64xf32>, tensor<256x64xf32>, tensor<2x16xi64>) -> tensor<f32>
// CHECK-NOT: tensor<2x16x256xf32>
// CHECK: return %[[S]]
// FIXED-LABEL: func.func @sft
// FIXED: trl.fused_linear_cross_entropy {{.*}} {chunk_size = 5 : i64}
func.func @sft(%h: tensor<2x16x64xf32>, %w: tensor<256x64xf32>, %labels: tensor<2x16xi64>) -> tensor<f32> {
  %logits = trl.linear %h, %w : (tensor<2x16x64xf32>, tensor<256x64xf32>) -> tensor<2x16x256xf32>
  %s = trl.cross_entropy %logits, %labels : (tensor<2x16x256xf32>, tensor<2x16xi64>) -> tensor<f32>
  return %s : tensor<f32>
}

// -----

// Per-token log-probabilities (DPO, KTO, GRPO) fuse the same way; the
// ignore index is kept.
// CHECK-LABEL: func.func @logps
// CHECK: trl.fused_linear_log_probs %arg0, %arg1, %arg2 {chunk_size = 8 : i64, ignore_index = -1 : i64} : (tensor<2x16x64xf32>, tensor<256x64xf32>, tensor<2x16xi64>) -> tensor<2x16xf32>
func.func @logps(%h: tensor<2x16x64xf32>, %w: tensor<256x64xf32>, %labels: tensor<2x16xi64>) -> tensor<2x16xf32> {
  %logits = trl.linear %h, %w : (tensor<2x16x64xf32>, tensor<256x64xf32>) -> tensor<2x16x256xf32>
  %lp = trl.log_probs %logits, %labels {ignore_index = -1 : i64} : (tensor<2x16x256xf32>, tensor<2x16xi64>) -> tensor<2x16xf32>
  return %lp : tensor<2x16xf32>
}

// -----

// Logits that are also returned (the eval program) must exist: unchanged.
// CHECK-LABEL: func.func @predict
// CHECK: trl.linear
// CHECK: trl.cross_entropy
func.func @predict(%h: tensor<2x16x64xf32>, %w: tensor<256x64xf32>, %labels: tensor<2x16xi64>) -> (tensor<f32>, tensor<2x16x256xf32>) {
  %logits = trl.linear %h, %w : (tensor<2x16x64xf32>, tensor<256x64xf32>) -> tensor<2x16x256xf32>
  %s = trl.cross_entropy %logits, %labels : (tensor<2x16x256xf32>, tensor<2x16xi64>) -> tensor<f32>
  return %s, %logits : tensor<f32>, tensor<2x16x256xf32>
}

// -----

// A head with a bias is not the fused op's form: unchanged.
// CHECK-LABEL: func.func @biased
// CHECK: trl.linear %arg0, %arg1 bias %arg3
// CHECK: trl.cross_entropy
func.func @biased(%h: tensor<2x16x64xf32>, %w: tensor<256x64xf32>, %labels: tensor<2x16xi64>, %b: tensor<256xf32>) -> tensor<f32> {
  %logits = trl.linear %h, %w bias %b : (tensor<2x16x64xf32>, tensor<256x64xf32>, tensor<256xf32>) -> tensor<2x16x256xf32>
  %s = trl.cross_entropy %logits, %labels : (tensor<2x16x256xf32>, tensor<2x16xi64>) -> tensor<f32>
  return %s : tensor<f32>
}
