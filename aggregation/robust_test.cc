#include "aggregation/robust.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/status_reason.h"
#include "gtest/gtest.h"

namespace edgefl::aggregation {
namespace {

using Updates = std::vector<std::vector<float>>;

// Values from a small set so ties are frequent (within coordinates and between Krum scores), or
// continuous values.
Updates RandomUpdates(int k, size_t dim, bool ties, std::mt19937_64* rng) {
  std::uniform_int_distribution<int> small(-3, 3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Updates updates(k, std::vector<float>(dim));
  for (auto& u : updates) {
    for (float& x : u) x = ties ? 0.5f * static_cast<float>(small(*rng)) : normal(*rng);
  }
  return updates;
}

std::vector<double> Column(const Updates& u, size_t i) {
  std::vector<double> c;
  for (const auto& row : u) c.push_back(row[i]);
  std::sort(c.begin(), c.end());
  return c;
}

std::vector<double> ReferenceMedian(const Updates& u) {
  std::vector<double> out(u[0].size());
  for (size_t i = 0; i < out.size(); ++i) {
    const std::vector<double> c = Column(u, i);
    const size_t n = c.size();
    out[i] = n % 2 == 1 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2.0;
  }
  return out;
}

std::vector<double> ReferenceTrimmedMean(const Updates& u, double beta) {
  const int n = static_cast<int>(u.size());
  const int trim = static_cast<int>(beta * n);  // int() truncation, as scipy.stats.trim_mean
  std::vector<double> out(u[0].size());
  for (size_t i = 0; i < out.size(); ++i) {
    const std::vector<double> c = Column(u, i);
    double sum = 0;
    for (int k = trim; k < n - trim; ++k) sum += c[k];
    out[i] = sum / (n - 2 * trim);
  }
  return out;
}

// Krum / multi-Krum straight from Blanchard et al.: full distance matrix, full sorts.
std::vector<int> ReferenceKrumSelection(const Updates& u, int f, int m) {
  const int n = static_cast<int>(u.size());
  std::vector<double> score(n);
  for (int a = 0; a < n; ++a) {
    std::vector<double> d;
    for (int b = 0; b < n; ++b) {
      if (b == a) continue;
      double s = 0;
      for (size_t i = 0; i < u[a].size(); ++i) {
        s += (static_cast<double>(u[a][i]) - u[b][i]) * (static_cast<double>(u[a][i]) - u[b][i]);
      }
      d.push_back(s);
    }
    std::sort(d.begin(), d.end());
    score[a] = 0;
    for (int j = 0; j < n - f - 2; ++j) score[a] += d[j];
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  // Lowest score first; equal scores by index.
  std::sort(order.begin(), order.end(),
            [&](int x, int y) { return score[x] != score[y] ? score[x] < score[y] : x < y; });
  order.resize(m);
  return order;
}

std::unique_ptr<BufferedCombiner> MakeFilled(BufferedCombiner::Options options, const Updates& u,
                                             const std::vector<uint64_t>& samples = {}) {
  options.dim = u[0].size();
  options.max_updates = static_cast<int>(u.size());
  auto c = BufferedCombiner::Create(options);
  EXPECT_TRUE(c.ok()) << c.status();
  for (size_t k = 0; k < u.size(); ++k) {
    EXPECT_TRUE((*c)->Add(u[k], samples.empty() ? 1 + k : samples[k]).ok());
  }
  return std::move(c).value();
}

TEST(BufferedCombiner, MedianMatchesReferenceWithTies) {
  std::mt19937_64 rng(1);
  for (bool ties : {true, false}) {
    for (int k : {1, 2, 3, 4, 7, 10, 11, 32}) {
      for (size_t dim : {size_t{1}, size_t{13}, size_t{400}}) {
        const Updates u = RandomUpdates(k, dim, ties, &rng);
        BufferedCombiner::Options options;
        options.rule = RobustRule::kMedian;
        auto c = MakeFilled(options, u);
        std::vector<double> out(dim);
        ASSERT_TRUE(c->Combine(absl::MakeSpan(out)).ok());
        EXPECT_EQ(out, ReferenceMedian(u)) << "K=" << k << " dim=" << dim << " ties=" << ties;
      }
    }
  }
}

TEST(BufferedCombiner, MedianOfEvenCountIsMeanOfMiddleValues) {
  BufferedCombiner::Options options;
  options.rule = RobustRule::kMedian;
  auto c = MakeFilled(options, {{1.0f}, {10.0f}, {2.0f}, {100.0f}});
  std::vector<double> out(1);
  ASSERT_TRUE(c->Combine(absl::MakeSpan(out)).ok());
  EXPECT_EQ(out[0], 6.0);
}

TEST(BufferedCombiner, TrimmedMeanMatchesReferenceWithTies) {
  std::mt19937_64 rng(2);
  for (bool ties : {true, false}) {
    for (double beta : {0.0, 0.1, 0.2, 0.25, 0.3, 0.49}) {
      for (int k : {1, 2, 5, 10, 11, 20}) {
        for (size_t dim : {size_t{1}, size_t{57}, size_t{130}}) {
          const Updates u = RandomUpdates(k, dim, ties, &rng);
          BufferedCombiner::Options options;
          options.rule = RobustRule::kTrimmedMean;
          options.trim_beta = beta;
          auto c = MakeFilled(options, u);
          std::vector<double> out(dim);
          ASSERT_TRUE(c->Combine(absl::MakeSpan(out)).ok());
          // Same sorted order and summation order as the reference: bit-identical.
          EXPECT_EQ(out, ReferenceTrimmedMean(u, beta)) << "K=" << k << " beta=" << beta;
        }
      }
    }
  }
}

TEST(BufferedCombiner, MedianAndTrimmedMeanIgnoreArrivalOrder) {
  std::mt19937_64 rng(6);
  Updates u = RandomUpdates(23, 300, false, &rng);
  for (RobustRule rule : {RobustRule::kMedian, RobustRule::kTrimmedMean}) {
    BufferedCombiner::Options options;
    options.rule = rule;
    options.trim_beta = 0.2;
    std::vector<double> first(300), second(300);
    ASSERT_TRUE(MakeFilled(options, u)->Combine(absl::MakeSpan(first)).ok());
    Updates shuffled = u;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    ASSERT_TRUE(MakeFilled(options, shuffled)->Combine(absl::MakeSpan(second)).ok());
    EXPECT_EQ(first, second);
  }
}

TEST(BufferedCombiner, TrimmedMeanDropsOutliers) {
  BufferedCombiner::Options options;
  options.rule = RobustRule::kTrimmedMean;
  options.trim_beta = 0.2;  // floor(0.2 * 5) = 1 per tail
  auto c = MakeFilled(options, {{1e6f}, {1.0f}, {2.0f}, {3.0f}, {-1e6f}});
  std::vector<double> out(1);
  ASSERT_TRUE(c->Combine(absl::MakeSpan(out)).ok());
  EXPECT_EQ(out[0], 2.0);
}

TEST(BufferedCombiner, KrumAndMultiKrumMatchReferenceWithTies) {
  std::mt19937_64 rng(3);
  int cases = 0;
  for (bool ties : {true, false}) {
    for (int n : {3, 4, 5, 8, 13}) {
      for (int f = 0; 2 * f + 2 < n; ++f) {
        for (size_t dim : {size_t{1}, size_t{3}, size_t{2501}}) {  // 2501 spans two blocks
          const Updates u = RandomUpdates(n, dim, ties, &rng);
          for (int m : {1, 2, n - f}) {
            if (m > n - f) continue;
            BufferedCombiner::Options options;
            options.rule = m == 1 && f % 2 == 0 ? RobustRule::kKrum : RobustRule::kMultiKrum;
            options.num_byzantine = f;
            options.multi_krum_m = m;
            auto c = MakeFilled(options, u);
            std::vector<double> out(dim);
            ASSERT_TRUE(c->Combine(absl::MakeSpan(out)).ok());
            const std::vector<int> expected = ReferenceKrumSelection(u, f, m);
            // With ties the blocked distance sums are still exact (small multiples of 0.25);
            // without ties a different summation order cannot change the ranking.
            ASSERT_EQ(c->selected(), expected) << "n=" << n << " f=" << f << " m=" << m;
            for (size_t i = 0; i < dim; ++i) {
              double sum = 0;
              for (int k : expected) sum += u[k][i];
              ASSERT_NEAR(out[i], sum / m, 1e-12) << i;
            }
            ++cases;
          }
        }
      }
    }
  }
  EXPECT_GT(cases, 50);
}

TEST(BufferedCombiner, MultiKrumWeightedBySamples) {
  std::mt19937_64 rng(4);
  const Updates u = RandomUpdates(9, 20, false, &rng);
  const std::vector<uint64_t> samples = {5, 1, 100, 7, 7, 30, 2, 9, 11};
  BufferedCombiner::Options options;
  options.rule = RobustRule::kMultiKrum;
  options.num_byzantine = 2;
  options.multi_krum_m = 4;
  options.multi_krum_weighted = true;
  auto c = MakeFilled(options, u, samples);
  std::vector<double> out(20);
  ASSERT_TRUE(c->Combine(absl::MakeSpan(out)).ok());
  const std::vector<int> sel = ReferenceKrumSelection(u, 2, 4);
  ASSERT_EQ(c->selected(), sel);
  double total = 0;
  for (int k : sel) total += samples[k];
  for (size_t i = 0; i < 20; ++i) {
    double sum = 0;
    for (int k : sel) sum += samples[k] * static_cast<double>(u[k][i]);
    EXPECT_NEAR(out[i], sum / total, 1e-12);
  }
}

TEST(BufferedCombiner, KrumIgnoresByzantineOutliers) {
  std::mt19937_64 rng(5);
  Updates u = RandomUpdates(10, 50, false, &rng);
  for (int k = 0; k < 3; ++k) {
    for (float& x : u[k]) x = 1000.0f;  // f = 3 colluding attackers
  }
  BufferedCombiner::Options options;
  options.rule = RobustRule::kMultiKrum;
  options.num_byzantine = 3;
  options.multi_krum_m = 7;
  auto c = MakeFilled(options, u);
  std::vector<double> out(50);
  ASSERT_TRUE(c->Combine(absl::MakeSpan(out)).ok());
  for (int k : c->selected()) EXPECT_GE(k, 3);
}

TEST(BufferedCombiner, KrumNeedsMoreThanTwoFPlusTwo) {
  BufferedCombiner::Options options;
  options.rule = RobustRule::kKrum;
  options.num_byzantine = 2;
  options.dim = 4;
  options.max_updates = 10;
  auto c = *BufferedCombiner::Create(options);
  std::vector<float> x(4, 1.0f);
  for (int k = 0; k < 6; ++k) ASSERT_TRUE(c->Add(x, 1).ok());
  std::vector<double> out(4);
  absl::Status s = c->Combine(absl::MakeSpan(out));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("n > 2f + 2"), std::string::npos) << s;
  EXPECT_EQ(ReasonOf(s), "krum_too_few_updates");
  ASSERT_TRUE(c->Add(x, 1).ok());  // n = 7 > 6
  EXPECT_TRUE(c->Combine(absl::MakeSpan(out)).ok());

  options.rule = RobustRule::kMultiKrum;
  options.multi_krum_m = 6;
  auto mk = *BufferedCombiner::Create(options);
  for (int k = 0; k < 7; ++k) ASSERT_TRUE(mk->Add(x, 1).ok());
  s = mk->Combine(absl::MakeSpan(out));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("multi_krum_m <= n - f"), std::string::npos) << s;
}

TEST(BufferedCombiner, MemoryBoundRefusedWithTheNumbers) {
  BufferedCombiner::Options options;
  options.rule = RobustRule::kMedian;
  options.dim = 1000;
  options.max_updates = 100;
  options.max_buffered_bytes = 451199;  // bound = 100 * 4000 + 100 * 64 * 8 = 451200
  EXPECT_EQ(BufferedCombiner::MemoryBound(options), 451200u);
  absl::Status s = BufferedCombiner::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("451200"), std::string::npos) << s;
  EXPECT_NE(s.message().find("451199"), std::string::npos) << s;
  EXPECT_NE(s.message().find("4000 bytes per update"), std::string::npos) << s;
  options.max_buffered_bytes = 451200;
  auto c = BufferedCombiner::Create(options);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->bytes_per_update(), 4000u);
  EXPECT_EQ((*c)->memory_bound_bytes(), 451200u);
  options.rule = RobustRule::kKrum;
  EXPECT_EQ(BufferedCombiner::MemoryBound(options), 400000u + 100 * 100 * 8 + 100 * 8);
}

