// RUN: trl-opt %s -trl-truncation-bounds -split-input-file -verify-diagnostics -allow-unregistered-dialect | FileCheck %s
// RUN: trl-opt %s -trl-truncation-bounds=data-max=16 -split-input-file -verify-diagnostics -allow-unregistered-dialect | FileCheck %s --check-prefix=FITS

// The step's bound is recorded on the module; a data plan whose longest
// row fits (here exactly) is accepted.
// CHECK: module attributes {trl.data = {max_length = 10 : i64}, trl.sequence_bound = #trl.seq_bound<max = 16, source = "max_length">}
// FITS: trl.sequence_bound = #trl.seq_bound<max = 16, source = "max_length">
module attributes {trl.data = {max_length = 10 : i64}} {
  func.func @train_step(%ids: tensor<4x16xi64> {trl.input = "input_ids", trl.seq_bound = #trl.seq_bound<max = 16, source = "max_length">}) -> tensor<4x16xi64> {
    return %ids : tensor<4x16xi64>
  }
}

// -----

// Rows longer than the bound would not fit the step.
module attributes {trl.data = {max_length = 40 : i64}} {
  // expected-error @+1 {{the data plan has rows of 40 tokens but the sequence bound is 16 (from max_length)}}
  func.func @train_step(%ids: tensor<4x16xi64> {trl.input = "input_ids", trl.seq_bound = #trl.seq_bound<max = 16, source = "max_length">}) -> tensor<4x16xi64> {
    return %ids : tensor<4x16xi64>
  }
}

// -----

// A bound must be the argument's sequence dimension.
// expected-error @+1 {{argument 0's trl.seq_bound 32 is not its sequence dimension}}
func.func @train_step(%ids: tensor<4x16xi64> {trl.input = "input_ids", trl.seq_bound = #trl.seq_bound<max = 32, source = "max_length">}) -> tensor<4x16xi64> {
  return %ids : tensor<4x16xi64>
}

// -----

// Buffers are sized statically: no dynamic dimension anywhere.
func.func @train_step(%x: tensor<4x16x8xf32>) -> tensor<?x8xf32> {
  // expected-error @+1 {{has a dynamic dimension in 'tensor<?x8xf32>'}}
  %y = "test.dyn"(%x) : (tensor<4x16x8xf32>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}
