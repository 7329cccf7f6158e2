// ReluMaxPool2x2 against LibTorch's own relu + max_pool2d: outputs and gradients bit for bit.
#include "models/relu_max_pool.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace edgefl::models {
namespace {

// Bitwise equality (so -0.0 != +0.0 and NaN == NaN of the same payload), with the first
// difference in the failure message.
void ExpectBitIdentical(const at::Tensor& a, const at::Tensor& b) {
  ASSERT_EQ(a.sizes(), b.sizes());
  const at::Tensor ca = a.contiguous(), cb = b.contiguous();
  const float* pa = ca.data_ptr<float>();
  const float* pb = cb.data_ptr<float>();
  for (int64_t i = 0; i < ca.numel(); ++i) {
    uint32_t ua, ub;
    std::memcpy(&ua, pa + i, 4);
    std::memcpy(&ub, pb + i, 4);
    ASSERT_EQ(ua, ub) << "element " << i << ": " << pa[i] << " vs " << pb[i];
  }
}

// Forward and backward of both versions on x with upstream gradient g.
void ExpectSameAsLibTorch(const at::Tensor& x, const at::Tensor& g) {
  const at::Tensor x1 = x.clone().requires_grad_(true);
  const at::Tensor x2 = x.clone().requires_grad_(true);
  const at::Tensor y1 = ReluMaxPool2x2(x1);
  const at::Tensor y2 = at::max_pool2d(at::relu(x2), {2, 2});
  ExpectBitIdentical(y1, y2);
  torch::autograd::backward({y1}, {g});
  torch::autograd::backward({y2}, {g});
  ExpectBitIdentical(x1.grad(), x2.grad());
}

TEST(ReluMaxPool2x2, MatchesLibTorchOnTheCnnShapes) {
  at::manual_seed(1);
  // fedavg_cnn's two pooled activations for a batch of 32, and small_cnn's.
  for (const auto& shape : std::vector<std::vector<int64_t>>{
           {32, 32, 28, 28}, {32, 64, 14, 14}, {5, 8, 28, 28}, {5, 16, 14, 14}}) {
    SCOPED_TRACE(at::IntArrayRef(shape));
    const at::Tensor x = at::randn(shape);
    const at::Tensor g = at::randn({shape[0], shape[1], shape[2] / 2, shape[3] / 2});
    ExpectSameAsLibTorch(x, g);
  }
}

TEST(ReluMaxPool2x2, OddSidesDropTheLastRowAndColumn) {
  at::manual_seed(2);
  // Odd height (two-pass path), odd width (plain scan), both.
  ExpectSameAsLibTorch(at::randn({3, 4, 7, 8}), at::randn({3, 4, 3, 4}));
  ExpectSameAsLibTorch(at::randn({3, 4, 8, 9}), at::randn({3, 4, 4, 4}));
  ExpectSameAsLibTorch(at::randn({3, 4, 7, 9}), at::randn({3, 4, 3, 4}));
}

TEST(ReluMaxPool2x2, TiesZerosNegativeZeroAndNaNFollowLibTorch) {
  // Windows: all negative (ReLU ties at 0), exact ties, -0.0, one NaN, two NaNs, NaN and +inf,
  // a negative gradient of zero.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> v = {
      -1, -2, -3, -4,  // all dropped by ReLU
      2,  2,  1,  2,   // tie: the first 2 wins
      -0.0f, 0, -5, -0.0f,
      1,  nan, 3, 0,
      nan, 5, -nan, 1,
      inf, 1, nan, 2,
      0,  0,  0,  0,
      7,  -1, -2, 7,
  };
  // Lay each group of 4 out as one 2x2 window: [1, 8 windows] -> [1, 1, 2, 16].
  at::Tensor x = at::empty({1, 1, 2, 16});
  float* p = x.data_ptr<float>();
  for (int w = 0; w < 8; ++w) {
    p[2 * w] = v[4 * w];
    p[2 * w + 1] = v[4 * w + 1];
    p[16 + 2 * w] = v[4 * w + 2];
    p[16 + 2 * w + 1] = v[4 * w + 3];
  }
  const at::Tensor g = at::tensor({1.5f, -2.0f, 3.0f, 4.0f, -0.0f, 6.0f, 7.0f, -8.0f})
                           .reshape({1, 1, 1, 8});
  ExpectSameAsLibTorch(x, g);
}

TEST(ReluMaxPool2x2, WithoutGradientsAndForOtherInputsItIsStillTheSame) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({2, 3, 8, 8});
  {
    const at::Tensor xg = x.clone().requires_grad_(true);
    at::NoGradGuard no_grad;  // evaluation: the forward pass alone
    const at::Tensor y = ReluMaxPool2x2(xg);
    EXPECT_FALSE(y.requires_grad());
    ExpectBitIdentical(y, at::max_pool2d(at::relu(x), {2, 2}));
  }
  // Non-contiguous input (a transposed view) and a float64 tensor (LibTorch's path).
  const at::Tensor t = x.transpose(2, 3);
  ExpectBitIdentical(ReluMaxPool2x2(t), at::max_pool2d(at::relu(t), {2, 2}));
  const at::Tensor d = x.to(at::kDouble);
  EXPECT_TRUE(at::equal(ReluMaxPool2x2(d), at::max_pool2d(at::relu(d), {2, 2})));
}

}  // namespace
}  // namespace edgefl::models
