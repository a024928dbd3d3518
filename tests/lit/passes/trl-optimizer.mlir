// RUN: trl-opt %s -trl-optimizer="max-grad-norm=1.0 learning-rate=0.001 schedule=cosine warmup-steps=2 total-steps=10 weight-decay=0.01" | FileCheck %s
// RUN: trl-opt %s -trl-optimizer="max-grad-norm=0" | FileCheck %s --check-prefix=NOCLIP
// RUN: not trl-opt %s -trl-optimizer="schedule=exponential" 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: trl-opt %S/Inputs/linear-grad-step.mlir -trl-optimizer | FileCheck %s --check-prefix=FUSED

func.func @train_step(%x: tensor<2x4xf32>) -> (tensor<f32> {trl.output = "loss"}, tensor<3x4xf32> {trl.grad = "w"}, tensor<3xf32> {trl.grad = "b"}) {
  %w = trl.param "w" : tensor<3x4xf32>
  %b = trl.param "b" : tensor<3xf32>
  %l = trl.fill {value = 0.5 : f64} : tensor<f32>
  %gw = trl.fill {value = 1.0 : f64} : tensor<3x4xf32>
  %gb = trl.fill {value = 2.0 : f64} : tensor<3xf32>
  return %l, %gw, %gb : tensor<f32>, tensor<3x4xf32>, tensor<3xf32>
}

// Gradients accumulate into state carried between micro-batches.
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: %[[AW:[^:]*]]: tensor<3x4xf32> {trl.state = "grad:w"}, %[[AB:[^:]*]]: tensor<3xf32> {trl.state = "grad:b"})
// CHECK-SAME: -> (tensor<f32> {trl.output = "loss"}, tensor<3x4xf32> {trl.state = "grad:w"}, tensor<3xf32> {trl.state = "grad:b"})
// CHECK: %[[SW:.*]] = trl.add %[[AW]], %{{.*}} : tensor<3x4xf32>
// CHECK: %[[SB:.*]] = trl.add %[[AB]], %{{.*}} : tensor<3xf32>
// CHECK: return %{{.*}}, %[[SW]], %[[SB]]

// CHECK-LABEL: func.func @optimizer_step
// CHECK-SAME: %[[STEP:[^:]*]]: tensor<i64> {trl.input = "step"}, %[[GW:[^:]*]]: tensor<3x4xf32> {trl.state = "grad:w"}, %[[MW:[^:]*]]: tensor<3x4xf32> {trl.state = "exp_avg:w"}, %[[VW:[^:]*]]: tensor<3x4xf32> {trl.state = "exp_avg_sq:w"}
// CHECK-SAME: -> (tensor<f32> {trl.output = "grad_norm"}, tensor<f32> {trl.output = "learning_rate"}, tensor<3x4xf32> {trl.state = "param:w"}, tensor<3x4xf32> {trl.state = "exp_avg:w"}, tensor<3x4xf32> {trl.state = "exp_avg_sq:w"}, tensor<3x4xf32> {trl.state = "grad:w"}
// CHECK: %[[NORM:.*]] = trl.grad_norm %[[GW]], %{{.*}}
// CHECK: %[[LR:.*]] = trl.lr_schedule %[[STEP]] {base_lr = 1.000000e-03 : f64, schedule = #trl.lr_schedule<cosine>, total_steps = 10 : i64, warmup_steps = 2 : i64}
// CHECK: %[[W:.*]] = trl.param "w" : tensor<3x4xf32>
// Matrices are decayed; vectors (biases, norm weights) are not. AdamW
// clips each gradient by the global norm itself: no clipped copies.
// CHECK-NOT: trl.clip_grad
// CHECK: trl.adamw %[[W]], %[[GW]], %[[MW]], %[[VW]], %[[LR]], %[[STEP]] clip %[[NORM]] {max_grad_norm = 1.000000e+00 : f64, weight_decay = 1.000000e-02 : f64}
// CHECK: %[[B:.*]] = trl.param "b" : tensor<3xf32>
// CHECK: trl.adamw %[[B]], %{{.*}} clip %[[NORM]] {max_grad_norm = 1.000000e+00 : f64} : (tensor<3xf32>
// CHECK: trl.fill {value = 0.000000e+00 : f64} : tensor<3xf32>

// NOCLIP-LABEL: func.func @optimizer_step
// NOCLIP: trl.grad_norm
// NOCLIP-NOT: clip
// NOCLIP: trl.adamw

// BAD: trl-optimizer: unknown schedule 'exponential' (constant, linear, cosine)

// A weight gradient that feeds only its accumulator is summed by the
// matrix product; one that feeds more (a tied head) keeps its add.
// FUSED-LABEL: func.func @train_step
// FUSED-SAME: %[[ACCW:[^:]*]]: tensor<5x4xf32> {trl.state = "grad:w"}, %[[ACCT:[^:]*]]: tensor<5x4xf32> {trl.state = "grad:tied"})
// FUSED: %{{.*}}, %[[DW:.*]] = trl.linear_grad %arg0, %arg1, %{{.*}} accumulate %[[ACCW]]
// FUSED: %{{.*}}, %[[DT:.*]] = trl.linear_grad %arg0, %arg1, %{{.*}} :
// FUSED: %[[SUM:.*]] = trl.add %[[DT]], %[[DT]]
// FUSED: %[[ACC2:.*]] = trl.add %[[ACCT]], %[[SUM]]
// FUSED: return %{{.*}}, %[[DW]], %[[ACC2]]
