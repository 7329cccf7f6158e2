#include "aggregation/accumulator.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace edgefl::aggregation {
namespace {

TEST(WeightedMeanAccumulator, ComputesWeightedMean) {
  WeightedMeanAccumulator acc(3);
  ASSERT_TRUE(acc.Add(std::vector<float>{1, 2, 3}, 1).ok());
  ASSERT_TRUE(acc.Add(std::vector<float>{4, 5, 6}, 3).ok());
  EXPECT_EQ(acc.count(), 2);
  EXPECT_DOUBLE_EQ(acc.total_weight(), 4);
  std::vector<float> mean(3);
  ASSERT_TRUE(acc.Mean(absl::MakeSpan(mean)).ok());
  EXPECT_FLOAT_EQ(mean[0], 3.25f);
  EXPECT_FLOAT_EQ(mean[1], 4.25f);
  EXPECT_FLOAT_EQ(mean[2], 5.25f);
  EXPECT_DOUBLE_EQ(acc.MeanAt(1), 4.25);
}

TEST(WeightedMeanAccumulator, SumsInDoublePrecision) {
  // 1e8 in float has no room for +1; a float sum would lose every small contribution.
  WeightedMeanAccumulator acc(1);
  ASSERT_TRUE(acc.Add(std::vector<float>{1e8f}, 1).ok());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(acc.Add(std::vector<float>{1.0f}, 1).ok());
  const double expected = (1e8 + 1000.0) / 1001.0;
  EXPECT_NEAR(acc.MeanAt(0), expected, 1e-6);
}

TEST(WeightedMeanAccumulator, RejectsBadInputWithoutChangingState) {
  WeightedMeanAccumulator acc(4);
  ASSERT_TRUE(acc.Add(std::vector<float>{1, 1, 1, 1}, 2).ok());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(acc.Add(std::vector<float>{5, 5, 5, nan}, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.Add(std::vector<float>{5, 5, 5, -inf}, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.Add(std::vector<float>{5, 5, 5}, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.Add(std::vector<float>{5, 5, 5, 5, 5}, 1).code(),
            absl::StatusCode::kInvalidArgument);
  for (double w : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    EXPECT_EQ(acc.Add(std::vector<float>{5, 5, 5, 5}, w).code(), absl::StatusCode::kInvalidArgument)
        << w;
  }
  EXPECT_EQ(acc.count(), 1);
  EXPECT_DOUBLE_EQ(acc.total_weight(), 2);
  std::vector<float> mean(4);
  ASSERT_TRUE(acc.Mean(absl::MakeSpan(mean)).ok());
  EXPECT_EQ(mean, (std::vector<float>{1, 1, 1, 1}));
}

TEST(WeightedMeanAccumulator, MeanNeedsAnUpdateAndTheRightSize) {
  WeightedMeanAccumulator acc(2);
  std::vector<float> out(2, 7.0f);
  EXPECT_EQ(acc.Mean(absl::MakeSpan(out)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(out, (std::vector<float>{7, 7}));
  ASSERT_TRUE(acc.Add(std::vector<float>{1, 2}, 1).ok());
  std::vector<float> wrong(3);
  EXPECT_EQ(acc.Mean(absl::MakeSpan(wrong)).code(), absl::StatusCode::kInvalidArgument);
  acc.Reset();
  EXPECT_EQ(acc.count(), 0);
  EXPECT_EQ(acc.total_weight(), 0);
  EXPECT_EQ(acc.Mean(absl::MakeSpan(out)).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(acc.Add(std::vector<float>{3, 4}, 1).ok());
  ASSERT_TRUE(acc.Mean(absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, (std::vector<float>{3, 4}));  // nothing left over from before Reset
}

TEST(WeightedMeanAccumulator, EncodedAddMatchesDenseAddOfTheDecodedUpdate) {
  const std::vector<compression::TensorLayout> layout = {{"a", 300}, {"b", 200}};
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (const char* text : {"topk:0.1|int8", "int8", "q4:b32", "randk:0.2|fp16"}) {
    auto chain = compression::ParseChain(text);
    ASSERT_TRUE(chain.ok()) << text;
    WeightedMeanAccumulator encoded(500), dense(500);
    for (int k = 0; k < 3; ++k) {
      std::vector<float> x(500);
      for (float& v : x) v = normal(rng);
      const std::vector<compression::TensorView> views = {
          {"a", absl::MakeConstSpan(x).subspan(0, 300)},
          {"b", absl::MakeConstSpan(x).subspan(300)}};
      auto bytes = compression::EncodeUpdate(*chain, views, nullptr, /*seed=*/k);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      std::vector<float> decoded;
      ASSERT_TRUE(compression::DecodeToDense(*bytes, layout, &decoded).ok());
      ASSERT_TRUE(encoded.AddEncoded(*bytes, layout, *chain, k + 1.0).ok());
      ASSERT_TRUE(dense.Add(decoded, k + 1.0).ok());
    }
    std::vector<float> a(500), b(500);
    ASSERT_TRUE(encoded.Mean(absl::MakeSpan(a)).ok());
    ASSERT_TRUE(dense.Mean(absl::MakeSpan(b)).ok());
    EXPECT_EQ(a, b) << text;
    EXPECT_EQ(encoded.count(), 3);
  }
}

TEST(WeightedMeanAccumulator, MalformedEncodingLeavesTheSumUntouched) {
  const std::vector<compression::TensorLayout> layout = {{"a", 64}};
  auto chain = compression::ParseChain("int8");
  ASSERT_TRUE(chain.ok());
  std::vector<float> x(64, 0.5f);
  const std::vector<compression::TensorView> views = {{"a", x}};
  auto bytes = compression::EncodeUpdate(*chain, views, nullptr, 1);
  ASSERT_TRUE(bytes.ok());
  WeightedMeanAccumulator acc(64);
  ASSERT_TRUE(acc.Add(std::vector<float>(64, 1.0f), 1).ok());
  std::string truncated = bytes->substr(0, bytes->size() - 3);
  EXPECT_EQ(acc.AddEncoded(truncated, layout, *chain, 1).code(),
            absl::StatusCode::kInvalidArgument);
  auto other = compression::ParseChain("q4");
  EXPECT_EQ(acc.AddEncoded(*bytes, layout, *other, 1).code(), absl::StatusCode::kInvalidArgument);
  const std::vector<compression::TensorLayout> wrong = {{"b", 64}};
  EXPECT_EQ(acc.AddEncoded(*bytes, wrong, *chain, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.count(), 1);
  std::vector<float> out(64);
  ASSERT_TRUE(acc.Mean(absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, std::vector<float>(64, 1.0f));
}

TEST(WeightedMeanAccumulator, MemoryDoesNotGrowWithUpdates) {
  constexpr size_t kDim = 10000;
  WeightedMeanAccumulator acc(kDim);
  EXPECT_EQ(acc.dim(), kDim);
  const size_t bytes = acc.memory_bytes();
  EXPECT_EQ(bytes, kDim * sizeof(double));
  std::vector<float> update(kDim);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (int k = 0; k < 1000; ++k) {
    for (float& x : update) x = normal(rng);
    ASSERT_TRUE(acc.Add(update, 1 + k % 7).ok());
  }
  EXPECT_EQ(acc.count(), 1000);
  EXPECT_EQ(acc.dim(), kDim);
  EXPECT_EQ(acc.memory_bytes(), bytes);
}

}  // namespace
}  // namespace edgefl::aggregation
