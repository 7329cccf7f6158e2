// ReLU followed by 2x2 max pooling as one autograd operation.
#ifndef EDGEFL_MODELS_RELU_MAX_POOL_H_
#define EDGEFL_MODELS_RELU_MAX_POOL_H_

#include <ATen/core/Tensor.h>

namespace edgefl::models {

// torch::max_pool2d(torch::relu(x), 2) for a float32 [N, C, H, W] tensor, bit for bit the same
// output and the same gradient as the two LibTorch 1.13 operators (first maximum in row-major
// window order on ties, NaN propagated, odd trailing rows / columns dropped), in one pass each way.
// Why: on this CNN, LibTorch's NCHW max_pool2d (forward, backward and the zeroed gradient buffer)
// plus ReLU's separate passes took ~30% of a training step on one core; this takes ~5%
// (bench numbers in the README, "FedAvg on workload W"). It keeps a 1-byte window position per
// output instead of LibTorch's 8-byte index. Other dtypes or layouts fall back to LibTorch.
at::Tensor ReluMaxPool2x2(const at::Tensor& x);

}  // namespace edgefl::models

#endif  // EDGEFL_MODELS_RELU_MAX_POOL_H_
