#include "data/partition.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "data/dataset.h"

namespace edgefl::data {
namespace {

using ::testing::HasSubstr;

std::string WorkloadDir() {
  const char* env = std::getenv("EDGEFL_WORKLOAD_DIR");
  return env != nullptr ? env : EDGEFL_DEFAULT_WORKLOAD_DIR;
}

const std::vector<uint8_t>& TrainLabels() {
  static const auto* labels = [] {
    auto l = ReadIdxLabels(std::string(kDefaultFashionMnistDir) + "/train-labels-idx1-ubyte.gz");
    EXPECT_TRUE(l.ok()) << l.status();
    return new std::vector<uint8_t>(l.ok() ? *l : std::vector<uint8_t>{});
  }();
  return *labels;
}

// Every index 0..n-1 exactly once, each list sorted.
void ExpectCoversOnce(const Partition& p, int64_t n) {
  std::vector<int> seen(n, 0);
  for (size_t c = 0; c < p.size(); ++c) {
    EXPECT_TRUE(std::is_sorted(p[c].begin(), p[c].end())) << "client " << c;
    for (int64_t i : p[c]) {
      ASSERT_GE(i, 0);
      ASSERT_LT(i, n);
      ++seen[i];
    }
  }
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[i], 1) << "index " << i;
}

// Mean over clients of the share of the client's most frequent class.
double MeanTopClassShare(const Partition& p, const std::vector<uint8_t>& labels) {
  double sum = 0;
  for (const auto& rows : p) {
    std::vector<int> hist(10, 0);
    for (int64_t i : rows) ++hist[labels[i]];
    sum += static_cast<double>(*std::max_element(hist.begin(), hist.end())) / rows.size();
  }
  return sum / p.size();
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/edgefl_partition_test");
  std::filesystem::create_directories(dir);
  const std::string path = absl::StrCat(dir, "/", name);
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs(text.c_str(), f);
  std::fclose(f);
  return path;
}

TEST(Partition, IidCoversEveryIndexOnceInEqualParts) {
  auto p = PartitionIid(1003, 10, 7);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 10u);
  ExpectCoversOnce(*p, 1003);
  for (const auto& rows : *p) {
    EXPECT_GE(rows.size(), 100u);
    EXPECT_LE(rows.size(), 101u);
  }
}

TEST(Partition, IidIsStableForASeed) {
  EXPECT_EQ(*PartitionIid(500, 4, 1), *PartitionIid(500, 4, 1));
  EXPECT_NE(*PartitionIid(500, 4, 1), *PartitionIid(500, 4, 2));
}

