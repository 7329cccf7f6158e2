#include "server/round_scheduler.h"
#include "server/strategy_registry.h"

#include <cmath>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "server/config.h"
#include "common/model_layout.h"
#include "common/status_reason.h"
#include "common/testing/simulated_clock.h"
#include "compression/update_codec.h"
#include "gtest/gtest.h"

namespace edgefl::server {
namespace {

proto::ModelSpec TinySpec() {
  proto::ModelSpec spec;
  spec.set_model("tiny");
  auto* t = spec.add_tensors();
  t->set_name("w");
  t->add_shape(4);
  return spec;
}

class SchedulerFixture : public ::testing::Test {
 protected:
  void SetUpScheduler(int clients, double deadline_s, int rounds, int max_attempts = 3,
                      double quorum = 0.5, double fraction = 1.0, int min_clients = 1) {
    ClientRegistry::Options ro;
    ro.id_seed = 1;
    registry_ = std::make_unique<ClientRegistry>(ro, clock_);
    for (int i = 0; i < clients; ++i) ids_.push_back(*registry_->Join(proto::DeviceProfile()));
    proto::ExperimentConfig config;
    config.set_rounds(rounds);
    config.set_deadline_seconds(deadline_s);
    config.set_quorum(quorum);
    config.set_max_round_attempts(max_attempts);
    config.mutable_sampling()->set_fraction(fraction);
    config.mutable_sampling()->set_min_clients(min_clients);
    config.mutable_sampling()->set_wait_for_clients_seconds(5);
    *config.mutable_update_bounds() = bounds_;
    *config.mutable_aggregation() = aggregation_;
    config.mutable_client()->set_uplink(uplink_);
    FillDefaults(&config);
    RoundScheduler::Options o;
    o.config = config;
    o.spec = TinySpec();
    o.weights = {1, 2, 3, 4};
    o.max_evaluation_backlog = max_evaluation_backlog_;
    o.on_round_closed = [this](const proto::RoundRecord& stats,
                               std::shared_ptr<const std::vector<float>> model,
                               const std::string& aggregation_state,
                               std::shared_ptr<const std::vector<float>> average) {
      absl::MutexLock lock(&mu_);
      closed_.push_back(stats.round());
      closed_models_.push_back(*model);
      closed_states_.push_back(aggregation_state);
      closed_averages_.push_back(average != nullptr ? *average : std::vector<float>());
    };
    ASSERT_TRUE(ValidateConfig(config).ok()) << ValidateConfig(config);
    auto pipeline = CreatePipeline(config, 4);
    ASSERT_TRUE(pipeline.ok()) << pipeline.status();
    auto s = RoundScheduler::Create(
        o, registry_.get(), std::move(*pipeline),
        [this](const proto::RoundRecord& stats, std::shared_ptr<const std::vector<float>> model,
               std::shared_ptr<const std::vector<float>> average) {
          if (block_worker_) release_worker_.WaitForNotification();
          absl::MutexLock lock(&mu_);
          done_.push_back(stats);
          models_.push_back(*model);
          done_averages_.push_back(average != nullptr ? *average : std::vector<float>());
        },
        clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    scheduler_ = std::move(*s);
  }

  void StartRun() {
    runner_ = std::thread([this] { run_status_ = scheduler_->Run(); });
  }
  absl::Status JoinRun() {
    runner_.join();
    return run_status_;
  }

  // Polls for a task for `id` (bounded).
  bool GetTask(const std::string& id, TaskGrant* grant) {
    return scheduler_->WaitForTask(id, absl::Seconds(10), nullptr, grant) == PollOutcome::kTask;
  }

  proto::ReportHeader Header(const std::string& id, const TaskGrant& g, uint64_t n) {
    proto::ReportHeader h;
    h.set_client_id(id);
    h.set_round(g.task.round());
    h.set_attempt(g.task.attempt());
    h.set_model_version(g.task.model_version());
    h.set_num_samples(n);
    return h;
  }

  void TearDown() override {
    if (!release_worker_.HasBeenNotified()) release_worker_.Notify();
  }

  // Deadline tests use simulated_clock_ (set before SetUpScheduler), so that a deadline passes
  // when the test advances the time, not after a real wait.
  void UseSimulatedClock() { clock_ = &simulated_clock_; }

  SimulatedClock simulated_clock_;
  const Clock* clock_ = Clock::Real();
  proto::UpdateBounds bounds_;    // set before SetUpScheduler
  proto::Aggregation aggregation_;  // set before SetUpScheduler
  bool block_worker_ = false;     // RoundDoneFn waits for release_worker_
  int max_evaluation_backlog_ = 16;  // set before SetUpScheduler
  absl::Notification release_worker_;
  std::string uplink_ = "dense";  // set before SetUpScheduler
  std::unique_ptr<ClientRegistry> registry_;
  std::unique_ptr<RoundScheduler> scheduler_;
  std::vector<std::string> ids_;
  std::thread runner_;
  absl::Status run_status_;
  absl::Mutex mu_;
  std::vector<proto::RoundRecord> done_;
  std::vector<std::vector<float>> models_;
  std::vector<int64_t> closed_;  // rounds passed to on_round_closed
  std::vector<std::vector<float>> closed_models_;
  std::vector<std::string> closed_states_;
  // Per round, the averaged model handed on (empty without one), as closed and as done.
  std::vector<std::vector<float>> closed_averages_;
  std::vector<std::vector<float>> done_averages_;
};

TEST_F(SchedulerFixture, RoundClosesWhenAllReportedWithWeightedMean) {
  SetUpScheduler(/*clients=*/2, /*deadline_s=*/30, /*rounds=*/1);
  StartRun();
  TaskGrant g0, g1;
  ASSERT_TRUE(GetTask(ids_[0], &g0));
  ASSERT_TRUE(GetTask(ids_[1], &g1));
  EXPECT_EQ(g0.task.round(), 1);
  EXPECT_EQ(g0.model->version, 0);
  std::vector<float> d0 = {1, 1, 1, 1}, d1 = {4, 4, 4, 4};
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g0, 1), d0).ok());
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[1], g1, 3), d1).ok());
  ASSERT_TRUE(JoinRun().ok());
  ASSERT_EQ(done_.size(), 1u);
  EXPECT_EQ(done_[0].clients_reported(), 2);
  EXPECT_EQ(done_[0].clients_failed(), 0);
  // mean delta = (1*1 + 3*4) / 4 = 3.25
  EXPECT_EQ(models_[0], (std::vector<float>{4.25f, 5.25f, 6.25f, 7.25f}));
  EXPECT_TRUE(scheduler_->finished());
}

