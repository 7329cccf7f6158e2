#include "compression/sparsify.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace edgefl::compression {
namespace {

std::vector<float> RandomFloats(size_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = dist(gen);
  return x;
}

// Reference: sort by (|x| descending, index ascending), take k, sort indices.
std::vector<uint32_t> ReferenceTopK(const std::vector<float>& x, size_t k) {
  std::vector<uint32_t> order(x.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return std::fabs(x[a]) > std::fabs(x[b]); });
  order.resize(std::min(k, x.size()));
  std::sort(order.begin(), order.end());
  return order;
}

TEST(TopK, KeepsExactlyTheKLargestMagnitudes) {
  const std::vector<float> x = RandomFloats(1000, 1);
  for (uint64_t k : {0u, 1u, 10u, 100u, 999u, 1000u, 5000u}) {
    const std::vector<uint32_t> idx = TopKIndices(x, k);
    ASSERT_EQ(idx.size(), std::min<uint64_t>(k, x.size())) << k;
    ASSERT_TRUE(std::is_sorted(idx.begin(), idx.end()));
    ASSERT_EQ(std::adjacent_find(idx.begin(), idx.end()), idx.end()) << "duplicates";
    std::vector<bool> kept(x.size(), false);
    float min_kept = INFINITY, max_dropped = 0;
    for (uint32_t i : idx) {
      kept[i] = true;
      min_kept = std::min(min_kept, std::fabs(x[i]));
    }
    for (size_t i = 0; i < x.size(); ++i) {
      if (!kept[i]) max_dropped = std::max(max_dropped, std::fabs(x[i]));
    }
    if (!idx.empty() && idx.size() < x.size()) {
      EXPECT_GE(min_kept, max_dropped) << k;
    }
    EXPECT_EQ(idx, ReferenceTopK(x, k)) << k;
  }
}

TEST(TopK, TiesGoToLowestIndices) {
  std::vector<float> x(50, 1.0f);
  x[10] = -1.0f;  // same magnitude
  x[40] = 2.0f;
  const std::vector<uint32_t> idx = TopKIndices(x, 5);
  EXPECT_EQ(idx, (std::vector<uint32_t>{0, 1, 2, 3, 40}));
  // Negative zero and zero tie.
  std::vector<float> z = {0.0f, -0.0f, 0.0f, 3.0f};
  EXPECT_EQ(TopKIndices(z, 2), (std::vector<uint32_t>{0, 3}));
}

TEST(TopK, ReusesScratchAndMatchesReferenceOnManySizes) {
  std::vector<uint32_t> out, scratch;
  for (size_t n : {1u, 2u, 3u, 17u, 256u, 4099u}) {
    std::vector<float> x = RandomFloats(n, n);
    for (size_t i = 0; i < n; i += 3) x[i] = std::round(x[i]);  // plenty of ties
    for (uint64_t k : {uint64_t{1}, uint64_t{n / 2}, uint64_t{n - 1}}) {
      TopKIndices(x, k, &out, &scratch);
      EXPECT_EQ(out, ReferenceTopK(x, k)) << "n=" << n << " k=" << k;
    }
  }
}

TEST(GlobalTopK, MatchesTopKOverTheConcatenation) {
  const std::vector<float> a = RandomFloats(300, 2), b = RandomFloats(7, 3), c = RandomFloats(0, 4),
                           d = RandomFloats(500, 5);
  std::vector<float> all;
  for (const auto* v : {&a, &b, &c, &d}) all.insert(all.end(), v->begin(), v->end());
  const std::vector<absl::Span<const float>> tensors = {a, b, c, d};
  for (uint64_t k : {0u, 1u, 80u, 806u, 807u, 2000u}) {
    std::vector<std::vector<uint32_t>> per;
    GlobalTopKIndices(tensors, k, &per);
    ASSERT_EQ(per.size(), 4u);
    std::vector<uint32_t> flat;
    size_t offset = 0;
    for (size_t t = 0; t < 4; ++t) {
      for (uint32_t i : per[t]) {
        ASSERT_LT(i, tensors[t].size());
        flat.push_back(static_cast<uint32_t>(offset + i));
      }
      offset += tensors[t].size();
    }
    EXPECT_EQ(flat, ReferenceTopK(all, k)) << k;
  }
}

TEST(RandomK, DistinctSortedDeterministicAndUniform) {
  SplitMix64 r1(42), r2(42), r3(43);
  std::vector<uint32_t> a, b, c;
  RandomKIndices(1000, 100, r1, &a);
  RandomKIndices(1000, 100, r2, &b);
  RandomKIndices(1000, 100, r3, &c);
  ASSERT_EQ(a.size(), 100u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::set<uint32_t>(a.begin(), a.end()).size(), 100u);
  EXPECT_LT(a.back(), 1000u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);

  RandomKIndices(10, 10, r1, &a);
  EXPECT_EQ(a.size(), 10u);
  RandomKIndices(10, 50, r1, &a);
  EXPECT_EQ(a.size(), 10u);
  RandomKIndices(10, 0, r1, &a);
  EXPECT_TRUE(a.empty());

  // Each index is picked with probability k/n = 0.25.
  const int kTrials = 4000;
  std::vector<int> hits(40, 0);
  SplitMix64 rng(7);
  for (int t = 0; t < kTrials; ++t) {
    RandomKIndices(40, 10, rng, &a);
    ASSERT_EQ(a.size(), 10u);
    for (uint32_t i : a) ++hits[i];
  }
  for (int h : hits) EXPECT_NEAR(h, kTrials * 0.25, 5 * std::sqrt(kTrials * 0.25 * 0.75));
}

}  // namespace
}  // namespace edgefl::compression