TEST(Partition, IidRejectsBadArguments) {
  EXPECT_EQ(PartitionIid(10, 0, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionIid(3, 4, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Partition, DirichletCoversEveryIndexOnce) {
  const auto& labels = TrainLabels();
  auto p = PartitionDirichlet(labels, 10, 0.5, 0);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 10u);
  ExpectCoversOnce(*p, labels.size());
  for (const auto& rows : *p) EXPECT_FALSE(rows.empty());
}

TEST(Partition, DirichletIsStableForASeed) {
  const auto& labels = TrainLabels();
  auto a = PartitionDirichlet(labels, 10, 0.5, 3);
  auto b = PartitionDirichlet(labels, 10, 0.5, 3);
  auto c = PartitionDirichlet(labels, 10, 0.5, 4);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
}

TEST(Partition, DirichletWithSmallAlphaIsSkewed) {
  const auto& labels = TrainLabels();
  auto skewed = PartitionDirichlet(labels, 10, 0.1, 0);
  auto flat = PartitionDirichlet(labels, 10, 1000.0, 0);
  auto iid = PartitionIid(labels.size(), 10, 0);
  ASSERT_TRUE(skewed.ok() && flat.ok() && iid.ok());
  const double skewed_share = MeanTopClassShare(*skewed, labels);
  const double flat_share = MeanTopClassShare(*flat, labels);
  EXPECT_GT(skewed_share, 0.5);
  EXPECT_LT(flat_share, 0.15);
  EXPECT_LT(MeanTopClassShare(*iid, labels), 0.15);
  // Many clients, small alpha: still everyone gets data (resampling) and full coverage.
  auto many = PartitionDirichlet(labels, 100, 0.1, 0);
  ASSERT_TRUE(many.ok()) << many.status();
  ExpectCoversOnce(*many, labels.size());
}

TEST(Partition, DirichletRejectsBadAlphaAndImpossibleSplits) {
  const std::vector<uint8_t> labels = {0, 1, 2, 3};
  EXPECT_EQ(PartitionDirichlet(labels, 2, 0.0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionDirichlet(labels, 5, 1.0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Partition, LabelsGivesAtMostKClassesPerClient) {
  const auto& labels = TrainLabels();
  for (int k : {1, 2, 3}) {
    auto p = PartitionByLabels(labels, 10, k, 5);
    ASSERT_TRUE(p.ok()) << p.status();
    ExpectCoversOnce(*p, labels.size());
    for (const auto& rows : *p) {
      EXPECT_FALSE(rows.empty());
      std::set<uint8_t> classes;
      for (int64_t i : rows) classes.insert(labels[i]);
      EXPECT_LE(classes.size(), static_cast<size_t>(k));
    }
  }
  EXPECT_EQ(*PartitionByLabels(labels, 10, 2, 5), *PartitionByLabels(labels, 10, 2, 5));
  EXPECT_NE(*PartitionByLabels(labels, 10, 2, 5), *PartitionByLabels(labels, 10, 2, 6));
  // 3 clients x 2 labels cannot hold all 10 classes.
  EXPECT_EQ(PartitionByLabels(labels, 3, 2, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionByLabels(labels, 10, 11, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Partition, FromSpecParsesAndRejects) {
  const auto& labels = TrainLabels();
  auto iid = PartitionFromSpec("iid", labels, 5, 0);
  ASSERT_TRUE(iid.ok()) << iid.status();
  EXPECT_EQ(*iid, *PartitionIid(labels.size(), 5, 0));
  auto dir = PartitionFromSpec("dirichlet:0.5", labels, 5, 0);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, *PartitionDirichlet(labels, 5, 0.5, 0));
  auto lab = PartitionFromSpec("labels:2", labels, 5, 0);
  ASSERT_TRUE(lab.ok()) << lab.status();
  EXPECT_EQ(*lab, *PartitionByLabels(labels, 5, 2, 0));
  for (const std::string bad :
       {"", "IID", "dirichlet", "dirichlet:", "dirichlet:-1", "dirichlet:abc", "dirichlet:inf",
        "labels:0", "labels:x", "labels:2.5", "shards:3"}) {
    auto r = PartitionFromSpec(bad, labels, 5, 0);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << "spec " << bad;
  }
  EXPECT_THAT(PartitionFromSpec("shards:3", labels, 5, 0).status().message(),
              HasSubstr("shards:3"));
}

TEST(Partition, ReadsWorkloadPartitionFile10) {
  auto p = ReadPartitionFile(WorkloadDir() + "/partition_dir05_10clients_seed0.txt", 60000);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::vector<size_t> sizes = {6280, 6232, 3711, 6594, 3774, 3032, 7093, 7225, 5828, 10231};
  ASSERT_EQ(p->size(), sizes.size());
  for (size_t c = 0; c < sizes.size(); ++c) EXPECT_EQ((*p)[c].size(), sizes[c]) << "client " << c;
  ExpectCoversOnce(*p, 60000);
  // The comment's histogram of client 0: 89 of class 0, 3001 of class 4.
  const auto& labels = TrainLabels();
  int class0 = 0, class4 = 0;
  for (int64_t i : (*p)[0]) {
    class0 += labels[i] == 0;
    class4 += labels[i] == 4;
  }
  EXPECT_EQ(class0, 89);
  EXPECT_EQ(class4, 3001);
}

TEST(Partition, ReadsWorkloadPartitionFile50) {
  auto p = ReadPartitionFile(WorkloadDir() + "/partition_dir05_50clients_seed0.txt", 60000);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 50u);
  for (const auto& rows : *p) {
    EXPECT_GE(rows.size(), 170u);
    EXPECT_LE(rows.size(), 2197u);
  }
  ExpectCoversOnce(*p, 60000);
}

TEST(Partition, ReadPartitionFileRejectsMalformedLines) {
  struct Case {
    std::string text;
    std::string want;  // substring of the message
  };
  const std::vector<Case> cases = {
      {"# header\n0 3 1 2\n", ":2: client 0 declares 3 samples but lists 2"},
      {"0 2 1 2\n# c\n1 2 3 1\n", ":3: index 1 repeats (first on line 1)"},
      {"0 2 1 10\n", ":1: index 10 out of range"},
      {"0 2 1 -4\n", ":1: index -4 out of range"},
      {"0 2 1 x\n", ":1: bad index \"x\""},
      {"zero 1 1\n", ":1: expected"},
      {"0\n", ":1: expected"},
      {"0 1 1\n0 1 2\n", ":2: client id 0 appears twice"},
      {"0 1 1\n2 1 2\n", "1 is missing"},
      {"# only comments\n", "no client lines"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = WriteTemp(absl::StrCat("bad", i, ".txt"), cases[i].text);
    auto p = ReadPartitionFile(path, 10);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << cases[i].text;
    EXPECT_THAT(p.status().message(), HasSubstr(cases[i].want)) << cases[i].text;
  }
  // Well-formed, ids out of order, blank lines and CRLF tolerated.
  auto ok = ReadPartitionFile(WriteTemp("good.txt", "1 2 9 3\r\n\n0 1 4\n"), 10);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, Partition({{4}, {3, 9}}));
  EXPECT_EQ(ReadPartitionFile("/nonexistent/partition.txt", 10).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace edgefl::data