// aggregation.averaging: from round 2 each closed round hands on, beside the global model, the
// mean of the global models since round 2 (to the checkpoint hook and to the worker alike);
// the devices are given the global model, not the average.
TEST_F(SchedulerFixture, AveragingHandsOnTheMeanOfTheGlobalModelsAndDevicesGetTheGlobalOne) {
  aggregation_.mutable_averaging()->set_from_round(2);
  SetUpScheduler(/*clients=*/1, /*deadline_s=*/30, /*rounds=*/3);
  StartRun();
  const std::vector<std::vector<float>> deltas = {{1, 1, 1, 1}, {2, 0, -2, 4}, {1, 3, 1, -1}};
  std::vector<float> global = {1, 2, 3, 4};
  std::vector<std::vector<float>> globals;
  for (int r = 0; r < 3; ++r) {
    TaskGrant g;
    ASSERT_TRUE(GetTask(ids_[0], &g)) << "round " << r + 1;
    ASSERT_EQ(g.model->payload.size(), 4 * sizeof(float));
    std::vector<float> given(4);
    std::memcpy(given.data(), g.model->payload.data(), g.model->payload.size());
    EXPECT_EQ(given, global) << "round " << r + 1 << ": the device was not given the global model";
    ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g, 1), deltas[r]).ok());
    for (size_t i = 0; i < 4; ++i) global[i] += deltas[r][i];
    globals.push_back(global);
  }
  ASSERT_TRUE(JoinRun().ok());
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(closed_averages_.size(), 3u);
  ASSERT_EQ(done_averages_.size(), 3u);
  EXPECT_TRUE(closed_averages_[0].empty());
  EXPECT_TRUE(done_averages_[0].empty());
  EXPECT_EQ(closed_averages_[1], globals[1]);
  std::vector<float> mean(4);
  for (size_t i = 0; i < 4; ++i) mean[i] = (globals[1][i] + globals[2][i]) / 2;
  EXPECT_EQ(closed_averages_[2], mean);
  EXPECT_EQ(done_averages_, closed_averages_);
  EXPECT_EQ(models_, globals);  // the global models themselves are unchanged by averaging
}

// A repeat of an accepted update (its answer was lost) is recognised by every header field the
// server verified; any other report from the client is not a repeat, and a refused update or a
// header with no SHA-256 is never one.
TEST_F(SchedulerFixture, OnlyAnExactRepeatOfAnAcceptedUpdateIsRecognised) {
  SetUpScheduler(/*clients=*/2, /*deadline_s=*/30, /*rounds=*/1);
  StartRun();
  TaskGrant g0, g1;
  ASSERT_TRUE(GetTask(ids_[0], &g0));
  ASSERT_TRUE(GetTask(ids_[1], &g1));
  proto::ReportHeader h = Header(ids_[0], g0, 2);
  h.set_codec("dense");
  h.set_total_bytes(16);
  h.set_sha256(std::string(32, 'a'));
  EXPECT_FALSE(scheduler_->IsRepeatOfAccepted(h));  // nothing accepted yet
  ASSERT_TRUE(scheduler_->SubmitUpdate(h, std::vector<float>{1, 1, 1, 1}).ok());
  EXPECT_TRUE(scheduler_->IsRepeatOfAccepted(h));
  std::vector<std::pair<const char*, proto::ReportHeader>> others;
  auto vary = [&](const char* what, auto change) {
    proto::ReportHeader o = h;
    change(&o);
    others.emplace_back(what, o);
  };
  vary("client", [&](proto::ReportHeader* o) { o->set_client_id(ids_[1]); });
  vary("round", [](proto::ReportHeader* o) { o->set_round(o->round() + 1); });
  vary("attempt", [](proto::ReportHeader* o) { o->set_attempt(o->attempt() + 1); });
  vary("version", [](proto::ReportHeader* o) { o->set_model_version(o->model_version() + 1); });
  vary("samples", [](proto::ReportHeader* o) { o->set_num_samples(3); });
  vary("codec", [](proto::ReportHeader* o) { o->set_codec("topk:0.5"); });
  vary("size", [](proto::ReportHeader* o) { o->set_total_bytes(20); });
  vary("sha256", [](proto::ReportHeader* o) { o->set_sha256(std::string(32, 'b')); });
  for (const auto& [what, o] : others) EXPECT_FALSE(scheduler_->IsRepeatOfAccepted(o)) << what;
  // A refused update (non-finite) from the other client is not remembered.
  proto::ReportHeader bad = Header(ids_[1], g1, 1);
  bad.set_sha256(std::string(32, 'c'));
  EXPECT_TRUE(absl::IsInvalidArgument(
      scheduler_->SubmitUpdate(bad, std::vector<float>{1, NAN, 1, 1})));
  EXPECT_FALSE(scheduler_->IsRepeatOfAccepted(bad));
  ASSERT_TRUE(JoinRun().ok());
  // Still recognised after its round closed (the answer may be lost to the closing update).
  EXPECT_TRUE(scheduler_->IsRepeatOfAccepted(h));
  proto::ReportHeader unsigned_header = h;
  unsigned_header.clear_sha256();
  EXPECT_FALSE(scheduler_->IsRepeatOfAccepted(unsigned_header));
}