TEST(BufferedCombiner, BadOptionsAndUpdatesRefused) {
  BufferedCombiner::Options options;
  options.dim = 3;
  options.max_updates = 2;
  options.rule = RobustRule::kTrimmedMean;
  options.trim_beta = 0.5;
  EXPECT_EQ(BufferedCombiner::Create(options).status().message(),
            "aggregation.robust.trim_beta must be in [0, 0.5), got 0.5");
  options.trim_beta = 0.1;
  options.rule = RobustRule::kKrum;
  options.num_byzantine = -1;
  EXPECT_EQ(BufferedCombiner::Create(options).status().message(),
            "aggregation.robust.num_byzantine must be >= 0, got -1");
  options.num_byzantine = 0;
  options.rule = RobustRule::kMultiKrum;
  options.multi_krum_m = -1;
  EXPECT_EQ(BufferedCombiner::Create(options).status().message(),
            "aggregation.robust.multi_krum_m must be >= 1 (or 0 for n - f), got -1");
  options.multi_krum_m = 1;
  options.rule = RobustRule::kMedian;
  options.max_updates = 0;
  EXPECT_EQ(BufferedCombiner::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.max_updates = 2;
  auto c = *BufferedCombiner::Create(options);
  std::vector<double> out(3);
  EXPECT_EQ(c->Combine(absl::MakeSpan(out)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c->Add(std::vector<float>{1, 2}, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Add(std::vector<float>{1, NAN, 2}, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Add(std::vector<float>{1, 2, 3}, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->num_buffered(), 0);
  ASSERT_TRUE(c->Add(std::vector<float>{1, 2, 3}, 1).ok());
  ASSERT_TRUE(c->Add(std::vector<float>{3, 2, 1}, 1).ok());
  EXPECT_EQ(c->Add(std::vector<float>{1, 2, 3}, 1).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(c->Combine(absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, (std::vector<double>{2, 2, 2}));
  c->Reset();
  EXPECT_EQ(c->num_buffered(), 0);
  ASSERT_TRUE(c->Add(std::vector<float>{7, 8, 9}, 1).ok());
  ASSERT_TRUE(c->Combine(absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, (std::vector<double>{7, 8, 9}));
}

// multi_krum_m = 0 averages the n - f best-scoring updates, whatever n the round brings.
TEST(BufferedCombiner, MultiKrumMZeroMeansNMinusF) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  constexpr size_t kDim = 16;
  constexpr int kN = 9;
  BufferedCombiner::Options zero;
  zero.rule = RobustRule::kMultiKrum;
  zero.dim = kDim;
  zero.max_updates = kN;
  zero.num_byzantine = 2;
  zero.multi_krum_m = 0;
  BufferedCombiner::Options explicit_m = zero;
  explicit_m.multi_krum_m = kN - 2;
  auto a = BufferedCombiner::Create(zero);
  auto b = BufferedCombiner::Create(explicit_m);
  ASSERT_TRUE(a.ok() && b.ok());
  for (int k = 0; k < kN; ++k) {
    std::vector<float> u(kDim);
    for (float& x : u) x = normal(rng) * (k == 0 ? 50.0f : 1.0f);
    ASSERT_TRUE((*a)->Add(u, 1).ok());
    ASSERT_TRUE((*b)->Add(u, 1).ok());
  }
  std::vector<double> out_a(kDim), out_b(kDim);
  ASSERT_TRUE((*a)->Combine(absl::MakeSpan(out_a)).ok());
  ASSERT_TRUE((*b)->Combine(absl::MakeSpan(out_b)).ok());
  EXPECT_EQ(out_a, out_b);
  EXPECT_EQ((*a)->selected().size(), static_cast<size_t>(kN - 2));
}

}  // namespace
}  // namespace edgefl::aggregation
