// The regional aggregator's upstream loop against an in-memory coordinator and region on a
// simulated clock (no processes, no waiting), and the scheduler's externally driven round.
#include "server/upstream_link.h"

#include <cmath>
#include <cstring>
#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/model_layout.h"
#include "common/status_reason.h"
#include "common/testing/simulated_clock.h"
#include "compression/update_codec.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "server/strategy_registry.h"

namespace edgefl::server {
namespace {

using Kind = client::Coordinator::CheckInResult::Kind;

proto::ModelSpec TinySpec() {
  proto::ModelSpec spec;
  spec.set_model("tiny");
  auto* t = spec.add_tensors();
  t->set_name("w");
  t->add_shape(4);
  return spec;
}

std::string Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// An upstream in memory: Joins fail with the scripted errors first, CheckIns take the next
// scripted answer and say "finished" once the script is used up.
class FakeUpstream : public client::Coordinator {
 public:
  explicit FakeUpstream(const Clock* clock) : clock_(clock) {}

  std::deque<absl::Status> join_errors;
  std::deque<absl::StatusOr<CheckInResult>> checkins;
  std::deque<absl::Status> report_answers;      // default: accepted
  absl::Status join_always = absl::OkStatus();  // once join_errors is used up

  std::vector<absl::Time> join_times;
  std::vector<proto::JoinRequest> join_requests;
  std::vector<proto::CheckInRequest> checkin_extras;
  std::vector<absl::Duration> checkin_timeouts;
  uint64_t model_bytes = 0;  // JoinResponse.model_bytes
  std::vector<std::pair<proto::ReportHeader, std::string>> reports;

  absl::StatusOr<proto::JoinResponse> Join(const proto::JoinRequest& request) override {
    if (!join_always.ok()) return join_always;  // (not recorded: the loop may spin)
    join_times.push_back(clock_->Now());
    join_requests.push_back(request);
    if (!join_errors.empty()) {
      absl::Status s = join_errors.front();
      join_errors.pop_front();
      return s;
    }
    proto::JoinResponse r;
    r.set_client_id("region-a");
    r.set_checkin_poll_seconds(20);
    r.set_model_bytes(model_bytes);
    return r;
  }
  absl::StatusOr<CheckInResult> CheckIn(const std::string& client_id, int64_t have_version,
                                        absl::Duration timeout, bool want_final_model,
                                        const proto::CheckInRequest& extras) override {
    EXPECT_EQ(client_id, "region-a");
    EXPECT_TRUE(want_final_model);
    EXPECT_GT(timeout, absl::ZeroDuration());
    checkin_extras.push_back(extras);
    checkin_timeouts.push_back(timeout);
    if (checkins.empty()) {
      CheckInResult done;
      done.kind = Kind::kFinished;
      return done;
    }
    auto step = std::move(checkins.front());
    checkins.pop_front();
    return step;
  }
  absl::StatusOr<proto::ReportResponse> Report(proto::ReportHeader header, std::string_view payload,
                                               absl::Time deadline, uint64_t* bytes_up) override {
    reports.emplace_back(header, std::string(payload));
    if (bytes_up != nullptr) *bytes_up = payload.size();
    if (!report_answers.empty()) {
      absl::Status s = report_answers.front();
      report_answers.pop_front();
      if (!s.ok()) return s;
    }
    proto::ReportResponse r;
    r.set_accepted(true);
    return r;
  }
  void SetSession(std::string, absl::Time) override {}
  std::string session_token() const override { return ""; }
  absl::Time session_expires() const override { return absl::InfiniteFuture(); }

 private:
  const Clock* clock_;
};

class FakeRegion : public Region {
 public:
  uint64_t samples = 120;
  std::deque<absl::StatusOr<RoundScheduler::ExternalResult>> answers;
  struct Call {
    proto::Task task;
    std::vector<float> model;
    absl::Time close_by;
  };
  std::vector<Call> calls;
  int finished = 0;
  int64_t final_version = -2;
  std::vector<float> final_model;