// The checkpoint hook runs as each round closes, however far the (slow, low-priority) evaluation
// worker lags: here the worker is stuck in round 1 while rounds 2 and 3 run and close.
TEST_F(SchedulerFixture, RoundClosedHookDoesNotWaitForTheWorker) {
  block_worker_ = true;
  SetUpScheduler(/*clients=*/1, /*deadline_s=*/30, /*rounds=*/3);
  StartRun();
  const std::vector<float> d = {1, 1, 1, 1};
  for (int r = 1; r <= 3; ++r) {
    TaskGrant g;
    ASSERT_TRUE(GetTask(ids_[0], &g));
    EXPECT_EQ(g.task.round(), r);
    ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g, 1), d).ok());
  }
  {
    absl::MutexLock lock(&mu_);
    auto all_closed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_.size() >= 3; };
    ASSERT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&all_closed), absl::Seconds(30)));
    EXPECT_EQ(closed_, (std::vector<int64_t>{1, 2, 3}));
    EXPECT_EQ(closed_models_.back(), (std::vector<float>{4, 5, 6, 7}));
    EXPECT_TRUE(done_.empty());  // the worker has not finished round 1
  }
  release_worker_.Notify();
  ASSERT_TRUE(JoinRun().ok());
  ASSERT_EQ(done_.size(), 3u);
  EXPECT_EQ(done_[2].round(), 3);
  EXPECT_EQ(models_, closed_models_);
}

// A worker that cannot keep up holds a model per round it lags: with a backlog bound of 2, round
// 3 does not open while rounds 1 and 2 wait for the (blocked) worker, and opens once it moves.
TEST_F(SchedulerFixture, TheNextRoundWaitsWhileTheEvaluationBacklogIsFull) {
  block_worker_ = true;
  max_evaluation_backlog_ = 2;
  SetUpScheduler(/*clients=*/1, /*deadline_s=*/30, /*rounds=*/3);
  StartRun();
  const std::vector<float> d = {1, 1, 1, 1};
  for (int r = 1; r <= 2; ++r) {
    TaskGrant g;
    ASSERT_TRUE(GetTask(ids_[0], &g));
    EXPECT_EQ(g.task.round(), r);
    ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g, 1), d).ok());
  }
  {
    absl::MutexLock lock(&mu_);
    auto two_closed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_.size() >= 2; };
    ASSERT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&two_closed), absl::Seconds(30)));
  }
  // Without the bound round 3 opens within microseconds of round 2 closing; with it, a poll
  // held for a second finds nothing to do.
  TaskGrant g3;
  EXPECT_NE(scheduler_->WaitForTask(ids_[0], absl::Seconds(1), nullptr, &g3), PollOutcome::kTask);
  release_worker_.Notify();
  ASSERT_TRUE(GetTask(ids_[0], &g3));
  EXPECT_EQ(g3.task.round(), 3);
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g3, 1), d).ok());
  ASSERT_TRUE(JoinRun().ok());
  ASSERT_EQ(done_.size(), 3u);
  EXPECT_EQ(models_.back(), (std::vector<float>{4, 5, 6, 7}));
}

// Shutdown while the next round waits for the evaluation: Run returns instead of waiting on.
TEST_F(SchedulerFixture, ShutdownEndsAWaitForTheEvaluationBacklog) {
  block_worker_ = true;
  max_evaluation_backlog_ = 1;
  SetUpScheduler(/*clients=*/1, /*deadline_s=*/30, /*rounds=*/3);
  StartRun();
  TaskGrant g;
  ASSERT_TRUE(GetTask(ids_[0], &g));
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g, 1), std::vector<float>{1, 1, 1, 1}).ok());
  {
    absl::MutexLock lock(&mu_);
    auto closed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !closed_.empty(); };
    ASSERT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&closed), absl::Seconds(30)));
  }
  scheduler_->Shutdown();
  EXPECT_TRUE(absl::IsCancelled(JoinRun()));
  release_worker_.Notify();
}

TEST_F(SchedulerFixture, DeadlineClosesRoundWithQuorum) {
  UseSimulatedClock();
  SetUpScheduler(/*clients=*/3, /*deadline_s=*/0.5, /*rounds=*/1);
  StartRun();
  TaskGrant g[3];
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(GetTask(ids_[i], &g[i]));
  std::vector<float> d = {1, 1, 1, 1};
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g[0], 1), d).ok());
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[1], g[1], 1), d).ok());
  // Two of three reported: the round stays open until its deadline.
  simulated_clock_.AdvanceTime(absl::Milliseconds(499));
  EXPECT_TRUE(scheduler_->CheckReport(Header(ids_[2], g[2], 1)).ok());
  // The third never reports; the deadline closes the round.
  simulated_clock_.AdvanceTime(absl::Milliseconds(2));
  ASSERT_TRUE(JoinRun().ok());
  ASSERT_EQ(done_.size(), 1u);
  EXPECT_EQ(done_[0].clients_reported(), 2);
  EXPECT_EQ(done_[0].clients_failed(), 1);
  EXPECT_EQ(done_[0].attempts(), 1);
  // A report after the close is refused.
  EXPECT_EQ(scheduler_->SubmitUpdate(Header(ids_[2], g[2], 1), d).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SchedulerFixture, MissedQuorumRetriesThenFails) {
  UseSimulatedClock();
  SetUpScheduler(/*clients=*/2, /*deadline_s=*/0.2, /*rounds=*/1, /*max_attempts=*/2,
                 /*quorum=*/1.0);
  StartRun();
  TaskGrant g;
  ASSERT_TRUE(GetTask(ids_[0], &g));
  EXPECT_EQ(g.task.attempt(), 1);
  // Only one of two reports: below quorum 1.0 -> retried once the deadline passes.
  std::vector<float> d = {1, 1, 1, 1};
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g, 1), d).ok());
  simulated_clock_.AdvanceTime(absl::Milliseconds(200));
  TaskGrant g2;
  ASSERT_TRUE(GetTask(ids_[0], &g2));
  EXPECT_EQ(g2.task.attempt(), 2);
  // The second attempt's deadline counts from its own opening.
  EXPECT_NEAR(g2.task.deadline_unix_seconds() - g.task.deadline_unix_seconds(), 0.2, 1e-3);
  simulated_clock_.AdvanceTime(absl::Milliseconds(200));
  EXPECT_EQ(JoinRun().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(done_.empty());
}

