// RUN: trl-opt %s -trl-autodiff -trl-offload-remat=layers=true | FileCheck %s
// RUN: trl-opt %s -trl-autodiff -trl-offload-remat="layers=true offload=true min-bytes=1" | FileCheck %s --check-prefix=OFF
// RUN: trl-opt %s -trl-autodiff -trl-offload-remat="layers=true recompute=true" | FileCheck %s --check-prefix=CHECK

// trl-offload-remat's layers option (Hugging Face gradient checkpointing):
// two tagged decoder layers. Each keeps its input (the residual stream
// entering it) and its output; its whole forward, the products too, is
// cloned before the first backward use of what else it saved, and the
// backward reads the clones. The untagged adapter-like product %a1 reads
// layer "0" alone, so it belongs to it. The final norm (tag "") is no
// layer.
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: trl.recomputed_layers = 2 : i64
// CHECK: %[[X0:.*]] = trl.embedding
// CHECK: %[[N0:.*]] = trl.rms_norm %[[X0]], %{{.*}} {trl.layer = "0"}
// CHECK: %[[X1:.*]] = trl.add %[[X0]], %{{.*}} {trl.layer = "0"}
// CHECK: %[[X2:.*]] = trl.add %[[X1]], %{{.*}} {trl.layer = "1"}
// CHECK: trl.cross_entropy
// Layer 1's backward starts with its forward again, from its input X1.
// CHECK: trl.rms_norm_grad %{{.*}}, %[[X2]]
// (GELU's backward reads its input: the GELU itself is not recomputed,
// nor the residual add.)
// CHECK: %[[N1R:.*]] = trl.rms_norm %[[X1]], %{{.*}} {trl.layer = "1", trl.recomputed}
// CHECK-NEXT: %[[Y2R:.*]] = trl.linear %[[N1R]], %{{.*}} {trl.layer = "1", trl.recomputed}
// CHECK-NEXT: trl.gelu_grad %{{.*}}, %[[Y2R]]
// CHECK-NEXT: trl.linear_grad %{{.*}}, %[[N1R]]
// CHECK-NEXT: trl.rms_norm_grad %{{.*}}, %[[X1]]
// Layer 0 the same, with the adapter product.
// CHECK: %[[N0R:.*]] = trl.rms_norm %[[X0]], %{{.*}} {trl.layer = "0", trl.recomputed}
// CHECK: trl.linear %[[N0R]], %{{.*}} {trl.recomputed}
// CHECK: trl.linear_grad %{{.*}}, %[[N0R]]
// CHECK-NOT: trl.linear_grad %{{.*}}, %[[N0]],
// OFF: trl.recomputed_layers = 2 : i64
// The checkpoints themselves go to the host (offloaded checkpoints).
// OFF: trl.offload %{{.*}} : (tensor<2x8x16xf32>) -> tensor<2x8x16xf32, #trl.space<host>>
// OFF: trl.reload
func.func @train_step(%ids: tensor<2x8xi64> {trl.input = "input_ids"}, %labels: tensor<2x8xi64> {trl.input = "labels"}, %n: tensor<f32> {trl.input = "num_items_in_batch"}) -> (tensor<f32> {trl.output = "loss"}) {
  %table = trl.param "embed" : tensor<32x16xf32>
  %nw0 = trl.param "l0.norm" : tensor<16xf32>
  %w0 = trl.param "l0.w" : tensor<16x16xf32>
  %a0 = trl.param "l0.a" : tensor<16x16xf32>
  %nw1 = trl.param "l1.norm" : tensor<16xf32>
  %w1 = trl.param "l1.w" : tensor<16x16xf32>
  %fw = trl.param "final" : tensor<16xf32>
  %x0 = trl.embedding %table, %ids : (tensor<32x16xf32>, tensor<2x8xi64>) -> tensor<2x8x16xf32>
  %n0 = trl.rms_norm %x0, %nw0 {trl.layer = "0"} : (tensor<2x8x16xf32>, tensor<16xf32>) -> tensor<2x8x16xf32>
  %y0 = trl.linear %n0, %w0 {trl.layer = "0"} : (tensor<2x8x16xf32>, tensor<16x16xf32>) -> tensor<2x8x16xf32>
  %a1 = trl.linear %n0, %a0 : (tensor<2x8x16xf32>, tensor<16x16xf32>) -> tensor<2x8x16xf32>
  %y1 = trl.add %y0, %a1 : tensor<2x8x16xf32>
  %g0 = trl.gelu %y1 {trl.layer = "0"} : tensor<2x8x16xf32>
  %x1 = trl.add %x0, %g0 {trl.layer = "0"} : tensor<2x8x16xf32>
  %n1 = trl.rms_norm %x1, %nw1 {trl.layer = "1"} : (tensor<2x8x16xf32>, tensor<16xf32>) -> tensor<2x8x16xf32>
  %y2 = trl.linear %n1, %w1 {trl.layer = "1"} : (tensor<2x8x16xf32>, tensor<16x16xf32>) -> tensor<2x8x16xf32>
  %g1 = trl.gelu %y2 {trl.layer = "1"} : tensor<2x8x16xf32>
  %x2 = trl.add %x1, %g1 {trl.layer = "1"} : tensor<2x8x16xf32>
  %f = trl.rms_norm %x2, %fw {trl.layer = ""} : (tensor<2x8x16xf32>, tensor<16xf32>) -> tensor<2x8x16xf32>
  %logits = trl.linear %f, %table : (tensor<2x8x16xf32>, tensor<32x16xf32>) -> tensor<2x8x32xf32>
  %sum = trl.cross_entropy %logits, %labels : (tensor<2x8x32xf32>, tensor<2x8xi64>) -> tensor<f32>
  %loss = trl.div %sum, %n : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return %loss : tensor<f32>
}