  uint64_t RegisteredSamples() const override { return samples; }
  absl::StatusOr<RoundScheduler::ExternalResult> RunRound(const proto::Task& task,
                                                          absl::Span<const float> model,
                                                          absl::Time close_by) override {
    calls.push_back({task, std::vector<float>(model.begin(), model.end()), close_by});
    auto a = std::move(answers.front());
    answers.pop_front();
    return a;
  }
  void Finish(int64_t version, const std::vector<float>* model) override {
    ++finished;
    final_version = version;
    if (model != nullptr) final_model = *model;
  }
};

client::Coordinator::CheckInResult TaskAnswer(int64_t round, int64_t version, absl::Time deadline,
                                              const std::vector<float>& model) {
  client::Coordinator::CheckInResult r;
  r.kind = Kind::kTask;
  r.task.set_round(round);
  r.task.set_attempt(1);
  r.task.set_model_version(version);
  r.task.mutable_config()->set_uplink("dense");
  r.task.mutable_config()->set_lr(0.25);
  r.task.mutable_config()->set_seed(99);
  *r.task.mutable_spec() = TinySpec();
  r.task.set_base_version(-1);
  r.task.set_downlink_codec("dense");
  r.task.set_deadline_unix_seconds(absl::ToDoubleSeconds(deadline - absl::UnixEpoch()));
  r.payload = Bytes(model);
  return r;
}

struct LinkUnderTest {
  SimulatedClock clock;
  FakeUpstream* upstream = nullptr;  // owned by link
  FakeRegion region;
  std::unique_ptr<UpstreamLink> link;