TEST_F(SchedulerFixture, RejectsBadReportsWithoutTouchingTheRound) {
  // A refused update ends its client's attempt: each bad update comes from its own client.
  SetUpScheduler(/*clients=*/3, /*deadline_s=*/30, /*rounds=*/1, /*max_attempts=*/3,
                 /*quorum=*/0.3);
  StartRun();
  TaskGrant g[3];
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(GetTask(ids_[i], &g[i]));
  std::vector<float> nan = {1, std::numeric_limits<float>::quiet_NaN(), 1, 1};
  EXPECT_EQ(scheduler_->SubmitUpdate(Header(ids_[0], g[0], 1), nan).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> small = {1, 1};
  EXPECT_EQ(scheduler_->SubmitUpdate(Header(ids_[1], g[1], 1), small).code(),
            absl::StatusCode::kInvalidArgument);
  proto::ReportHeader stranger = Header("c-stranger", g[2], 1);
  EXPECT_EQ(scheduler_->CheckReport(stranger).code(), absl::StatusCode::kPermissionDenied);
  proto::ReportHeader stale = Header(ids_[2], g[2], 1);
  stale.set_model_version(3);
  EXPECT_EQ(scheduler_->CheckReport(stale).code(), absl::StatusCode::kFailedPrecondition);
  std::vector<float> zero = {0, 0, 0, 0};
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[2], g[2], 5), zero).ok());
  ASSERT_TRUE(JoinRun().ok());
  EXPECT_EQ(models_[0], (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(done_[0].clients_reported(), 1);
  EXPECT_EQ(done_[0].clients_refused(), 2);
  EXPECT_EQ(done_[0].clients_failed(), 2);
}

// A client whose update was refused as bad is done for the attempt: it is not handed the task
// again (a client whose model diverged would retrain it, fail again, and keep the round open
// until its deadline), its later reports in the attempt are refused, and the round closes without
// it. A refusal that is not about the update (corrupted upload, admission) leaves it free.
TEST_F(SchedulerFixture, ARefusedClientIsDoneForTheAttemptAndNotWaitedFor) {
  SetUpScheduler(/*clients=*/2, /*deadline_s=*/300, /*rounds=*/2);
  StartRun();
  TaskGrant g0, g1;
  ASSERT_TRUE(GetTask(ids_[0], &g0));
  ASSERT_TRUE(GetTask(ids_[1], &g1));
  // Transient refusals (the client retries the same upload) do not end client 0's attempt.
  EXPECT_EQ(scheduler_->RefuseReport(Header(ids_[0], g0, 1), absl::DataLossError("sha256")).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(scheduler_->RefuseReport(Header(ids_[0], g0, 1), absl::ResourceExhaustedError("busy"))
                .code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(scheduler_->CheckReport(Header(ids_[0], g0, 1)).ok());
  // A refusal for another attempt changes nothing either.
  proto::ReportHeader other_attempt = Header(ids_[0], g0, 1);
  other_attempt.set_attempt(2);
  EXPECT_EQ(scheduler_->RefuseReport(other_attempt, absl::InvalidArgumentError("bad")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(scheduler_->CheckReport(Header(ids_[0], g0, 1)).ok());
  // Client 1's update is NaN: refused, and client 1 is done for round 1 attempt 1.
  const std::vector<float> nan = {1, std::numeric_limits<float>::quiet_NaN(), 1, 1};
  EXPECT_EQ(scheduler_->SubmitUpdate(Header(ids_[1], g1, 1), nan).code(),
            absl::StatusCode::kInvalidArgument);
  TaskGrant again;
  EXPECT_EQ(scheduler_->WaitForTask(ids_[1], absl::Milliseconds(100), nullptr, &again),
            PollOutcome::kIdle);
  const std::vector<float> d = {1, 1, 1, 1};
  absl::Status second = scheduler_->SubmitUpdate(Header(ids_[1], g1, 1), d);
  EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition) << second;
  EXPECT_NE(second.message().find("was refused"), absl::string_view::npos) << second;
  EXPECT_FALSE(scheduler_->Decline(ids_[1], 1, 1, "battery_low"));  // already out
  // Client 0 reports: the round closes on it, long before the 300 s deadline.
  const absl::Time start = absl::Now();
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g0, 1), d).ok());
  // Round 2 is a new attempt: client 1 gets its task again and may report.
  TaskGrant r0, r1;
  ASSERT_TRUE(GetTask(ids_[0], &r0));
  ASSERT_TRUE(GetTask(ids_[1], &r1));
  EXPECT_EQ(r1.task.round(), 2);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], r0, 1), d).ok());
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[1], r1, 1), d).ok());
  ASSERT_TRUE(JoinRun().ok());
  ASSERT_EQ(done_.size(), 2u);
  EXPECT_EQ(done_[0].attempts(), 1);
  EXPECT_EQ(done_[0].clients_reported(), 1);
  EXPECT_EQ(done_[0].clients_refused(), 1);
  EXPECT_EQ(done_[0].clients_failed(), 1);
  EXPECT_EQ(done_[0].clients_declined(), 0);
  EXPECT_EQ(done_[1].clients_reported(), 2);
  EXPECT_EQ(done_[1].clients_refused(), 0);
  EXPECT_EQ(models_[0], (std::vector<float>{2, 3, 4, 5}));  // the NaN never reached the model
  EXPECT_EQ(models_[1], (std::vector<float>{3, 4, 5, 6}));
}

