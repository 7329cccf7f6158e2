#include "aggregation/filters.h"

#include <cmath>
#include <random>
#include <vector>

#include "common/status_reason.h"
#include "gtest/gtest.h"

namespace edgefl::aggregation {
namespace {

TEST(Filters, L2Norm) {
  EXPECT_EQ(L2Norm(std::vector<float>{3, 4}), 5.0);
  EXPECT_EQ(L2Norm(std::vector<float>{}), 0.0);
}

TEST(NormBoundFilter, RejectLeavesUpdateAndNamesReason) {
  auto filter = *NormBoundFilter::Create({5.0, NormBoundFilter::Mode::kReject});
  std::vector<float> ok = {3, 4};
  auto result = filter->Apply(absl::MakeSpan(ok));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->norm, 5.0);
  EXPECT_FALSE(result->clipped);
  std::vector<float> big = {3, 4.01f};
  auto rejected = filter->Apply(absl::MakeSpan(big));
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(rejected.status()), "update_norm");
  EXPECT_EQ(big, (std::vector<float>{3, 4.01f}));
  std::vector<float> nan = {1, NAN};
  EXPECT_EQ(ReasonOf(filter->Apply(absl::MakeSpan(nan)).status()), "non_finite");
}

TEST(NormBoundFilter, ClipScalesToTheBound) {
  auto filter = *NormBoundFilter::Create({1.0, NormBoundFilter::Mode::kClip});
  std::vector<float> v = {3, 4};
  auto result = filter->Apply(absl::MakeSpan(v));
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->clipped);
  EXPECT_EQ(result->norm, 5.0);
  EXPECT_EQ(v, (std::vector<float>{0.6f, 0.8f}));
  std::vector<float> small = {0.1f, 0.2f};
  result = filter->Apply(absl::MakeSpan(small));
  EXPECT_FALSE(result->clipped);
  EXPECT_EQ(small, (std::vector<float>{0.1f, 0.2f}));
}

TEST(DpClipFilter, ScalesByMinOneCOverNorm) {
  auto filter = *DpClipFilter::Create({2.5});
  std::mt19937_64 rng(11);
  std::normal_distribution<float> normal(0, 1);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> v(1000);
    const float scale = trial % 2 == 0 ? 1.0f : 0.01f;
    for (float& x : v) x = scale * normal(rng);
    const std::vector<float> before = v;
    const double norm = L2Norm(before);
    auto result = filter->Apply(absl::MakeSpan(v));
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result->norm, norm);
    const double factor = std::min(1.0, 2.5 / norm);
    EXPECT_EQ(result->clipped, factor < 1.0);
    for (size_t i = 0; i < v.size(); ++i) {
      ASSERT_EQ(v[i], static_cast<float>(static_cast<double>(before[i]) * factor)) << i;
    }
    EXPECT_LE(L2Norm(v), 2.5 * (1 + 1e-6));
  }
}

TEST(Filters, BadParametersNameTheField) {
  EXPECT_EQ(NormBoundFilter::Create({0.0}).status().message(),
            "aggregation.filters.max_norm must be finite and > 0, got 0");
  EXPECT_EQ(DpClipFilter::Create({-1.0}).status().message(),
            "aggregation.filters.clip_norm must be finite and > 0, got -1");
  auto clip = *DpClipFilter::Create({});
  EXPECT_EQ(clip->clip_norm(), 1.0);
  EXPECT_EQ(clip->SetClipNorm(INFINITY).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(clip->clip_norm(), 1.0);
  ASSERT_TRUE(clip->SetClipNorm(0.25).ok());
  EXPECT_EQ(clip->clip_norm(), 0.25);
}

}  // namespace
}  // namespace edgefl::aggregation
