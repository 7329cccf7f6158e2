#include "client/feddyn_term.h"

#include <stdlib.h>

#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"

namespace edgefl::client {
namespace {

std::string TempFile(const std::string& name) {
  std::string templ = ::testing::TempDir() + "/feddyn_term_test.XXXXXX";
  EXPECT_NE(::mkdtemp(templ.data()), nullptr);
  return templ + "/" + name;
}

std::vector<float> Vec(absl::Span<const float> s) { return std::vector<float>(s.begin(), s.end()); }

TEST(FedDynTerm, StartsAtZeroAndMovesOnlyWhenCommitted) {
  FedDynTerm term("");
  ASSERT_TRUE(term.Load().ok());
  EXPECT_EQ(Vec(term.For(3)), (std::vector<float>{0, 0, 0}));
  ASSERT_TRUE(term.Update(0.5, std::vector<float>{1, 2, -4}).ok());
  EXPECT_TRUE(term.pending());
  // Training of the next round would still see the committed value.
  EXPECT_EQ(Vec(term.For(3)), (std::vector<float>{0, 0, 0}));
  ASSERT_TRUE(term.Commit().ok());
  EXPECT_FALSE(term.pending());
  EXPECT_EQ(Vec(term.For(3)), (std::vector<float>{-0.5f, -1, 2}));
  // g -= alpha delta again; a rolled-back update leaves g as it was.
  ASSERT_TRUE(term.Update(0.5, std::vector<float>{1, 0, 0}).ok());
  term.Rollback();
  EXPECT_FALSE(term.pending());
  EXPECT_EQ(Vec(term.For(3)), (std::vector<float>{-0.5f, -1, 2}));
  // An update never settled is replaced by the next, which starts from the committed g.
  ASSERT_TRUE(term.Update(0.5, std::vector<float>{100, 100, 100}).ok());
  ASSERT_TRUE(term.Update(2.0, std::vector<float>{0.25f, 0, 1}).ok());
  ASSERT_TRUE(term.Commit().ok());
  EXPECT_EQ(Vec(term.For(3)), (std::vector<float>{-1, -1, 0}));
  // Commit without anything pending changes nothing.
  ASSERT_TRUE(term.Commit().ok());
  EXPECT_EQ(Vec(term.For(3)), (std::vector<float>{-1, -1, 0}));
  // A model of another size starts from zero.
  EXPECT_EQ(Vec(term.For(2)), (std::vector<float>{0, 0}));
}

TEST(FedDynTerm, BadUpdatesLeaveNothingPending) {
  FedDynTerm term("");
  term.For(2);
  EXPECT_EQ(term.Update(0, std::vector<float>{1, 1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(term.Update(-1, std::vector<float>{1, 1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(term.Update(0.1, std::vector<float>{1, 1, 1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(term.Update(1e30, std::vector<float>{1e30f, 0}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(term.pending());
  ASSERT_TRUE(term.Commit().ok());
  EXPECT_EQ(Vec(term.For(2)), (std::vector<float>{0, 0}));
}

TEST(FedDynTerm, SurvivesARestartAndRefusesACorruptFile) {
  const std::string file = TempFile("client-0.feddyn");
  {
    FedDynTerm term(file);
    ASSERT_TRUE(term.Load().ok());  // no file yet
    term.For(4);
    ASSERT_TRUE(term.Update(0.1, std::vector<float>{1, -2, 3, 0.5f}).ok());
    ASSERT_TRUE(term.Commit().ok());
  }
  const std::vector<float> want{-0.1f, 0.2f, -0.3f, -0.05f};
  {
    FedDynTerm term(file);
    ASSERT_TRUE(term.Load().ok());
    EXPECT_EQ(term.committed(), want);
    // A pending value is never on disk: a restart before Commit keeps the committed g.
    ASSERT_TRUE(term.Update(0.1, std::vector<float>{5, 5, 5, 5}).ok());
  }
  {
    FedDynTerm term(file);
    ASSERT_TRUE(term.Load().ok());
    EXPECT_EQ(term.committed(), want);
  }
  const std::string good = *ReadFile(file);
  for (size_t i = 0; i < good.size(); i += 5) {
    std::string bad = good;
    bad[i] ^= 0x01;
    ASSERT_TRUE(WriteFileAtomically(file, bad).ok());
    FedDynTerm term(file);
    EXPECT_EQ(term.Load().code(), absl::StatusCode::kDataLoss) << "flip " << i;
    EXPECT_EQ(Vec(term.For(4)), (std::vector<float>{0, 0, 0, 0}));
  }
  for (size_t n : {size_t{0}, size_t{10}, good.size() - 1}) {
    ASSERT_TRUE(WriteFileAtomically(file, good.substr(0, n)).ok());
    FedDynTerm term(file);
    EXPECT_EQ(term.Load().code(), absl::StatusCode::kDataLoss) << "truncated to " << n;
    EXPECT_TRUE(term.committed().empty());
  }
}

}  // namespace
}  // namespace edgefl::client