// When every selected client's update is refused (the model has diverged: all updates are NaN),
// each attempt closes at once and misses its quorum; the run ends after max_round_attempts
// instead of waiting out every attempt's deadline.
TEST_F(SchedulerFixture, AnAttemptWhoseClientsAreAllRefusedClosesAtOnce) {
  SetUpScheduler(/*clients=*/2, /*deadline_s=*/300, /*rounds=*/1, /*max_attempts=*/2);
  const absl::Time start = absl::Now();
  StartRun();
  const std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN(), 1, 1, 1};
  for (int attempt = 1; attempt <= 2; ++attempt) {
    for (int i = 0; i < 2; ++i) {
      TaskGrant g;
      ASSERT_TRUE(GetTask(ids_[i], &g));
      EXPECT_EQ(g.task.attempt(), attempt);
      EXPECT_EQ(scheduler_->SubmitUpdate(Header(ids_[i], g, 1), nan).code(),
                absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_EQ(JoinRun().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
  EXPECT_TRUE(done_.empty());
}

TEST_F(SchedulerFixture, SamplingSelectsFractionAndRefusesOthers) {
  SetUpScheduler(/*clients=*/4, /*deadline_s=*/30, /*rounds=*/1, 3, 0.5, /*fraction=*/0.5);
  StartRun();
  int selected = 0;
  TaskGrant g;
  std::vector<std::string> chosen;
  for (const auto& id : ids_) {
    if (scheduler_->WaitForTask(id, absl::Milliseconds(300), nullptr, &g) == PollOutcome::kTask) {
      chosen.push_back(id);
      ++selected;
    }
  }
  EXPECT_EQ(selected, 2);
  std::vector<float> d = {0, 0, 0, 0};
  for (const auto& id : chosen) ASSERT_TRUE(scheduler_->SubmitUpdate(Header(id, g, 1), d).ok());
  ASSERT_TRUE(JoinRun().ok());
  EXPECT_EQ(done_[0].clients_selected(), 2);
}

TEST_F(SchedulerFixture, NormBoundRejectsLargeDenseUpdates) {
  bounds_.set_max_l2_norm(3.0);  // on_violation defaults to "reject"
  SetUpScheduler(/*clients=*/2, /*deadline_s=*/30, /*rounds=*/1);
  StartRun();
  TaskGrant g0, g1;
  ASSERT_TRUE(GetTask(ids_[0], &g0));
  ASSERT_TRUE(GetTask(ids_[1], &g1));
  const std::vector<float> big = {2, 2, 2, 2};  // norm 4
  absl::Status s = scheduler_->SubmitUpdate(Header(ids_[0], g0, 1), big);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("max_l2_norm"), absl::string_view::npos) << s;
  const std::vector<float> ok = {1, 1, 1, 1};  // norm 2: within the bound
  // The refused client is done for the attempt, even with an update within the bound.
  EXPECT_EQ(scheduler_->SubmitUpdate(Header(ids_[0], g0, 1), ok).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[1], g1, 1), ok).ok());
  ASSERT_TRUE(JoinRun().ok());
  EXPECT_EQ(models_[0], (std::vector<float>{2, 3, 4, 5}));
  EXPECT_EQ(done_[0].updates_clipped(), 0);
  EXPECT_EQ(done_[0].clients_refused(), 1);
}

TEST_F(SchedulerFixture, NormBoundClipsDenseUpdates) {
  bounds_.set_max_l2_norm(2.0);
  bounds_.set_on_violation("clip");
  SetUpScheduler(/*clients=*/1, /*deadline_s=*/30, /*rounds=*/1);
  StartRun();
  TaskGrant g;
  ASSERT_TRUE(GetTask(ids_[0], &g));
  const std::vector<float> big = {4, 4, 4, 4};  // norm 8 -> scaled by 1/4
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g, 1), big).ok());
  ASSERT_TRUE(JoinRun().ok());
  EXPECT_EQ(models_[0], (std::vector<float>{2, 3, 4, 5}));
  EXPECT_EQ(done_[0].updates_clipped(), 1);
}

TEST_F(SchedulerFixture, NormBoundAppliesToEncodedUpdates) {
  bounds_.set_max_l2_norm(2.0);
  bounds_.set_on_violation("clip");
  uplink_ = "fp16";
  SetUpScheduler(/*clients=*/2, /*deadline_s=*/30, /*rounds=*/1);
  StartRun();
  TaskGrant g0, g1;
  ASSERT_TRUE(GetTask(ids_[0], &g0));
  ASSERT_TRUE(GetTask(ids_[1], &g1));
  const auto layout = LayoutOf(TinySpec());
  const auto chain = *compression::ParseChain("fp16");
  const std::vector<float> big = {4, 4, 4, 4};    // norm 8 -> clipped to {1, 1, 1, 1}
  const std::vector<float> small = {1, 1, 1, 1};  // norm 2 -> as is
  auto e0 = compression::EncodeUpdate(chain, ViewsOf(layout, big), nullptr, 1);
  auto e1 = compression::EncodeUpdate(chain, ViewsOf(layout, small), nullptr, 1);
  ASSERT_TRUE(e0.ok() && e1.ok());
  ASSERT_TRUE(scheduler_->SubmitEncodedUpdate(Header(ids_[0], g0, 1), *e0, chain).ok());
  ASSERT_TRUE(scheduler_->SubmitEncodedUpdate(Header(ids_[1], g1, 3), *e1, chain).ok());
  ASSERT_TRUE(JoinRun().ok());
  // Both deltas are {1,1,1,1} after clipping; the weights (1 and 3) keep their shares.
  EXPECT_EQ(models_[0], (std::vector<float>{2, 3, 4, 5}));
  EXPECT_EQ(done_[0].updates_clipped(), 1);
}

