// Without gradients there is no backward pass to schedule for.
// expected-error @+1 {{trl-offload-remat runs after trl-autodiff}}
func.func @train_step(%x: tensor<f32>) -> (tensor<f32> {trl.output = "loss"}) {
  return %x : tensor<f32>
}