  explicit LinkUnderTest(double min_download_bytes_per_second = 0) {
    auto fake = std::make_unique<FakeUpstream>(&clock);
    upstream = fake.get();
    UpstreamLink::Options o;
    o.upstream = "root:1";
    o.profile.set_arch("x86_64");
    o.margin = absl::Seconds(10);
    if (min_download_bytes_per_second > 0) {
      o.min_download_bytes_per_second = min_download_bytes_per_second;
    }
    auto made = UpstreamLink::Create(o, std::move(fake), &region, &clock);
    EXPECT_TRUE(made.ok()) << made.status();
    link = std::move(*made);
  }
};

TEST(UpstreamLink, RefusedJoinIsRetriedWithGrowingBackoffUntilAccepted) {
  LinkUnderTest t;
  for (int i = 0; i < 5; ++i) {
    t.upstream->join_errors.push_back(
        absl::UnauthenticatedError("enrollment token refused: bad signature"));
  }
  ASSERT_TRUE(t.link->Run().ok());
  EXPECT_EQ(t.link->joins_refused(), 5);
  ASSERT_EQ(t.upstream->join_times.size(), 6u);
  // Backoff 1 s, 2 s, 4 s, 8 s, 16 s, each within +-30% jitter.
  for (int i = 1; i < 6; ++i) {
    const double gap =
        absl::ToDoubleSeconds(t.upstream->join_times[i] - t.upstream->join_times[i - 1]);
    const double nominal = 1 << (i - 1);
    EXPECT_GE(gap, 0.7 * nominal - 1e-6) << i;
    EXPECT_LE(gap, 1.3 * nominal + 1e-6) << i;
  }
  // Joined with the region's weight; the run ended when the upstream said so.
  EXPECT_EQ(t.upstream->join_requests.back().profile().num_samples(), 120u);
  EXPECT_EQ(t.region.finished, 1);
}

TEST(UpstreamLink, ShutdownInterruptsTheRetries) {
  LinkUnderTest t;
  t.upstream->join_always = absl::UnavailableError("connection refused");
  // The link retries forever (on the simulated clock, without waiting); another thread stops it.
  absl::Status s;
  std::thread runner([&] { s = t.link->Run(); });
  for (int i = 0; i < 2000 && t.link->joins_refused() < 4; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  t.link->Shutdown();
  runner.join();
  EXPECT_TRUE(absl::IsCancelled(s)) << s;
  EXPECT_GE(t.link->joins_refused(), 4);
  EXPECT_EQ(t.region.finished, 0);
}

TEST(UpstreamLink, TaskRunsAsARegionalRoundAndTheCombinedUpdateGoesUp) {
  LinkUnderTest t;
  const absl::Time deadline = t.clock.Now() + absl::Seconds(60);
  const std::vector<float> model = {1, 2, 3, 4};
  t.upstream->checkins.push_back(TaskAnswer(3, 2, deadline, model));
  RoundScheduler::ExternalResult result;
  result.delta = {0.5f, -0.25f, 0, 1};
  result.num_samples = 90;
  result.stats.set_clients_selected(3);
  result.stats.set_clients_reported(3);
  t.region.answers.push_back(result);
  ASSERT_TRUE(t.link->Run().ok());
  ASSERT_EQ(t.region.calls.size(), 1u);
  const FakeRegion::Call& call = t.region.calls[0];
  EXPECT_EQ(call.task.round(), 3);
  EXPECT_EQ(call.task.model_version(), 2);
  EXPECT_EQ(call.task.config().lr(), 0.25);  // the root's TaskConfig, unchanged
  EXPECT_EQ(call.model, model);
  EXPECT_EQ(call.close_by, deadline - absl::Seconds(10));  // the margin
  ASSERT_EQ(t.upstream->reports.size(), 1u);
  const auto& [header, payload] = t.upstream->reports[0];
  EXPECT_EQ(header.client_id(), "region-a");
  EXPECT_EQ(header.round(), 3);
  EXPECT_EQ(header.attempt(), 1);
  EXPECT_EQ(header.model_version(), 2);
  EXPECT_EQ(header.num_samples(), 90u);  // the reporting devices' total, not the registered 120
  EXPECT_EQ(header.codec(), "dense");
  EXPECT_EQ(payload, Bytes(result.delta));
  EXPECT_EQ(t.link->rounds_reported(), 1);
  EXPECT_EQ(t.link->rounds_declined(), 0);
}

TEST(UpstreamLink, TheRegionsUpdateTravelsUnderTheRoundsUplinkChain) {
  LinkUnderTest t;
  client::Coordinator::CheckInResult task =
      TaskAnswer(1, 0, t.clock.Now() + absl::Seconds(60), {0, 0, 0, 0});
  task.task.mutable_config()->set_uplink("int8");
  t.upstream->checkins.push_back(task);
  RoundScheduler::ExternalResult result;
  result.delta = {0.5f, -0.25f, 0.125f, 1};
  result.num_samples = 7;
  t.region.answers.push_back(result);
  ASSERT_TRUE(t.link->Run().ok());
  ASSERT_EQ(t.upstream->reports.size(), 1u);
  EXPECT_EQ(t.upstream->reports[0].first.codec(), "int8");
  std::vector<float> decoded;
  ASSERT_TRUE(
      compression::DecodeToDense(t.upstream->reports[0].second, LayoutOf(TinySpec()), &decoded)
          .ok());
  ASSERT_EQ(decoded.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(decoded[i], result.delta[i], 1.0 / 127) << i;
}

// The upstream model downloads inside the CheckIn that polls for it (as on a device): the
// deadline is the upstream's poll (20 s here) + 15 s + the model's dense size at the slowest
// acceptable rate, not a fixed 10 s that a slow link to the root could not download 6 MB in.
TEST(UpstreamLink, CheckInDeadlineCoversTheUpstreamsPollAndTheModelDownload) {
  LinkUnderTest t(/*min_download_bytes_per_second=*/256 * 1024);
  t.upstream->model_bytes = 10 << 20;
  t.upstream->checkins.push_back(client::Coordinator::CheckInResult());  // idle
  ASSERT_TRUE(t.link->Run().ok());
  ASSERT_EQ(t.upstream->checkin_timeouts.size(), 2u);  // idle, then "finished"
  for (absl::Duration timeout : t.upstream->checkin_timeouts) {
    EXPECT_EQ(timeout, absl::Seconds(20 + 15 + 40));  // 10 MiB at 256 KiB/s: 40 s
  }
}

TEST(UpstreamLink, RefusesADownloadRateBelowOneBytePerSecond) {
  SimulatedClock clock;
  FakeRegion region;
  for (double rate : {0.0, 0.5, -1.0, std::nan(""), HUGE_VAL}) {
    UpstreamLink::Options o;
    o.profile.set_arch("x86_64");
    o.min_download_bytes_per_second = rate;
    auto made = UpstreamLink::Create(o, std::make_unique<FakeUpstream>(&clock), &region, &clock);
    EXPECT_EQ(made.status().code(), absl::StatusCode::kInvalidArgument) << rate;
  }
}

TEST(UpstreamLink, ShortDeadlineKeepsHalfTheTimeForTheUpload) {
  LinkUnderTest t;
  const absl::Time deadline = t.clock.Now() + absl::Seconds(8);
  t.upstream->checkins.push_back(TaskAnswer(1, 0, deadline, {0, 0, 0, 0}));
  RoundScheduler::ExternalResult result;
  result.delta = {0, 0, 0, 0};
  result.num_samples = 1;
  t.region.answers.push_back(result);
  ASSERT_TRUE(t.link->Run().ok());
  ASSERT_EQ(t.region.calls.size(), 1u);
  EXPECT_EQ(t.region.calls[0].close_by, deadline - absl::Seconds(4));
}

TEST(UpstreamLink, ARegionWithNothingToSendDeclinesTheTask) {
  LinkUnderTest t;
  const absl::Time deadline = t.clock.Now() + absl::Seconds(60);
  t.upstream->checkins.push_back(TaskAnswer(1, 0, deadline, {0, 0, 0, 0}));
  client::Coordinator::CheckInResult idle;
  idle.kind = Kind::kIdle;
  t.upstream->checkins.push_back(idle);
  t.region.answers.push_back(
      WithReason(absl::FailedPreconditionError("only 0 of 3 devices"), "no_devices"));
  ASSERT_TRUE(t.link->Run().ok());
  EXPECT_TRUE(t.upstream->reports.empty());
  ASSERT_GE(t.upstream->checkin_extras.size(), 2u);
  const proto::CheckInRequest& next = t.upstream->checkin_extras[1];
  EXPECT_EQ(next.declined_reason(), "no_devices");
  EXPECT_EQ(next.declined_round(), 1);
  EXPECT_EQ(next.declined_attempt(), 1);
  // Delivered once.
  EXPECT_EQ(t.upstream->checkin_extras[2].declined_reason(), "");
  EXPECT_EQ(t.link->rounds_declined(), 1);
}

TEST(UpstreamLink, UnknownClientRejoinsAndTransientReportFailuresAreRetried) {
  LinkUnderTest t;
  t.upstream->checkins.push_back(absl::NotFoundError("unknown client id; Join again"));
  const absl::Time deadline = t.clock.Now() + absl::Seconds(120);
  t.upstream->checkins.push_back(TaskAnswer(1, 0, deadline, {0, 0, 0, 0}));
  RoundScheduler::ExternalResult result;
  result.delta = {1, 1, 1, 1};
  result.num_samples = 5;
  t.region.answers.push_back(result);
  t.upstream->report_answers.push_back(absl::UnavailableError("connection reset"));
  ASSERT_TRUE(t.link->Run().ok());
  EXPECT_EQ(t.upstream->join_times.size(), 2u);  // joined again after NOT_FOUND
  EXPECT_EQ(t.upstream->reports.size(), 2u);     // the upload retried
  EXPECT_EQ(t.link->rounds_reported(), 1);
}

TEST(UpstreamLink, ARoundOfferedTwiceRunsOnceUnlessTheUpstreamRestarted) {
  LinkUnderTest t;
  const absl::Time deadline = t.clock.Now() + absl::Seconds(60);
  RoundScheduler::ExternalResult result;
  result.delta = {0, 0, 0, 0};
  result.num_samples = 1;
  // The same task twice in one session: run once (the second offer only pauses the loop).
  t.upstream->checkins.push_back(TaskAnswer(1, 0, deadline, {0, 0, 0, 0}));
  t.upstream->checkins.push_back(TaskAnswer(1, 0, deadline, {0, 0, 0, 0}));
  // The upstream restarts from an earlier checkpoint: unknown client, then round 1 again.
  t.upstream->checkins.push_back(absl::NotFoundError("unknown client id; Join again"));
  t.upstream->checkins.push_back(TaskAnswer(1, 0, deadline, {0, 0, 0, 0}));
  t.region.answers.push_back(result);
  t.region.answers.push_back(result);
  ASSERT_TRUE(t.link->Run().ok());
  EXPECT_EQ(t.region.calls.size(), 2u);
  EXPECT_EQ(t.upstream->reports.size(), 2u);
}

TEST(UpstreamLink, TheFinalModelReachesTheRegion) {
  LinkUnderTest t;
  client::Coordinator::CheckInResult final_answer =
      TaskAnswer(4, 4, absl::UnixEpoch(), {9, 8, 7, 6});
  final_answer.kind = Kind::kFinalModel;
  final_answer.task.set_final_model(true);
  t.upstream->checkins.push_back(final_answer);
  ASSERT_TRUE(t.link->Run().ok());
  EXPECT_EQ(t.region.finished, 1);
  EXPECT_EQ(t.region.final_version, 4);
  EXPECT_EQ(t.region.final_model, (std::vector<float>{9, 8, 7, 6}));
}

proto::ExperimentConfig Filled(const std::string& strategy) {
  proto::ExperimentConfig c;
  c.mutable_aggregation()->set_strategy(strategy);
  FillDefaults(&c);
  return c;
}

TEST(CheckAggregatorConfig, OnlyPlainAveragingComposesAtAnAggregator) {
  EXPECT_TRUE(CheckAggregatorConfig(Filled("fedavg")).ok());
  EXPECT_TRUE(CheckAggregatorConfig(Filled("fedprox")).ok());  // mu is the root's task setting
  proto::ExperimentConfig bounded = Filled("fedavg");
  bounded.mutable_aggregation()->mutable_norm_bound()->set_max_l2_norm(5);
  EXPECT_TRUE(CheckAggregatorConfig(bounded).ok());  // a per-device filter
  proto::ExperimentConfig buffered = Filled("fedavg");
  buffered.mutable_aggregation()->set_mode("buffered");
  EXPECT_EQ(CheckAggregatorConfig(buffered).code(), absl::StatusCode::kInvalidArgument);
  proto::ExperimentConfig averaged = Filled("fedavg");
  averaged.mutable_aggregation()->mutable_averaging()->set_from_round(1);
  EXPECT_NE(CheckAggregatorConfig(averaged).message().find("aggregation.averaging belongs at the root"),
            absl::string_view::npos);
  for (const char* strategy :
       {"fedmedian", "fedtrimmedavg", "krum", "dp_fedavg", "fedadam", "fedavgm", "fedyogi"}) {
    absl::Status s = CheckAggregatorConfig(Filled(strategy));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << strategy;
    EXPECT_NE(s.message().find("belongs at the root"), absl::string_view::npos) << s;
    EXPECT_EQ(s.message().find('\n'), absl::string_view::npos) << s;
  }
}

TEST(UpstreamOptions, RefusesInconsistentFlags) {
  UpstreamOptions o;
  o.address = "root:50051";
  EXPECT_NE(LoadUpstreamClientConfig(o).status().message().find("--upstream_ca"),
            absl::string_view::npos);
  o.insecure = true;
  EXPECT_TRUE(LoadUpstreamClientConfig(o).ok());
  o.ca_cert = "ca.pem";
  EXPECT_EQ(LoadUpstreamClientConfig(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = UpstreamOptions();
  o.address = "no-port";
  o.insecure = true;
  EXPECT_EQ(LoadUpstreamClientConfig(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.address = "root:50051";
  o.min_download_kib_per_second = 0.5;
  EXPECT_EQ(LoadUpstreamClientConfig(o).status().message(),
            "--upstream_min_download_kib_per_second must be >= 1");
}

// ---- RoundScheduler::RunExternalRound: the real region ---------------------------------------

class ExternalRound : public ::testing::Test {
 protected:
  void SetUp(const Clock* clock, int devices, int min_clients) {
    ClientRegistry::Options ro;
    ro.id_seed = 1;
    registry_ = std::make_unique<ClientRegistry>(ro, clock);
    for (int i = 0; i < devices; ++i) {
      proto::DeviceProfile p;
      p.set_num_samples(100 * (i + 1));
      ids_.push_back(*registry_->Join(p));
    }
    proto::ExperimentConfig config;
    config.set_model("tiny");
    config.mutable_sampling()->set_min_clients(min_clients);
    config.set_quorum(1.0);
    FillDefaults(&config);
    ASSERT_TRUE(CheckAggregatorConfig(config).ok());
    RoundScheduler::Options o;
    o.config = config;
    o.spec = TinySpec();
    o.weights = {0, 0, 0, 0};
    auto pipeline = CreatePipeline(config, 4);
    ASSERT_TRUE(pipeline.ok()) << pipeline.status();
    auto s = RoundScheduler::Create(o, registry_.get(), std::move(*pipeline), nullptr, clock);
    ASSERT_TRUE(s.ok()) << s.status();
    scheduler_ = std::move(*s);
    region_ = NewSchedulerRegion(scheduler_.get(), registry_.get());
  }

  proto::Task UpstreamTask() {
    proto::Task task;
    task.set_round(5);
    task.set_attempt(2);
    task.set_model_version(4);
    task.mutable_config()->set_lr(0.125);
    task.mutable_config()->set_uplink("dense");
    task.mutable_config()->set_seed(77);
    *task.mutable_spec() = TinySpec();
    return task;
  }

  std::unique_ptr<ClientRegistry> registry_;
  std::unique_ptr<RoundScheduler> scheduler_;
  std::unique_ptr<Region> region_;
  std::vector<std::string> ids_;
};

TEST_F(ExternalRound, DevicesGetTheUpstreamTaskAndTheWeightedMeanComesBack) {
  SetUp(Clock::Real(), 2, 2);
  EXPECT_EQ(region_->RegisteredSamples(), 300u);
  const absl::Time close_by = absl::Now() + absl::Seconds(30);
  const std::vector<float> model = {1, 2, 3, 4};
  absl::StatusOr<RoundScheduler::ExternalResult> result;
  std::thread round([&] { result = region_->RunRound(UpstreamTask(), model, close_by); });
  const std::vector<std::vector<float>> deltas = {{1, 1, 1, 1}, {4, 4, 4, -2}};
  const std::vector<uint64_t> samples = {10, 30};
  for (int i = 0; i < 2; ++i) {
    TaskGrant g;
    ASSERT_EQ(scheduler_->WaitForTask(ids_[i], absl::Seconds(10), nullptr, &g), PollOutcome::kTask);
    EXPECT_EQ(g.task.round(), 5);
    EXPECT_EQ(g.task.attempt(), 2);
    EXPECT_EQ(g.task.model_version(), 4);
    EXPECT_EQ(g.task.config().lr(), 0.125);
    EXPECT_EQ(g.task.config().seed(), 77u);  // devices train exactly as under the root
    EXPECT_NEAR(g.task.deadline_unix_seconds(), absl::ToDoubleSeconds(close_by - absl::UnixEpoch()),
                1e-3);
    ASSERT_EQ(g.model->payload, Bytes(model));
    proto::ReportHeader h;
    h.set_client_id(ids_[i]);
    h.set_round(5);
    h.set_attempt(2);
    h.set_model_version(4);
    h.set_num_samples(samples[i]);
    ASSERT_TRUE(scheduler_->SubmitUpdate(h, deltas[i]).ok());
  }
  round.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->num_samples, 40u);
  EXPECT_EQ(result->delta, (std::vector<float>{3.25f, 3.25f, 3.25f, -1.25f}));
  EXPECT_EQ(result->stats.clients_reported(), 2);
  // No server step: the region's model is still the upstream's.
  EXPECT_EQ(scheduler_->current_model_version(), 4);
  region_->Finish(6, nullptr);
  TaskGrant g;
  EXPECT_EQ(scheduler_->WaitForTask(ids_[0], absl::Seconds(1), nullptr, &g),
            PollOutcome::kFinished);
}

TEST_F(ExternalRound, ARoundOfferedAgainGoesToTheDevicesAsTheNextAttempt) {
  SetUp(Clock::Real(), 1, 1);
  for (int expected_attempt : {2, 3}) {
    absl::StatusOr<RoundScheduler::ExternalResult> result;
    std::thread round([&] {
      result = region_->RunRound(UpstreamTask(), {0, 0, 0, 0}, absl::Now() + absl::Seconds(30));
    });
    TaskGrant g;
    ASSERT_EQ(scheduler_->WaitForTask(ids_[0], absl::Seconds(10), nullptr, &g), PollOutcome::kTask);
    EXPECT_EQ(g.task.round(), 5);
    EXPECT_EQ(g.task.attempt(), expected_attempt);
    EXPECT_EQ(g.task.config().seed(), 77u);
    proto::ReportHeader h;
    h.set_client_id(ids_[0]);
    h.set_round(5);
    h.set_attempt(expected_attempt);
    h.set_model_version(4);
    h.set_num_samples(1);
    ASSERT_TRUE(scheduler_->SubmitUpdate(h, std::vector<float>{1, 1, 1, 1}).ok());
    round.join();
    ASSERT_TRUE(result.ok()) << result.status();
  }
}

TEST_F(ExternalRound, TooFewDevicesByTheCloseIsNoDevices) {
  SimulatedClock clock;
  SetUp(&clock, 1, 3);
  absl::StatusOr<RoundScheduler::ExternalResult> result;
  std::thread round([&] {
    result = region_->RunRound(UpstreamTask(), {0, 0, 0, 0}, clock.Now() + absl::Seconds(5));
  });
  ASSERT_TRUE(clock.AwaitWaiters(1));
  clock.AdvanceTime(absl::Seconds(6));
  round.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(result.status()), "no_devices");
}

TEST_F(ExternalRound, MissedQuorumIsRegionQuorum) {
  SimulatedClock clock;
  SetUp(&clock, 2, 2);
  absl::StatusOr<RoundScheduler::ExternalResult> result;
  std::thread round([&] {
    result = region_->RunRound(UpstreamTask(), {0, 0, 0, 0}, clock.Now() + absl::Seconds(5));
  });
  TaskGrant g;
  ASSERT_EQ(scheduler_->WaitForTask(ids_[0], absl::Seconds(10), nullptr, &g), PollOutcome::kTask);
  proto::ReportHeader h;
  h.set_client_id(ids_[0]);
  h.set_round(5);
  h.set_attempt(2);
  h.set_model_version(4);
  h.set_num_samples(3);
  ASSERT_TRUE(scheduler_->SubmitUpdate(h, std::vector<float>{1, 1, 1, 1}).ok());
  ASSERT_TRUE(clock.AwaitWaiters(1));
  clock.AdvanceTime(absl::Seconds(6));
  round.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(result.status()), "region_quorum");
}

TEST_F(ExternalRound, ATaskForAnotherModelIsRefused) {
  SetUp(Clock::Real(), 1, 1);
  proto::Task task = UpstreamTask();
  task.mutable_spec()->mutable_tensors(0)->set_shape(0, 5);
  auto result = region_->RunRound(task, {0, 0, 0, 0, 0}, absl::Now() + absl::Seconds(5));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgefl::server
