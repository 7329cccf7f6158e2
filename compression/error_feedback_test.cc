#include "compression/error_feedback.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace edgefl::compression {
namespace {

TEST(ErrorFeedbackState, SerializeRoundTrips) {
  ErrorFeedback ef(5);
  auto r = ef.mutable_residual();
  for (size_t i = 0; i < r.size(); ++i) r[i] = 0.1f * static_cast<float>(i) - 0.2f;
  r[4] = -0.0f;
  ef.set_model_version(17);
  const std::string bytes = ef.Serialize();
  EXPECT_EQ(bytes.size(), 21u + 5 * 4);
  auto back = ErrorFeedback::Deserialize(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->dim(), 5u);
  EXPECT_EQ(back->model_version(), 17);
  EXPECT_EQ(std::memcmp(back->residual().data(), ef.residual().data(), 5 * sizeof(float)), 0);

  ErrorFeedback empty(0);
  auto e = ErrorFeedback::Deserialize(empty.Serialize());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->dim(), 0u);
  EXPECT_EQ(e->model_version(), ErrorFeedback::kNoVersion);
}

TEST(ErrorFeedbackState, DeserializeRejectsMalformed) {
  ErrorFeedback ef(3);
  ef.set_model_version(2);
  const std::string good = ef.Serialize();
  for (size_t len = 0; len < good.size(); ++len) {
    auto r = ErrorFeedback::Deserialize(good.substr(0, len));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << "prefix " << len;
  }
  EXPECT_FALSE(ErrorFeedback::Deserialize(good + "x").ok());
  std::string bad = good;
  bad[0] = 'X';
  EXPECT_NE(ErrorFeedback::Deserialize(bad).status().message().find("magic"), std::string::npos);
  bad = good;
  bad[4] = 2;
  EXPECT_NE(ErrorFeedback::Deserialize(bad).status().message().find("version"), std::string::npos);
  bad = good;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&bad[21 + 4], &nan, 4);
  EXPECT_NE(ErrorFeedback::Deserialize(bad).status().message().find("non-finite"),
            std::string::npos);
  bad = good;
  const uint64_t huge_dim = uint64_t{1} << 62;
  std::memcpy(&bad[13], &huge_dim, 8);
  EXPECT_EQ(ErrorFeedback::Deserialize(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  const int64_t bad_version = -7;
  std::memcpy(&bad[5], &bad_version, 8);
  EXPECT_FALSE(ErrorFeedback::Deserialize(bad).ok());
}

TEST(ErrorFeedbackState, ResetIfStale) {
  ErrorFeedback ef(2);
  ef.mutable_residual()[0] = 1.0f;
  EXPECT_FALSE(ef.ResetIfStale(100, 3)) << "no version yet: nothing to judge";
  ef.set_model_version(10);
  EXPECT_FALSE(ef.ResetIfStale(10, 3));
  EXPECT_FALSE(ef.ResetIfStale(13, 3));
  EXPECT_EQ(ef.residual()[0], 1.0f);
  EXPECT_TRUE(ef.ResetIfStale(14, 3));
  EXPECT_EQ(ef.residual()[0], 0.0f);
  EXPECT_EQ(ef.model_version(), ErrorFeedback::kNoVersion);

  ef.mutable_residual()[1] = 2.0f;
  ef.set_model_version(10);
  EXPECT_TRUE(ef.ResetIfStale(9, 3)) << "the server went back a version";
  EXPECT_EQ(ef.residual()[1], 0.0f);

  ef.set_model_version(5);
  EXPECT_TRUE(ef.ResetIfStale(6, 0));
}

}  // namespace
}  // namespace edgefl::compression
