// A differentiated step whose gradients come from trl.linear_grad.
func.func @train_step(%dy: tensor<3x5xf32>, %x: tensor<3x4xf32>) -> (tensor<f32> {trl.output = "loss"}, tensor<5x4xf32> {trl.grad = "w"}, tensor<5x4xf32> {trl.grad = "tied"}) {
  %w = trl.param "w" : tensor<5x4xf32>
  %t = trl.param "tied" : tensor<5x4xf32>
  %l = trl.fill {value = 0.5 : f64} : tensor<f32>
  %dx, %dw = trl.linear_grad %dy, %x, %w : (tensor<3x5xf32>, tensor<3x4xf32>, tensor<5x4xf32>) -> (tensor<3x4xf32>, tensor<5x4xf32>)
  %dx2, %dt = trl.linear_grad %dy, %x, %t : (tensor<3x5xf32>, tensor<3x4xf32>, tensor<5x4xf32>) -> (tensor<3x4xf32>, tensor<5x4xf32>)
  %sum = trl.add %dt, %dt : tensor<5x4xf32>
  return %l, %dw, %sum : tensor<f32>, tensor<5x4xf32>, tensor<5x4xf32>
}
