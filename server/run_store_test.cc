#include "server/run_store.h"

#include <stdlib.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gtest/gtest.h"

namespace edgefl::server {
namespace {

std::string TempDir() {
  std::string tmpl = ::testing::TempDir() + "edgefl-runstore-XXXXXX";
  return mkdtemp(tmpl.data());
}

RoundMetrics Row(int64_t round, std::optional<double> accuracy) {
  RoundMetrics m;
  m.stats.set_round(round);
  m.stats.set_clients_selected(3);
  m.stats.set_clients_reported(3);
  m.test_accuracy = accuracy;
  return m;
}

// The rounds of metrics.jsonl in file order, and how many lines carry a test accuracy.
std::vector<int64_t> Rounds(const RunStore& store, int* evaluated) {
  std::vector<int64_t> rounds;
  *evaluated = 0;
  const std::string text = ReadFile(store.Path(RunStore::kMetricsFile)).value_or("");
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    int64_t r = -1;
    absl::string_view rest = line.substr(line.find(':') + 1);
    EXPECT_TRUE(absl::SimpleAtoi(rest.substr(0, rest.find(',')), &r)) << line;
    rounds.push_back(r);
    if (line.find("\"test_accuracy\"") != absl::string_view::npos) ++*evaluated;
  }
  return rounds;
}

proto::Checkpoint CheckpointAfter(int64_t round, const std::vector<int64_t>& pending) {
  proto::ModelSpec spec;
  spec.set_model("tiny");
  proto::Checkpoint ckpt =
      MakeCheckpoint(round, spec, std::vector<float>{1, 2, 3}, proto::ExperimentConfig(), 12.5);
  for (int64_t r : pending) *ckpt.add_pending_rounds() = Row(r, std::nullopt).stats;
  return ckpt;
}

// Stands in for evaluating the checkpoint's model; records which rounds it was asked for.
struct FakeEvaluation {
  std::vector<int64_t> rounds;
  std::function<void(RoundMetrics*)> Fn() {
    return [this](RoundMetrics* m) {
      rounds.push_back(m->stats.round());
      m->test_accuracy = 0.75;
      m->test_loss = 0.5;
    };
  }
};

TEST(RunStore, CheckpointRoundTripsWithPendingRounds) {
  absl::StatusOr<RunStore> store = RunStore::Open(TempDir() + "/run");
  ASSERT_TRUE(store.ok()) << store.status();
  proto::RoundRecord stats = Row(3, std::nullopt).stats;
  stats.set_attempts(2);
  stats.set_clients_failed(1);
  stats.set_updates_clipped(4);
  stats.set_bytes_down(1ull << 40);
  stats.set_bytes_up(12345);
  stats.set_round_seconds(31.25);
  stats.set_unix_time(1.8e9);
  (*stats.mutable_rejected())["invalid_argument"] = 2;
  (*stats.mutable_rejected())["bad_checksum"] = 1;
  stats.set_rejected_total(7);
  stats.set_student_accuracy_sum(1.5);
  stats.set_student_reports(2);
  proto::Checkpoint ckpt = CheckpointAfter(4, {4});
  *ckpt.add_pending_rounds() = stats;
  ASSERT_TRUE(store->WriteCheckpoint(ckpt).ok());
  absl::StatusOr<proto::Checkpoint> back = store->ReadCheckpoint();
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->round(), 4);
  ASSERT_EQ(back->pending_rounds_size(), 2);
  // Every figure of the line survives the trip.
  RoundMetrics before, after;
  before.stats = stats;
  after.stats = back->pending_rounds(1);
  EXPECT_EQ(RunStore::MetricsToJson(after), RunStore::MetricsToJson(before));
}

// Evaluation lags behind the rounds: the checkpoint after round 4 was written while rounds 3 and
// 4 were still waiting for evaluation, and the process died before either line was written.
TEST(RunStore, RestoreAppendsTheLinesOfRoundsWhoseEvaluationWasLost) {
  absl::StatusOr<RunStore> store = RunStore::Open(TempDir() + "/run");
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE(store->AppendMetrics(Row(1, 0.5)).ok());
  ASSERT_TRUE(store->AppendMetrics(Row(2, 0.6)).ok());
  // Round 2 is pending in the checkpoint too (its line was written after the checkpoint) and
  // round 5 is beyond it: neither may be written again.
  FakeEvaluation eval;
  absl::StatusOr<int> appended = store->RestoreMetrics(CheckpointAfter(4, {2, 3, 4, 5}), eval.Fn());
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(*appended, 2);
  int evaluated = 0;
  EXPECT_EQ(Rounds(*store, &evaluated), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(evaluated, 3);  // rounds 1 and 2 as written, round 4 from the checkpoint's model
  EXPECT_EQ(eval.rounds, (std::vector<int64_t>{4}));
  // Restoring twice (a second crash before any new line) changes nothing.
  appended = store->RestoreMetrics(CheckpointAfter(4, {3, 4}), eval.Fn());
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(*appended, 0);
  EXPECT_EQ(Rounds(*store, &evaluated), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(eval.rounds.size(), 1u);
}

TEST(RunStore, RestoreDropsLinesAfterTheCheckpoint) {
  absl::StatusOr<RunStore> store = RunStore::Open(TempDir() + "/run");
  ASSERT_TRUE(store.ok()) << store.status();
  for (int r = 1; r <= 3; ++r) ASSERT_TRUE(store->AppendMetrics(Row(r, 0.1 * r)).ok());
  FakeEvaluation eval;
  absl::StatusOr<int> appended = store->RestoreMetrics(CheckpointAfter(2, {}), eval.Fn());
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(*appended, 0);
  EXPECT_TRUE(eval.rounds.empty());
  int evaluated = 0;
  EXPECT_EQ(Rounds(*store, &evaluated), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(evaluated, 2);
}

// A crash in the middle of an append leaves half a line; it is replaced by the pending record.
TEST(RunStore, RestoreReplacesALineCutShortByACrash) {
  absl::StatusOr<RunStore> store = RunStore::Open(TempDir() + "/run");
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE(store->AppendMetrics(Row(1, 0.5)).ok());
  const std::string whole = RunStore::MetricsToJson(Row(2, 0.6));
  ASSERT_TRUE(AppendLine(store->Path(RunStore::kMetricsFile), whole.substr(0, 30)).ok());
  FakeEvaluation eval;
  absl::StatusOr<int> appended = store->RestoreMetrics(CheckpointAfter(2, {2}), eval.Fn());
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(*appended, 1);
  int evaluated = 0;
  EXPECT_EQ(Rounds(*store, &evaluated), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(evaluated, 2);
  EXPECT_EQ(eval.rounds, (std::vector<int64_t>{2}));
}

TEST(RunStore, RestoreWithoutMetricsFileWritesThePendingLines) {
  absl::StatusOr<RunStore> store = RunStore::Open(TempDir() + "/run");
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<int> appended = store->RestoreMetrics(CheckpointAfter(2, {1, 2}), nullptr);
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(*appended, 2);
  int evaluated = 0;
  EXPECT_EQ(Rounds(*store, &evaluated), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(evaluated, 0);  // no evaluator: the lines keep no test figures
}

}  // namespace
}  // namespace edgefl::server