TEST_F(SchedulerFixture, NormBoundRejectsEncodedUpdates) {
  bounds_.set_max_l2_norm(2.0);
  uplink_ = "int8";
  SetUpScheduler(/*clients=*/2, /*deadline_s=*/30, /*rounds=*/1);
  StartRun();
  TaskGrant g0, g1;
  ASSERT_TRUE(GetTask(ids_[0], &g0));
  ASSERT_TRUE(GetTask(ids_[1], &g1));
  const auto layout = LayoutOf(TinySpec());
  const auto chain = *compression::ParseChain("int8");
  const std::vector<float> big = {4, 4, 4, 4};
  auto e = compression::EncodeUpdate(chain, ViewsOf(layout, big), nullptr, 1);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(scheduler_->SubmitEncodedUpdate(Header(ids_[0], g0, 1), *e, chain).code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<float> zero = {0, 0, 0, 0};
  auto z = compression::EncodeUpdate(chain, ViewsOf(layout, zero), nullptr, 1);
  EXPECT_EQ(scheduler_->SubmitEncodedUpdate(Header(ids_[0], g0, 1), *z, chain).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(scheduler_->SubmitEncodedUpdate(Header(ids_[1], g1, 1), *z, chain).ok());
  ASSERT_TRUE(JoinRun().ok());
  EXPECT_EQ(models_[0], (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(done_[0].clients_refused(), 1);
}


// Krum needs n > 2f + 2 updates: a round whose deadline brings fewer is retried (counted under
// the reason), not the end of the run, and the model is untouched until a round can combine.
TEST_F(SchedulerFixture, KrumWithTooFewUpdatesRetriesTheRoundWithACountedReason) {
  UseSimulatedClock();
  aggregation_.set_strategy("krum");  // f = 1: needs 5 updates
  SetUpScheduler(/*clients=*/5, /*deadline_s=*/0.5, /*rounds=*/1, /*max_attempts=*/3,
                 /*quorum=*/0.5, /*fraction=*/1.0, /*min_clients=*/5);
  StartRun();
  TaskGrant g[5];
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(GetTask(ids_[i], &g[i]));
  const std::vector<float> d = {1, 1, 1, 1};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[i], g[i], 1), d).ok());
  simulated_clock_.AdvanceTime(absl::Milliseconds(600));  // quorum met, but 3 <= 2f + 2
  TaskGrant r[5];
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(GetTask(ids_[i], &r[i]));
    EXPECT_EQ(r[i].task.attempt(), 2);
    EXPECT_EQ(r[i].model->version, 0);  // nothing was applied
  }
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[i], r[i], 1), d).ok());
  }
  ASSERT_TRUE(JoinRun().ok());
  ASSERT_EQ(done_.size(), 1u);
  EXPECT_EQ(done_[0].attempts(), 2);
  EXPECT_EQ(done_[0].rejected().at("krum_too_few_updates"), 1);
  EXPECT_EQ(models_[0], (std::vector<float>{2, 3, 4, 5}));
}

// A buffering rule holds at most combiner.max_updates: the round selects no more than that.
TEST_F(SchedulerFixture, BufferedRuleCapsTheSelectionAtMaxUpdates) {
  aggregation_.set_strategy("fedmedian");
  aggregation_.mutable_combiner()->set_max_updates(3);
  SetUpScheduler(/*clients=*/5, /*deadline_s=*/30, /*rounds=*/1);
  StartRun();
  std::vector<int> selected;
  for (int i = 0; i < 5; ++i) {
    TaskGrant g;
    if (scheduler_->WaitForTask(ids_[i], absl::Milliseconds(300), nullptr, &g) ==
        PollOutcome::kTask) {
      selected.push_back(i);
      const float v = static_cast<float>(selected.size());
      ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[i], g, 1), std::vector<float>(4, v)).ok());
    }
  }
  ASSERT_TRUE(JoinRun().ok());
  EXPECT_EQ(selected.size(), 3u);
  EXPECT_EQ(done_[0].clients_selected(), 3);
  EXPECT_EQ(models_[0], (std::vector<float>{3, 4, 5, 6}));  // median of 1, 2, 3 is 2
}

// The strategy's state travels with each closed round, and the schedule's server_lr is used.
TEST_F(SchedulerFixture, ClosedRoundsCarryTheOptimizerStateAndTheScheduledServerLr) {
  aggregation_.set_strategy("fedavgm");
  aggregation_.mutable_server_optimizer()->set_lr(0.5);
  SetUpScheduler(/*clients=*/1, /*deadline_s=*/30, /*rounds=*/1);  // the registry; replaced below
  proto::ExperimentConfig config;
  config.set_rounds(2);
  config.mutable_sampling()->set_min_clients(1);
  config.mutable_sampling()->set_wait_for_clients_seconds(5);
  *config.mutable_aggregation() = aggregation_;
  proto::ScheduleEntry* e = config.add_schedule();
  e->set_from_round(2);
  e->set_server_lr(0.25);
  FillDefaults(&config);
  ASSERT_TRUE(ValidateConfig(config).ok()) << ValidateConfig(config);
  RoundScheduler::Options o;
  o.config = config;
  o.spec = TinySpec();
  o.weights = {0, 0, 0, 0};
  o.on_round_closed = [this](const proto::RoundRecord& stats,
                             std::shared_ptr<const std::vector<float>> model,
                             const std::string& state, std::shared_ptr<const std::vector<float>>) {
    absl::MutexLock lock(&mu_);
    closed_states_.push_back(state);
    closed_models_.push_back(*model);
  };
  auto sched = RoundScheduler::Create(
      o, registry_.get(), std::move(*CreatePipeline(config, 4)),
      [this](const proto::RoundRecord& stats, std::shared_ptr<const std::vector<float>>,
             std::shared_ptr<const std::vector<float>>) {
        absl::MutexLock lock(&mu_);
        done_.push_back(stats);
      },
      clock_);
  ASSERT_TRUE(sched.ok()) << sched.status();
  scheduler_ = std::move(*sched);
  StartRun();
  for (int round = 1; round <= 2; ++round) {
    TaskGrant g;
    ASSERT_TRUE(GetTask(ids_[0], &g));
    ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g, 1), std::vector<float>(4, 1)).ok());
  }
  ASSERT_TRUE(JoinRun().ok());
  ASSERT_EQ(closed_states_.size(), 2u);
  EXPECT_FALSE(closed_states_[0].empty());
  EXPECT_NE(closed_states_[0], closed_states_[1]);  // the velocity moved
  // Round 1: u = 1, x = 0.5. Round 2: u = 0.9 + 1 = 1.9, x = 0.5 + 0.25 * 1.9 = 0.975.
  EXPECT_FLOAT_EQ(closed_models_[0][0], 0.5f);
  EXPECT_FLOAT_EQ(closed_models_[1][0], 0.975f);
  ASSERT_EQ(done_.size(), 2u);
  EXPECT_DOUBLE_EQ(done_[0].server_lr(), 0.5);
  EXPECT_DOUBLE_EQ(done_[1].server_lr(), 0.25);
  // A pipeline restored from round 1's state continues exactly like the run did.
  auto restored = CreatePipeline(config, 4);
  ASSERT_TRUE(restored.ok());
  ASSERT_TRUE((*restored)->LoadState(closed_states_[0]).ok());
  aggregation::RoundContext ctx(2);
  ctx.server_lr = ResolveServerLr(config, 2);
  (*restored)->BeginRound(ctx);
  ASSERT_TRUE((*restored)->Accumulate(std::vector<float>(4, 1), 1).ok());
  std::vector<float> model = closed_models_[0];
  ASSERT_TRUE((*restored)->Aggregate(absl::MakeSpan(model), 0).ok());
  EXPECT_EQ(model, closed_models_[1]);
  EXPECT_EQ((*restored)->SaveState(), closed_states_[1]);
}

}  // namespace
}  // namespace edgefl::server

