// RUN: trl-opt %s -trl-autodiff -trl-offload-remat=offload=true | FileCheck %s --check-prefix=OFF
// RUN: trl-opt %s -trl-autodiff -trl-offload-remat=recompute=true | FileCheck %s --check-prefix=RE
// RUN: trl-opt %s -trl-autodiff -trl-offload-remat="offload=true recompute=true" | FileCheck %s --check-prefix=BOTH
// RUN: trl-opt %s -trl-autodiff -trl-offload-remat="offload=true min-bytes=8192" | FileCheck %s --check-prefix=BIG
// RUN: trl-opt %s -trl-autodiff -trl-offload-remat=max-cost=1e-10 | FileCheck %s --check-prefix=COST0
// RUN: trl-opt %s -trl-autodiff -trl-offload-remat=max-cost=5e-10 | FileCheck %s --check-prefix=COST1
// RUN: trl-opt %s -trl-autodiff -trl-offload-remat=max-cost=1e-9 | FileCheck %s --check-prefix=COST2
// RUN: not trl-opt %s -trl-autodiff -trl-offload-remat="max-cost=1e-9 profile=tpu" 2>&1 | FileCheck %s --check-prefix=PROFILE
// RUN: trl-opt %S/Inputs/offload-remat-before-autodiff.mlir -trl-offload-remat=offload=true -verify-diagnostics

// The backward reads the embedding output %h (rms_norm_grad), the norm's
// output %r (gelu_grad), the head input %g and the logits.
func.func @train_step(%ids: tensor<2x16xi64> {trl.input = "input_ids"}, %labels: tensor<2x16xi64> {trl.input = "labels"}, %n: tensor<f32> {trl.input = "num_items_in_batch"}) -> (tensor<f32> {trl.output = "loss"}) {
  %table = trl.param "embed" : tensor<64x32xf32>
  %w = trl.param "norm" : tensor<32xf32>
  %head = trl.param "head" : tensor<64x32xf32>
  %h = trl.embedding %table, %ids : (tensor<64x32xf32>, tensor<2x16xi64>) -> tensor<2x16x32xf32>
  %r = trl.rms_norm %h, %w : (tensor<2x16x32xf32>, tensor<32xf32>) -> tensor<2x16x32xf32>
  %g = trl.gelu %r : tensor<2x16x32xf32>
  %logits = trl.linear %g, %head : (tensor<2x16x32xf32>, tensor<64x32xf32>) -> tensor<2x16x64xf32>
  %sum = trl.cross_entropy %logits, %labels : (tensor<2x16x64xf32>, tensor<2x16xi64>) -> tensor<f32>
  %loss = trl.div %sum, %n : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return %loss : tensor<f32>
}

// Offload (TRL's rule): %h and %r (4 KiB each) go to the host after their
// last forward use and come back right before their first backward use;
// the output head's activations (%g, the logits) stay.
// OFF: attributes {trl.offloaded_bytes = 8.192000e+03 : f64, trl.offloaded_values = 2 : i64, trl.recomputed_flops = 0.000000e+00 : f64, trl.recomputed_values = 0 : i64,
// OFF: %[[H:.*]] = trl.embedding
// OFF-NEXT: %[[R:.*]] = trl.rms_norm %[[H]]
// OFF-NEXT: %[[HH:.*]] = trl.offload %[[H]] : (tensor<2x16x32xf32>) -> tensor<2x16x32xf32, #trl.space<host>>
// OFF-NEXT: %[[G:.*]] = trl.gelu %[[R]]
// OFF-NEXT: %[[RH:.*]] = trl.offload %[[R]]
// OFF-NEXT: %[[LOGITS:.*]] = trl.linear %[[G]]
// OFF: trl.linear_grad %{{.*}}, %[[G]]
// OFF-NEXT: %[[R2:.*]] = trl.reload %[[RH]] : (tensor<2x16x32xf32, #trl.space<host>>) -> tensor<2x16x32xf32>
// OFF-NEXT: trl.gelu_grad %{{.*}}, %[[R2]]
// OFF-NEXT: %[[H2:.*]] = trl.reload %[[HH]]
// OFF-NEXT: trl.rms_norm_grad %{{.*}}, %[[H2]]

// Recompute: %r is a norm of values the backward keeps anyway (%h and the
// weight), so a clone makes it again right before gelu_grad.
// RE: attributes {trl.offloaded_bytes = 0.000000e+00 : f64, trl.offloaded_values = 0 : i64, trl.recomputed_flops = 1.024000e+03 : f64, trl.recomputed_values = 1 : i64,
// RE: %[[H:.*]] = trl.embedding
// RE: trl.linear_grad
// RE-NEXT: %[[R2:.*]] = trl.rms_norm %[[H]], %{{.*}} {trl.recomputed}
// RE-NEXT: trl.gelu_grad %{{.*}}, %[[R2]]
// RE-NOT: trl.offload

// Both: %r is recomputed from %h, which is offloaded; the recomputation
// reads the reloaded copy.
// BOTH: attributes {trl.offloaded_bytes = 4.096000e+03 : f64, trl.offloaded_values = 1 : i64, trl.recomputed_flops = 1.024000e+03 : f64, trl.recomputed_values = 1 : i64,
// BOTH: trl.linear_grad
// BOTH-NEXT: %[[H2:.*]] = trl.reload
// BOTH-NEXT: %[[R2:.*]] = trl.rms_norm %[[H2]], %{{.*}} {trl.recomputed}
// BOTH-NEXT: trl.gelu_grad %{{.*}}, %[[R2]]
// BOTH-NEXT: trl.rms_norm_grad %{{.*}}, %[[H2]]

// The cost model (cpu profile: 5e10 FLOP/s, 1e10 B/s over the link, 1 us
// per copy or launch): recomputing %r costs about 2.6e-10 s per byte it
// frees, offloading %h (the only option for it) 6.9e-10. Each bound takes
// the decisions at or under it.
// COST0: trl.offloaded_values = 0 : i64, trl.recomputed_flops = 0.000000e+00 : f64, trl.recomputed_values = 0 : i64, trl.remat_overhead_s = 0.000000e+00 : f64
// COST1: trl.offloaded_values = 0 : i64, trl.recomputed_flops = {{.*}}, trl.recomputed_values = 1 : i64
// COST1: trl.rms_norm {{.*}} {trl.recomputed}
// COST2: trl.offloaded_values = 1 : i64, trl.recomputed_flops = {{.*}}, trl.recomputed_values = 1 : i64
// COST2: trl.offload
// PROFILE: unknown profile 'tpu' (cpu or cuda)

// Below min-bytes nothing moves.
// BIG: attributes {trl.offloaded_bytes = 0.000000e+00 : f64, trl.offloaded_values = 0 : i64, trl.recomputed_flops = 0.000000e+00 : f64, trl.recomputed_values = 0 : i64,
// BIG-NOT: trl.offload

