#include "aggregation/model_average.h"

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace edgefl::aggregation {
namespace {

std::vector<std::vector<float>> RandomModels(int rounds, size_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> models(rounds + 1);  // models[r], r = 1..rounds
  for (int r = 1; r <= rounds; ++r) {
    models[r].resize(dim);
    for (float& v : models[r]) v = normal(rng);
  }
  return models;
}

std::unique_ptr<ModelAverage> Make(size_t dim, int64_t from_round, double ema_decay) {
  ModelAverage::Options o;
  o.dim = dim;
  o.from_round = from_round;
  o.ema_decay = ema_decay;
  absl::StatusOr<std::unique_ptr<ModelAverage>> a = ModelAverage::Create(o);
  EXPECT_TRUE(a.ok()) << a.status();
  return a.ok() ? std::move(*a) : nullptr;
}

// The uniform mean written out: sum in double over rounds from..r, divided by their number,
// rounded to float once.
std::vector<float> UniformReference(const std::vector<std::vector<float>>& models, int from, int r) {
  std::vector<float> out(models[from].size());
  for (size_t i = 0; i < out.size(); ++i) {
    double sum = 0;
    for (int t = from; t <= r; ++t) sum += models[t][i];
    out[i] = static_cast<float>(sum / (r - from + 1));
  }
  return out;
}

// The EMA written out: a_from = x_from, a_t = d a_{t-1} + (1 - d) x_t in double.
std::vector<float> EmaReference(const std::vector<std::vector<float>>& models, int from, int r,
                                double d) {
  std::vector<float> out(models[from].size());
  for (size_t i = 0; i < out.size(); ++i) {
    double a = models[from][i];
    for (int t = from + 1; t <= r; ++t) a = d * a + (1 - d) * models[t][i];
    out[i] = static_cast<float>(a);
  }
  return out;
}

TEST(ModelAverage, UniformMeanOfTheRoundsSinceFromRoundMatchesTheReference) {
  const size_t dim = 257;
  const auto models = RandomModels(9, dim, 1);
  auto avg = Make(dim, 4, 0);
  ASSERT_NE(avg, nullptr);
  for (int r = 1; r <= 9; ++r) {
    ASSERT_TRUE(avg->Add(r, models[r]).ok());
    if (r < 4) {
      EXPECT_EQ(avg->count(), 0);
      EXPECT_TRUE(avg->model().empty()) << "round " << r;
      continue;
    }
    EXPECT_EQ(avg->count(), r - 3);
    EXPECT_EQ(avg->model(), UniformReference(models, 4, r)) << "round " << r;
  }
}

TEST(ModelAverage, ExponentialMovingAverageMatchesTheReference) {
  const size_t dim = 129;
  const auto models = RandomModels(8, dim, 2);
  for (const double d : {0.5, 0.9, 0.99}) {
    auto avg = Make(dim, 3, d);
    ASSERT_NE(avg, nullptr);
    for (int r = 1; r <= 8; ++r) {
      ASSERT_TRUE(avg->Add(r, models[r]).ok());
      if (r >= 3) EXPECT_EQ(avg->model(), EmaReference(models, 3, r, d)) << "d " << d << " r " << r;
    }
    // Not the uniform mean (the two modes differ).
    EXPECT_NE(avg->model(), UniformReference(models, 3, 8)) << "d " << d;
  }
}

TEST(ModelAverage, RoundsMayBeSkippedButNotRepeated) {
  const size_t dim = 16;
  const auto models = RandomModels(6, dim, 3);
  auto avg = Make(dim, 2, 0);
  ASSERT_TRUE(avg->Add(2, models[2]).ok());
  ASSERT_TRUE(avg->Add(5, models[5]).ok());  // rounds 3-4 retried away or not evaluated
  const std::vector<float> before = avg->model();
  EXPECT_FALSE(avg->Add(5, models[6]).ok());
  EXPECT_FALSE(avg->Add(4, models[6]).ok());
  EXPECT_EQ(avg->model(), before);
  EXPECT_EQ(avg->count(), 2);
}

TEST(ModelAverage, BadInputIsRefusedAndChangesNothing) {
  const size_t dim = 8;
  auto avg = Make(dim, 1, 0);
  std::vector<float> x(dim, 1.0f);
  ASSERT_TRUE(avg->Add(1, x).ok());
  std::vector<float> short_model(dim - 1, 2.0f);
  EXPECT_EQ(avg->Add(2, short_model).code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> nan = x;
  nan[3] = std::numeric_limits<float>::quiet_NaN();
  absl::Status s = avg->Add(2, nan);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("index 3"), std::string::npos) << s;
  EXPECT_EQ(avg->count(), 1);
  EXPECT_EQ(avg->model(), x);
  // A refused round may come again (the scheduler retries it).
  EXPECT_TRUE(avg->Add(2, std::vector<float>(dim, 3.0f)).ok());
  EXPECT_EQ(avg->model(), std::vector<float>(dim, 2.0f));
}

TEST(ModelAverage, BadOptionsNameTheField) {
  ModelAverage::Options o;
  o.dim = 4;
  o.from_round = 0;
  absl::Status s = ModelAverage::Create(o).status();
  EXPECT_NE(s.message().find("from_round"), std::string::npos) << s;
  o.from_round = 1;
  for (const double d : {-0.1, 1.0, std::numeric_limits<double>::quiet_NaN()}) {
    ModelAverage::Options bad = o;
    bad.ema_decay = d;
    s = ModelAverage::Create(bad).status();
    EXPECT_NE(s.message().find("ema_decay"), std::string::npos) << d << ": " << s;
  }
  o.dim = 0;
  EXPECT_FALSE(ModelAverage::Create(o).ok());
}

// A state saved mid-run and loaded into a fresh instance continues bit for bit as the original.
TEST(ModelAverage, SavedStateContinuesBitIdentically) {
  const size_t dim = 64;
  const auto models = RandomModels(7, dim, 4);
  for (const double d : {0.0, 0.8}) {
    auto straight = Make(dim, 2, d);
    auto first = Make(dim, 2, d);
    for (int r = 1; r <= 7; ++r) ASSERT_TRUE(straight->Add(r, models[r]).ok());
    for (int r = 1; r <= 4; ++r) ASSERT_TRUE(first->Add(r, models[r]).ok());
    auto resumed = Make(dim, 2, d);
    ASSERT_TRUE(resumed->LoadState(first->SaveState()).ok());
    EXPECT_EQ(resumed->count(), 3);
    EXPECT_EQ(resumed->model(), first->model());
    EXPECT_FALSE(resumed->Add(4, models[4]).ok()) << "the last round is part of the state";
    for (int r = 5; r <= 7; ++r) ASSERT_TRUE(resumed->Add(r, models[r]).ok());
    EXPECT_EQ(resumed->model(), straight->model()) << "d " << d;
    // Before from_round: an empty average that still knows its last round.
    auto early = Make(dim, 2, d);
    ASSERT_TRUE(early->Add(1, models[1]).ok());
    auto early_loaded = Make(dim, 2, d);
    ASSERT_TRUE(early_loaded->LoadState(early->SaveState()).ok());
    EXPECT_EQ(early_loaded->count(), 0);
    EXPECT_TRUE(early_loaded->model().empty());
  }
}

TEST(ModelAverage, StateOfAnotherConfigurationOrCorruptIsRefusedAndChangesNothing) {
  const size_t dim = 32;
  const auto models = RandomModels(3, dim, 5);
  auto saved = Make(dim, 1, 0);
  for (int r = 1; r <= 3; ++r) ASSERT_TRUE(saved->Add(r, models[r]).ok());
  const std::string state = saved->SaveState();

  auto target = Make(dim, 1, 0);
  ASSERT_TRUE(target->Add(1, models[2]).ok());
  const std::vector<float> before = target->model();
  EXPECT_FALSE(Make(dim + 1, 1, 0)->LoadState(state).ok());
  EXPECT_FALSE(Make(dim, 2, 0)->LoadState(state).ok());
  EXPECT_FALSE(Make(dim, 1, 0.5)->LoadState(state).ok());
  std::string truncated = state.substr(0, state.size() - 9);
  EXPECT_FALSE(target->LoadState(truncated).ok());
  std::string flipped = state;
  flipped[flipped.size() - 3] ^= 0x40;
  EXPECT_FALSE(target->LoadState(flipped).ok());
  EXPECT_FALSE(target->LoadState("").ok());
  EXPECT_EQ(target->model(), before);
  EXPECT_EQ(target->count(), 1);
}

}  // namespace
}  // namespace edgefl::aggregation
