#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "aggregation/strategy.h"
#include "gtest/gtest.h"

namespace edgefl::aggregation {
namespace {

std::unique_ptr<Strategy> MakeFedAvg(size_t dim) {
  auto strategy = CreateFedAvg(dim);
  EXPECT_TRUE(strategy.ok()) << strategy.status();
  return std::move(strategy).value();
}

std::vector<float> RandomVector(size_t dim, std::mt19937_64* rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(dim);
  for (float& x : v) x = normal(*rng);
  return v;
}

TEST(FedAvg, MatchesDoublePrecisionReference) {
  constexpr size_t kDim = 2000;
  constexpr int kClients = 37;
  std::mt19937_64 rng(20240601);
  std::uniform_int_distribution<uint64_t> samples(1, 60000);
  std::vector<float> global = RandomVector(kDim, &rng);
  std::vector<std::vector<float>> deltas;
  std::vector<uint64_t> counts;
  for (int k = 0; k < kClients; ++k) {
    deltas.push_back(RandomVector(kDim, &rng, 0.01f * (1 + k % 5)));
    counts.push_back(samples(rng));
  }

  // Reference: the textbook formula in double.
  std::vector<double> reference(kDim);
  double total = 0;
  for (int k = 0; k < kClients; ++k) total += static_cast<double>(counts[k]);
  for (size_t i = 0; i < kDim; ++i) {
    double weighted = 0;
    for (int k = 0; k < kClients; ++k) weighted += static_cast<double>(counts[k]) * deltas[k][i];
    reference[i] = global[i] + weighted / total;
  }

  auto fedavg = MakeFedAvg(kDim);
  EXPECT_EQ(fedavg->name(), "fedavg");
  fedavg->BeginRound(1);
  for (int k = 0; k < kClients; ++k) ASSERT_TRUE(fedavg->Accumulate(deltas[k], counts[k]).ok());
  EXPECT_EQ(fedavg->num_accumulated(), kClients);
  ASSERT_TRUE(fedavg->Aggregate(absl::MakeSpan(global), 0).ok());
  for (size_t i = 0; i < kDim; ++i) {
    // The result is the double value rounded once to float: within half an ulp.
    const float ulp =
        std::nextafter(static_cast<float>(reference[i]), std::numeric_limits<float>::infinity()) -
        static_cast<float>(reference[i]);
    ASSERT_NEAR(global[i], reference[i], 0.5 * ulp + 1e-12) << "index " << i;
  }
}

TEST(FedAvg, EquivalentToWeightedAverageOfClientModels) {
  constexpr size_t kDim = 500;
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<uint64_t> samples(1, 1000);
  const std::vector<float> start = RandomVector(kDim, &rng);
  std::vector<std::vector<float>> models;
  std::vector<uint64_t> counts;
  for (int k = 0; k < 10; ++k) {
    std::vector<float> model = start;
    const std::vector<float> step = RandomVector(kDim, &rng, 0.1f);
    for (size_t i = 0; i < kDim; ++i) model[i] += step[i];
    models.push_back(model);
    counts.push_back(samples(rng));
  }

  auto fedavg = MakeFedAvg(kDim);
  fedavg->BeginRound(1);
  for (size_t k = 0; k < models.size(); ++k) {
    std::vector<float> delta(kDim);
    for (size_t i = 0; i < kDim; ++i) delta[i] = models[k][i] - start[i];
    ASSERT_TRUE(fedavg->Accumulate(delta, counts[k]).ok());
  }
  std::vector<float> global = start;
  ASSERT_TRUE(fedavg->Aggregate(absl::MakeSpan(global), 0).ok());

  double total = 0;
  for (uint64_t n : counts) total += static_cast<double>(n);
  for (size_t i = 0; i < kDim; ++i) {
    double average = 0;
    for (size_t k = 0; k < models.size(); ++k) {
      average += static_cast<double>(counts[k]) * models[k][i];
    }
    average /= total;
    ASSERT_NEAR(global[i], average, 1e-6) << "index " << i;
  }
}

// Runs a round over `good` updates, with `bad` inserted after the first one, and returns the
// resulting global model (starting from ones).
std::vector<float> RoundWith(const std::vector<std::pair<std::vector<float>, uint64_t>>& good,
                             const std::vector<float>* bad_delta, uint64_t bad_samples,
                             absl::Status* bad_status) {
  auto fedavg = MakeFedAvg(4);
  fedavg->BeginRound(3);
  for (size_t k = 0; k < good.size(); ++k) {
    EXPECT_TRUE(fedavg->Accumulate(good[k].first, good[k].second).ok());
    if (k == 0 && bad_delta != nullptr) {
      *bad_status = fedavg->Accumulate(*bad_delta, bad_samples);
      EXPECT_EQ(fedavg->num_accumulated(), 1);
    }
  }
  EXPECT_EQ(fedavg->num_accumulated(), static_cast<int64_t>(good.size()));
  std::vector<float> global(4, 1.0f);
  EXPECT_TRUE(fedavg->Aggregate(absl::MakeSpan(global), 0).ok());
  return global;
}

TEST(FedAvg, RejectedUpdatesLeaveTheRoundUnchanged) {
  const std::vector<std::pair<std::vector<float>, uint64_t>> good = {
      {{0.5f, -0.25f, 0.125f, 2.0f}, 10}, {{-1.0f, 0.75f, 0.0f, 0.5f}, 30}};
  const std::vector<float> clean = RoundWith(good, nullptr, 0, nullptr);
  EXPECT_FLOAT_EQ(clean[0], 1.0f + (0.5f * 10 - 1.0f * 30) / 40);

  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Bad {
    std::vector<float> delta;
    uint64_t samples;
  };
  const std::vector<Bad> bads = {
      {{100, 100, 100, nan}, 50},       // NaN at the end: nothing before it may be added
      {{100, inf, 100, 100}, 50},       // Inf
      {{100, 100, 100, -inf}, 50},      // -Inf
      {{100, 100, 100}, 50},            // too short
      {{100, 100, 100, 100, 100}, 50},  // too long
      {{100, 100, 100, 100}, 0},        // zero samples
  };
  for (size_t b = 0; b < bads.size(); ++b) {
    absl::Status status;
    const std::vector<float> result = RoundWith(good, &bads[b].delta, bads[b].samples, &status);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << "bad update " << b;
    EXPECT_EQ(result, clean) << "bad update " << b;
  }
}

TEST(FedAvg, AggregateWithoutUpdatesIsFailedPrecondition) {
  auto fedavg = MakeFedAvg(3);
  fedavg->BeginRound(1);
  std::vector<float> global = {1, 2, 3};
  absl::Status status = fedavg->Aggregate(absl::MakeSpan(global), 5);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(global, (std::vector<float>{1, 2, 3}));

  // BeginRound drops what the previous round accumulated.
  ASSERT_TRUE(fedavg->Accumulate(std::vector<float>{1, 1, 1}, 5).ok());
  fedavg->BeginRound(2);
  EXPECT_EQ(fedavg->num_accumulated(), 0);
  EXPECT_EQ(fedavg->Aggregate(absl::MakeSpan(global), 0).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(global, (std::vector<float>{1, 2, 3}));
}

TEST(FedAvg, RoundsAreIndependent) {
  auto fedavg = MakeFedAvg(2);
  std::vector<float> global = {0, 0};
  fedavg->BeginRound(1);
  ASSERT_TRUE(fedavg->Accumulate(std::vector<float>{1, 2}, 1).ok());
  ASSERT_TRUE(fedavg->Aggregate(absl::MakeSpan(global), 0).ok());
  EXPECT_EQ(global, (std::vector<float>{1, 2}));
  fedavg->BeginRound(2);
  ASSERT_TRUE(fedavg->Accumulate(std::vector<float>{10, 20}, 3).ok());
  ASSERT_TRUE(fedavg->Aggregate(absl::MakeSpan(global), 1).ok());
  EXPECT_EQ(global, (std::vector<float>{11, 22}));
}

TEST(FedAvg, RejectsWrongGlobalSizeAndOverflowWithoutWriting) {
  auto fedavg = MakeFedAvg(2);
  fedavg->BeginRound(1);
  ASSERT_TRUE(fedavg->Accumulate(std::vector<float>{1, 3e38f}, 1).ok());
  std::vector<float> small = {1};
  EXPECT_EQ(fedavg->Aggregate(absl::MakeSpan(small), 0).code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> global = {1, 3e38f};
  EXPECT_EQ(fedavg->Aggregate(absl::MakeSpan(global), 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(global, (std::vector<float>{1, 3e38f}));
}

TEST(FedAvg, CreateRejectsEmptyModel) {
  EXPECT_EQ(CreateFedAvg(0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgefl::aggregation