namespace edgefl::server {
namespace {

TEST_F(SchedulerFixture, ADeclinedTaskIsCountedAndNotWaitedFor) {
  SetUpScheduler(/*clients=*/2, /*deadline_s=*/300, /*rounds=*/1);
  StartRun();
  TaskGrant g0, g1;
  ASSERT_TRUE(GetTask(ids_[0], &g0));
  ASSERT_TRUE(GetTask(ids_[1], &g1));
  // A decline for another round or attempt, or from a client not selected, changes nothing.
  EXPECT_FALSE(scheduler_->Decline(ids_[1], 2, 1, "battery_low"));
  EXPECT_FALSE(scheduler_->Decline(ids_[1], 1, 2, "battery_low"));
  EXPECT_FALSE(scheduler_->Decline("c-stranger", 1, 1, "battery_low"));
  EXPECT_TRUE(scheduler_->Decline(ids_[1], 1, 1, "battery_low"));
  EXPECT_FALSE(scheduler_->Decline(ids_[1], 1, 1, "too_hot"));  // counted once
  // The decliner is not offered the task again.
  TaskGrant again;
  EXPECT_EQ(scheduler_->WaitForTask(ids_[1], absl::Milliseconds(100), nullptr, &again),
            PollOutcome::kIdle);
  std::vector<float> d0 = {1, 1, 1, 1};
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], g0, 1), d0).ok());
  // The round closes on the one report, long before its 300 s deadline.
  const absl::Time start = absl::Now();
  ASSERT_TRUE(JoinRun().ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  ASSERT_EQ(done_.size(), 1u);
  EXPECT_EQ(done_[0].clients_reported(), 1);
  EXPECT_EQ(done_[0].clients_declined(), 1);
  ASSERT_EQ(done_[0].declined().size(), 1u);
  EXPECT_EQ(done_[0].declined().at("battery_low"), 1);
  EXPECT_EQ(models_[0], (std::vector<float>{2, 3, 4, 5}));
}

proto::DeviceProfile Profile(const std::string& arch, uint64_t ram_mb, uint64_t samples,
                             const std::string& accelerator = "") {
  proto::DeviceProfile p;
  p.set_arch(arch);
  p.set_ram_bytes(ram_mb << 20);
  p.set_num_samples(samples);
  p.set_accelerator(accelerator);
  return p;
}

TEST(ClientRegistry, SelectsOnlyEligibleDevicesFromTheirLatestProfile) {
  ClientRegistry::Options o;
  o.id_seed = 3;
  o.eligibility.set_min_ram_mb(1024);
  o.eligibility.add_architectures("aarch64");
  o.eligibility.add_architectures("armv7l");
  o.eligibility.set_min_samples(100);
  ClientRegistry registry(o, Clock::Real());
  const std::string pi = *registry.Join(Profile("aarch64", 4096, 500));
  const std::string pc = *registry.Join(Profile("x86_64", 16384, 500));
  const std::string small = *registry.Join(Profile("aarch64", 512, 500));
  const std::string few = *registry.Join(Profile("armv7l", 2048, 10));
  EXPECT_EQ(registry.Eligible(), std::vector<std::string>{pi});
  EXPECT_EQ(registry.size(), 4);  // joined all the same
  EXPECT_EQ(ClientRegistry::Ineligibility(o.eligibility, Profile("x86_64", 16384, 500)),
            "arch 'x86_64' not in [aarch64, armv7l]");
  EXPECT_EQ(ClientRegistry::Ineligibility(o.eligibility, Profile("aarch64", 512, 500)),
            "ram 512 MiB < min_ram_mb 1024");
  EXPECT_EQ(ClientRegistry::Ineligibility(o.eligibility, Profile("armv7l", 2048, 10)),
            "10 samples < min_samples 100");
  // A refreshed profile changes eligibility both ways.
  ASSERT_TRUE(registry.UpdateProfile(few, Profile("armv7l", 2048, 200)).ok());
  ASSERT_TRUE(registry.UpdateProfile(pi, Profile("aarch64", 4096, 50)).ok());
  EXPECT_EQ(registry.Eligible(), std::vector<std::string>{few});
  EXPECT_EQ(registry.UpdateProfile("c-unknown", Profile("aarch64", 4096, 500)).code(),
            absl::StatusCode::kNotFound);
  // An accelerator requirement.
  proto::Eligibility gpu;
  gpu.set_accelerator("cuda");
  EXPECT_EQ(ClientRegistry::Ineligibility(gpu, Profile("aarch64", 4096, 500, "cuda")), "");
  EXPECT_EQ(ClientRegistry::Ineligibility(gpu, Profile("aarch64", 4096, 500)),
            "accelerator '' is not 'cuda'");
  // No criteria: everyone.
  EXPECT_EQ(ClientRegistry::Ineligibility(proto::Eligibility(), proto::DeviceProfile()), "");
  (void)pc;
  (void)small;
}

