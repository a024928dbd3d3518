// RUN: trl-opt %s -trl-plan-memory | FileCheck %s
// RUN: trl-opt %s -trl-plan-memory=alignment=512 | FileCheck %s --check-prefix=ALIGN
// RUN: not trl-opt %s -trl-plan-memory=alignment=48 2>&1 | FileCheck %s --check-prefix=BAD

// Liveness over the block order, largest first at the lowest free offset:
// an elementwise op writes into an operand that dies at it (%b and %c in
// %a's bytes, the sum in the reloaded copy's); a buffer whose value died is
// reused (the loss takes the sum's bytes); the reshape shares %c's bytes;
// the accumulator update is written into its state in place; the offloaded
// copy lives in the separate host region.
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: {trl.input = "x", trl.offset = 0 : i64}
// CHECK-SAME: attributes {trl.activation_bytes = 512 : i64, trl.host_bytes = 256 : i64}
// CHECK: %[[A:.*]] = trl.gelu %arg0 {trl.offsets = array<i64: 256>}
// CHECK: trl.offload %[[A]] {trl.offsets = array<i64: 0>}
// CHECK: %[[B:.*]] = trl.gelu %[[A]] {trl.offsets = array<i64: 256>}
// CHECK: %[[C:.*]] = trl.gelu %[[B]] {trl.offsets = array<i64: 256>}
// CHECK: trl.reshape %[[C]] {trl.offsets = array<i64: 256>}
// CHECK: trl.reload {{.*}} {trl.offsets = array<i64: 0>}
// CHECK: trl.add {{.*}} {trl.offsets = array<i64: 0>}
// CHECK: trl.add %arg1, {{.*}} {trl.in_place = ["grad:w"], trl.offsets = array<i64: -1>}
// CHECK: trl.fill {trl.offsets = array<i64: 0>
// ALIGN: trl.activation_bytes = 1024 : i64, trl.host_bytes = 512 : i64
// BAD: trl-plan-memory: alignment must be a power of two
func.func @train_step(%x: tensor<4x16xf32> {trl.input = "x"}, %acc: tensor<4x16xf32> {trl.state = "grad:w"}) -> (tensor<f32> {trl.output = "loss"}, tensor<4x16xf32> {trl.state = "grad:w"}, tensor<64xf32> {trl.output = "flat"}) {
  %a = trl.gelu %x : tensor<4x16xf32>
  %h = trl.offload %a : (tensor<4x16xf32>) -> tensor<4x16xf32, #trl.space<host>>
  %b = trl.gelu %a : tensor<4x16xf32>
  %c = trl.gelu %b : tensor<4x16xf32>
  %r = trl.reshape %c : (tensor<4x16xf32>) -> tensor<64xf32>
  %a2 = trl.reload %h : (tensor<4x16xf32, #trl.space<host>>) -> tensor<4x16xf32>
  %d = trl.add %c, %a2 : tensor<4x16xf32>
  %s = trl.add %acc, %d : tensor<4x16xf32>
  %loss = trl.fill {value = 0.0 : f64} : tensor<f32>
  return %loss, %s, %r : tensor<f32>, tensor<4x16xf32>, tensor<64xf32>
}

// ZeRO-3's @gather_model: each all_gather writes straight into the
// gathered-model state it is returned as, so the program needs no
// activation bytes of its own.
// CHECK-LABEL: func.func @gather_model
// CHECK-SAME: attributes {trl.activation_bytes = 0 : i64, trl.host_bytes = 0 : i64}
// CHECK: trl.all_gather {{.*}} {trl.in_place = ["gathered:g"], trl.offsets = array<i64: -1>, world_size = 2 : i64}
func.func @gather_model() -> (tensor<64xf32> {trl.state = "gathered:g"}) {
  %s = trl.param "zero3:g" : tensor<32xf32>
  %g = trl.all_gather %s {world_size = 2 : i64} : (tensor<32xf32>) -> tensor<64xf32>
  return %g : tensor<64xf32>
}
