#include "aggregation/sampling.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace edgefl::aggregation {
namespace {

std::vector<std::string> Clients(int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back(absl::StrCat("client-", i));
  return ids;
}

TEST(TargetClients, FractionMinimumAndCap) {
  EXPECT_EQ(TargetClients(100, 0.1, 2), 10);
  EXPECT_EQ(TargetClients(100, 0.101, 2), 11);  // ceil
  EXPECT_EQ(TargetClients(10, 0.1, 2), 2);      // minimum wins
  EXPECT_EQ(TargetClients(30, 0.1, 1), 3);      // 0.1 * 30 is 3.0000000000000004 in double
  EXPECT_EQ(TargetClients(7, 0.5, 1), 4);
  EXPECT_EQ(TargetClients(5, 1.0, 10), 5);  // capped at the eligible count
  EXPECT_EQ(TargetClients(50, 1.0, 2), 50);
  EXPECT_EQ(TargetClients(0, 0.5, 2), 0);
}

TEST(SelectClients, SizesWithOverSelectionAndCap) {
  const std::vector<std::string> all = Clients(100);
  EXPECT_EQ(SelectClients(all, 10, 0, 1, 1, 0).size(), 10u);
  EXPECT_EQ(SelectClients(all, 10, 0.2, 1, 1, 0).size(), 12u);
  EXPECT_EQ(SelectClients(all, 10, 0.25, 1, 1, 0).size(), 13u);  // ceil(12.5)
  EXPECT_EQ(SelectClients(all, 90, 0.5, 1, 1, 0).size(), 100u);  // capped
  std::vector<std::string> sorted = all;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(SelectClients(all, 100, 0, 1, 1, 0), sorted);  // everyone
  EXPECT_TRUE(SelectClients(all, 0, 0.5, 1, 1, 0).empty());
  EXPECT_TRUE(SelectClients({}, 5, 0, 1, 1, 0).empty());
}

TEST(SelectClients, DistinctAndSorted) {
  std::vector<std::string> ids = Clients(50);
  ids.push_back("client-3");  // a duplicate must not be selected twice
  for (int round = 1; round <= 50; ++round) {
    const std::vector<std::string> chosen = SelectClients(ids, 20, 0.5, 9, round, 0);
    ASSERT_EQ(chosen.size(), 30u);
    EXPECT_TRUE(std::is_sorted(chosen.begin(), chosen.end()));
    EXPECT_EQ(std::set<std::string>(chosen.begin(), chosen.end()).size(), chosen.size());
    for (const std::string& id : chosen) {
      EXPECT_NE(std::find(ids.begin(), ids.end(), id), ids.end()) << id;
    }
  }
}

TEST(SelectClients, DeterministicRegardlessOfInputOrder) {
  std::vector<std::string> ids = Clients(200);
  const std::vector<std::string> first = SelectClients(ids, 25, 0.2, 42, 7, 1);
  std::mt19937 shuffle_rng(3);
  for (int i = 0; i < 5; ++i) {
    std::shuffle(ids.begin(), ids.end(), shuffle_rng);
    EXPECT_EQ(SelectClients(ids, 25, 0.2, 42, 7, 1), first);
  }
}

TEST(SelectClients, RoundAttemptAndSeedChangeTheSelection) {
  const std::vector<std::string> ids = Clients(100);
  std::set<std::vector<std::string>> by_round;
  for (int round = 1; round <= 30; ++round) by_round.insert(SelectClients(ids, 10, 0, 5, round, 0));
  EXPECT_EQ(by_round.size(), 30u);
  EXPECT_NE(SelectClients(ids, 10, 0, 5, 1, 0), SelectClients(ids, 10, 0, 5, 1, 1));
  EXPECT_NE(SelectClients(ids, 10, 0, 5, 1, 0), SelectClients(ids, 10, 0, 6, 1, 0));
  // Large seeds use their high bits too.
  EXPECT_NE(SelectClients(ids, 10, 0, 1ULL << 40, 1, 0), SelectClients(ids, 10, 0, 0, 1, 0));
}

TEST(SelectClients, RoughlyUniform) {
  const std::vector<std::string> ids = Clients(20);
  std::map<std::string, int> hits;
  constexpr int kRounds = 4000;
  for (int round = 1; round <= kRounds; ++round) {
    for (const std::string& id : SelectClients(ids, 5, 0, 11, round, 0)) ++hits[id];
  }
  ASSERT_EQ(hits.size(), 20u);
  // Each client is expected kRounds / 4 = 1000 times (sd ~27); deterministic for the seed.
  for (const auto& [id, count] : hits) {
    EXPECT_GT(count, 880) << id;
    EXPECT_LT(count, 1120) << id;
  }
}

TEST(SelectClients, StableAcrossBuilds) {
  // std::seed_seq and std::mt19937_64 are fully specified by the standard and the draw is done by
  // hand, so this holds on every platform. Pins the algorithm: a change here changes which clients
  // past experiments selected.
  const std::vector<std::string> chosen = SelectClients(Clients(10), 3, 0, 1234, 1, 0);
  EXPECT_EQ(chosen, (std::vector<std::string>{"client-3", "client-4", "client-7"}));
}

}  // namespace
}  // namespace edgefl::aggregation