// aggregation.mode "buffered" (FedBuff): a version closes after buffer_size updates; an update
// computed against an older version still counts, scaled by (1 + staleness)^-a.
class BufferedSchedulerTest : public SchedulerFixture {
 protected:
  void SetUpBuffered(int clients, int rounds, int max_staleness) {
    aggregation_.set_mode("buffered");
    aggregation_.mutable_buffered()->set_buffer_size(2);
    aggregation_.mutable_buffered()->set_staleness_exponent(0.5);
    aggregation_.mutable_buffered()->set_max_staleness(max_staleness);
    SetUpScheduler(clients, /*deadline_s=*/60, rounds);
  }
};

TEST_F(BufferedSchedulerTest, AVersionClosesAfterBufferSizeUpdatesAndStaleOnesAreDownWeighted) {
  SetUpBuffered(/*clients=*/3, /*rounds=*/2, /*max_staleness=*/2);
  StartRun();
  TaskGrant a, b, c;
  ASSERT_TRUE(GetTask(ids_[0], &a));
  ASSERT_TRUE(GetTask(ids_[1], &b));
  ASSERT_TRUE(GetTask(ids_[2], &c));
  EXPECT_EQ(c.model->version, 0);
  const std::vector<float> d1 = {1, 1, 1, 1}, d3 = {3, 3, 3, 3};
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], a, 1), d1).ok());
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[1], b, 1), d3).ok());
  // Two updates filled the buffer: version 1 is out, and a device that reported gets it.
  TaskGrant a2;
  ASSERT_TRUE(GetTask(ids_[0], &a2));
  EXPECT_EQ(a2.model->version, 1);
  EXPECT_EQ(a2.task.round(), 2);
  // c still trains on version 0: its update arrives one version late and counts 1/sqrt(2).
  const std::vector<float> d4 = {4, 4, 4, 4}, d2 = {2, 2, 2, 2};
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[2], c, 1), d4).ok());
  // Its task is used up: the same update again is refused.
  EXPECT_EQ(scheduler_->SubmitUpdate(Header(ids_[2], c, 1), d4).code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], a2, 1), d2).ok());
  ASSERT_TRUE(JoinRun().ok());
  ASSERT_EQ(done_.size(), 2u);
  EXPECT_EQ(done_[0].clients_reported(), 2);
  EXPECT_EQ(done_[0].updates_stale(), 0);
  EXPECT_EQ(done_[1].clients_reported(), 2);
  EXPECT_EQ(done_[1].updates_stale(), 1);
  EXPECT_EQ(done_[1].staleness_max(), 1);
  // Version 1 = {1,2,3,4} + mean(1, 3) = {3,4,5,6}; version 2 adds mean(2, 4 / sqrt 2).
  const float stale = static_cast<float>(4.0 * std::pow(2.0, -0.5));
  for (int i = 0; i < 4; ++i) {
    EXPECT_FLOAT_EQ(models_[0][i], static_cast<float>(i + 3));
    EXPECT_NEAR(models_[1][i], i + 3 + (2.0 + stale) / 2, 1e-5);
  }
}

TEST_F(BufferedSchedulerTest, AnUpdateStalerThanMaxStalenessIsRefusedWithItsReason) {
  SetUpBuffered(/*clients=*/3, /*rounds=*/2, /*max_staleness=*/0);
  StartRun();
  TaskGrant a, b, c;
  ASSERT_TRUE(GetTask(ids_[0], &a));
  ASSERT_TRUE(GetTask(ids_[1], &b));
  ASSERT_TRUE(GetTask(ids_[2], &c));
  const std::vector<float> d = {1, 1, 1, 1};
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], a, 1), d).ok());
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[1], b, 1), d).ok());
  TaskGrant a2, b2;
  ASSERT_TRUE(GetTask(ids_[0], &a2));
  ASSERT_TRUE(GetTask(ids_[1], &b2));
  const absl::Status stale = scheduler_->SubmitUpdate(Header(ids_[2], c, 1), d);
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(stale).value_or(""), "too_stale");
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[0], a2, 1), d).ok());
  ASSERT_TRUE(scheduler_->SubmitUpdate(Header(ids_[1], b2, 1), d).ok());
  ASSERT_TRUE(JoinRun().ok());
  ASSERT_EQ(models_.size(), 2u);
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(models_[1][i], static_cast<float>(i + 3));
}

TEST(BufferedConfig, BadSettingsNameTheirField) {
  struct Case {
    const char* json;
    const char* names;
  };
  const Case cases[] = {
      {R"({"aggregation": {"mode": "async"}})", "aggregation.mode"},
      {R"({"aggregation": {"mode": "buffered", "buffered": {"buffer_size": 0}}})",
       "buffered.buffer_size"},
      {R"({"aggregation": {"mode": "buffered", "buffered": {"staleness_exponent": -1}}})",
       "buffered.staleness_exponent"},
      {R"({"aggregation": {"mode": "buffered", "buffered": {"max_staleness": -2}}})",
       "buffered.max_staleness"},
      {R"({"aggregation": {"mode": "buffered", "combiner": {"rule": "median"}}})",
       "streaming combiner"},
      {R"({"aggregation": {"mode": "buffered", "strategy": "dp_fedavg"}})", "aggregation.dp"},
      {R"({"aggregation": {"buffered": {"buffer_size": 4}}})", "aggregation.mode is not"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    absl::StatusOr<proto::ExperimentConfig> config = ParseConfigJson(c.json);
    ASSERT_TRUE(config.ok()) << config.status();
    FillDefaults(&*config);
    const absl::Status s = ValidateConfig(*config);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(c.names), std::string::npos) << s.message();
  }
  absl::StatusOr<proto::ExperimentConfig> ok =
      ParseConfigJson(R"({"aggregation": {"mode": "buffered", "strategy": "fedadam"}})");
  ASSERT_TRUE(ok.ok());
  FillDefaults(&*ok);
  EXPECT_TRUE(ValidateConfig(*ok).ok()) << ValidateConfig(*ok);
  EXPECT_EQ(ok->aggregation().buffered().buffer_size(), 10);
}

}  // namespace
}  // namespace edgefl::server
