// The device loop against an in-memory coordinator and a simulated clock: no processes, no
// sockets, no real sleeping. Training is the real ModelRunner on the tiny "mlp" and a few
// synthetic images; distillation is a recording fake (the real one is exercised by distill_test
// and federation_test).
#include "client/device_runtime.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/memory.h"
#include "common/status_reason.h"
#include "common/testing/simulated_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/model_spec.h"

namespace edgefl::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Kind = Coordinator::CheckInResult::Kind;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

// A coordinator in memory. Each call takes the next scripted answer; once the CheckIn script is
// used up the federation is finished, so every loop in these tests ends.
class FakeCoordinator : public Coordinator {
 public:
  using CheckInStep = absl::StatusOr<CheckInResult>;

  explicit FakeCoordinator(SimulatedClock* clock) : clock_(clock) {}

  // ---- the script
  std::deque<absl::Status> join_errors;  // returned (in order) before Joins succeed
  std::deque<CheckInStep> checkins;
  std::deque<absl::Status> report_answers;  // default: accepted
  absl::Duration session_lifetime = absl::Hours(24);
  absl::Duration idle_poll = absl::Seconds(30);  // an idle CheckIn long-polls this long
  uint64_t model_bytes = 0;  // JoinResponse.model_bytes (0: an older server that does not say)
  // Any Join fails with this once `join_errors` is used up (OK: Joins succeed).
  absl::Status join_always = absl::OkStatus();

  // ---- what happened
  struct JoinCall {
    std::string presented;  // the session presented, "" for the enrollment credential
  };
  struct CheckInCall {
    std::string client_id;
    int64_t have_version;
    bool want_final_model;
    proto::CheckInRequest extras;
    absl::Duration timeout;
  };
  struct ReportCall {
    proto::ReportHeader header;
    std::string payload;
  };
  std::vector<JoinCall> joins;
  std::vector<CheckInCall> checkin_calls;
  std::vector<ReportCall> reports;

  absl::StatusOr<proto::JoinResponse> Join(const proto::JoinRequest& request) override {
    EXPECT_GT(request.profile().num_samples(), 0);
    joins.push_back({session_expires_ > clock_->Now() ? session_token_ : ""});
    if (!join_errors.empty()) {
      absl::Status s = join_errors.front();
      join_errors.pop_front();
      return s;
    }
    if (!join_always.ok()) return join_always;
    ++sessions_;
    session_token_ = absl::StrCat("session-", sessions_);
    session_expires_ = clock_->Now() + session_lifetime;
    proto::JoinResponse r;
    r.set_client_id(absl::StrCat("c-", sessions_));
    r.set_checkin_poll_seconds(20);
    r.set_model_bytes(model_bytes);
    return r;
  }

  absl::StatusOr<CheckInResult> CheckIn(const std::string& client_id, int64_t have_version,
                                        absl::Duration timeout, bool want_final_model,
                                        const proto::CheckInRequest& extras) override {
    EXPECT_GT(timeout, absl::ZeroDuration());
    checkin_calls.push_back({client_id, have_version, want_final_model, extras, timeout});
    if (checkins.empty()) {
      CheckInResult done;
      done.kind = Kind::kFinished;
      return done;
    }
    CheckInStep step = std::move(checkins.front());
    checkins.pop_front();
    if (step.ok() && step->kind == Kind::kIdle) clock_->AdvanceTime(idle_poll);
    return step;
  }

  absl::StatusOr<proto::ReportResponse> Report(proto::ReportHeader header, std::string_view payload,
                                               absl::Time deadline, uint64_t* bytes_up) override {
    reports.push_back({header, std::string(payload)});
    if (bytes_up != nullptr) *bytes_up = payload.size();
    if (!report_answers.empty()) {
      absl::Status s = report_answers.front();
      report_answers.pop_front();
      if (!s.ok()) return s;
    }
    return proto::ReportResponse();
  }

  void SetSession(std::string token, absl::Time expires) override {
    session_token_ = std::move(token);
    session_expires_ = expires;
  }
  std::string session_token() const override { return session_token_; }
  absl::Time session_expires() const override { return session_expires_; }

 private:
  SimulatedClock* clock_;
  int sessions_ = 0;
  std::string session_token_;
  absl::Time session_expires_ = absl::InfinitePast();
};

class FakeDistiller : public Distiller {
 public:
  struct Call {
    int64_t round;
    int64_t model_version;
    bool final_model;
    std::vector<float> global;
  };
  std::vector<Call> calls;
  absl::Status fail_with = absl::OkStatus();

  absl::StatusOr<students::DistillReport> Distill(const proto::Task& task,
                                                absl::Span<const float> global,
                                                const data::ImageDataset& local) override {
    EXPECT_GT(local.size(), 0);
    calls.push_back({task.round(), task.model_version(), task.final_model(),
                     std::vector<float>(global.begin(), global.end())});
    if (!fail_with.ok()) return fail_with;
    students::DistillReport r;
    r.student = "student_fake";
    r.out_dir = "/nowhere";
    r.student_int8_local_accuracy = 0.625;
    return r;
  }
};

data::ImageDataset SyntheticShard(int n) {
  data::ImageDataset d;
  std::mt19937 rng(7);
  d.pixels.resize(static_cast<size_t>(n) * d.rows * d.cols);
  for (uint8_t& p : d.pixels) p = static_cast<uint8_t>(rng() & 0xff);
  for (int i = 0; i < n; ++i) d.labels.push_back(static_cast<uint8_t>(i % 10));
  return d;
}

const std::vector<float>& MlpWeights() {
  static const std::vector<float>* w = [] {
    absl::StatusOr<std::vector<float>> v = models::InitialWeights("mlp", 1);
    EXPECT_TRUE(v.ok()) << v.status();
    return new std::vector<float>(v.ok() ? *v : std::vector<float>());
  }();
  return *w;
}

// A task for round `round` with the full "mlp" model (version round - 1) as its download.
Coordinator::CheckInResult MlpTask(int64_t round, const std::string& uplink = "dense",
                                   int64_t attempt = 1) {
  Coordinator::CheckInResult r;
  r.kind = Kind::kTask;
  proto::Task& t = r.task;
  t.set_round(round);
  t.set_attempt(attempt);
  t.set_model_version(round - 1);
  t.set_base_version(-1);
  t.set_downlink_codec("dense");
  t.set_deadline_unix_seconds(static_cast<double>(absl::ToUnixSeconds(kStart + absl::Hours(100))));
  *t.mutable_spec() = *models::SpecForModel("mlp");
  auto* c = t.mutable_config();
  c->set_epochs(1);
  c->set_batch_size(4);
  c->set_lr(0.05);
  c->set_seed(11);
  c->set_uplink(uplink);
  c->set_ef_max_staleness(3);
  const std::vector<float>& w = MlpWeights();
  r.payload.assign(reinterpret_cast<const char*>(w.data()), w.size() * sizeof(float));
  r.bytes_down = r.payload.size();
  return r;
}

Coordinator::CheckInResult Idle() { return Coordinator::CheckInResult(); }

class DeviceRuntimeTest : public ::testing::Test {
 protected:
  DeviceRuntimeTest() : clock_(kStart), coordinator_(new FakeCoordinator(&clock_)) {
    options_.server = "fake:1";
    options_.state_dir = "";      // memory only unless a test sets it
    options_.backoff.jitter = 0;  // exact delays
  }

  // Creates the runtime (taking the fake coordinator, still reachable through coordinator_).
  DeviceRuntime& Make(std::unique_ptr<Distiller> distiller = nullptr) {
    absl::StatusOr<std::unique_ptr<DeviceRuntime>> r =
        DeviceRuntime::Create(options_, std::unique_ptr<Coordinator>(coordinator_),
                              SyntheticShard(12), &clock_, std::move(distiller));
    EXPECT_TRUE(r.ok()) << r.status();
    runtime_ = std::move(*r);
    return *runtime_;
  }

  SimulatedClock clock_;
  FakeCoordinator* coordinator_;  // owned by runtime_ once Make ran
  DeviceRuntime::Options options_;
  std::unique_ptr<DeviceRuntime> runtime_;
};

// The model downloads inside the CheckIn that long-polls for it: its deadline covers the poll
// (20 s here), 15 s of margin and the model's dense size at the slowest acceptable rate.
TEST_F(DeviceRuntimeTest, CheckInDeadlineCoversTheLongPollAndTheModelDownload) {
  coordinator_->model_bytes = 10 << 20;
  coordinator_->checkins.push_back(Idle());
  coordinator_->checkins.push_back(MlpTask(1));
  options_.min_download_bytes_per_second = 256 * 1024;
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  ASSERT_GE(coordinator_->checkin_calls.size(), 2u);
  for (const auto& call : coordinator_->checkin_calls) {
    EXPECT_EQ(call.timeout, absl::Seconds(20 + 15 + 40));  // 10 MiB at 256 KiB/s: 40 s
  }
}

TEST_F(DeviceRuntimeTest, CheckInDeadlineWithoutAModelSizeIsThePollAndItsMargin) {
  coordinator_->checkins.push_back(MlpTask(1));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  ASSERT_FALSE(coordinator_->checkin_calls.empty());
  EXPECT_EQ(coordinator_->checkin_calls[0].timeout, absl::Seconds(20 + 15));
}

// What a server announces is bounded: a broken or hostile one cannot make a device's CheckIn
// deadline unbounded (the poll counts at most an hour, the model at most kMaxModelBytes).
TEST(CheckInTimeoutTest, TheServersAnnouncementIsBounded) {
  proto::JoinResponse join;
  join.set_checkin_poll_seconds(1e12);
  join.set_model_bytes(1ULL << 62);
  EXPECT_EQ(CheckInTimeout(join, 128 * 1024), absl::Seconds(3600 + 15 + 16384));  // 2 GiB
  join.set_checkin_poll_seconds(-5);
  join.set_model_bytes(0);
  EXPECT_EQ(CheckInTimeout(join, 128 * 1024), absl::Seconds(15));
  join.set_checkin_poll_seconds(std::nan(""));
  EXPECT_EQ(CheckInTimeout(join, 128 * 1024), absl::Seconds(15));
  join.set_checkin_poll_seconds(8);
  join.set_model_bytes(kMaxModelBytes);
  EXPECT_EQ(CheckInTimeout(join, 1024 * 1024), absl::Seconds(8 + 15 + 2048));
}

// The one rule for every minimum-download-rate flag and option (fl-client's, the aggregator's
// flag, UpstreamLink's option): at least 1, finite.
TEST(CheckInTimeoutTest, AMinimumDownloadRateIsAtLeastOneAndFinite) {
  EXPECT_TRUE(IsValidMinDownloadRate(1));
  EXPECT_TRUE(IsValidMinDownloadRate(128 * 1024));
  for (double bad : {0.0, 0.5, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    EXPECT_FALSE(IsValidMinDownloadRate(bad)) << bad;
  }
}

TEST_F(DeviceRuntimeTest, BacksOffWithGrowingDelaysWhileTheServerIsDown) {
  for (int i = 0; i < 7; ++i) coordinator_->join_errors.push_back(absl::UnavailableError("down"));
  coordinator_->checkins.push_back(MlpTask(1));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_EQ(coordinator_->joins.size(), 8u);
  // 0.5 s doubling, capped at 30 s; nothing slept once the server answered.
  EXPECT_THAT(clock_.sleeps(), ElementsAre(absl::Milliseconds(500), absl::Seconds(1),
                                           absl::Seconds(2), absl::Seconds(4), absl::Seconds(8),
                                           absl::Seconds(16), absl::Seconds(30)));
  EXPECT_EQ(rt.rounds_done(), 1);
  EXPECT_TRUE(rt.finished());
}

TEST_F(DeviceRuntimeTest, GivesUpAfterMaxUnreachableWithJitteredBoundedDelays) {
  options_.backoff.jitter = 0.5;
  options_.max_unreachable = absl::Minutes(5);
  coordinator_->join_always = absl::UnavailableError("connection refused");
  DeviceRuntime& rt = Make();
  const absl::Status s = rt.Run();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("gave up after 300 s without reaching fake:1: connection refused"));
  EXPECT_FALSE(rt.finished());
  const std::vector<absl::Duration> sleeps = clock_.sleeps();
  ASSERT_GE(sleeps.size(), 10u);
  EXPECT_LT(sleeps.size(), 40u);  // bounded: ~30 s apart once the delay reached its cap
  for (absl::Duration d : sleeps) {
    EXPECT_GE(d, absl::Milliseconds(250));
    EXPECT_LE(d, absl::Seconds(45));
  }
  EXPECT_GE(clock_.Now() - kStart, absl::Minutes(5));
  EXPECT_LT(clock_.Now() - kStart, absl::Minutes(6));
}

TEST_F(DeviceRuntimeTest, ACallRetryingCannotFixEndsTheRun) {
  coordinator_->join_errors.push_back(
      absl::FailedPreconditionError("TLS: the server certificate has expired"));
  DeviceRuntime& rt = Make();
  const absl::Status s = rt.Run();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "Join failed: TLS: the server certificate has expired");
  EXPECT_TRUE(clock_.sleeps().empty());
}

TEST_F(DeviceRuntimeTest, ServerRestartMidRunRejoinsAndCarriesOn) {
  char dir[] = "/tmp/edgefl-runtime-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  options_.state_dir = dir;  // the global model is spilled to disk while training
  coordinator_->checkins.push_back(MlpTask(1));
  // The server restarts: it no longer knows c-1 (and is briefly unreachable).
  coordinator_->checkins.push_back(absl::UnavailableError("restarting"));
  coordinator_->checkins.push_back(absl::NotFoundError("unknown client c-1"));
  // The resumed server reopens round 1 for the new session: trained again, for this server.
  coordinator_->checkins.push_back(MlpTask(1));
  coordinator_->checkins.push_back(MlpTask(2));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_EQ(coordinator_->joins.size(), 2u);
  ASSERT_EQ(coordinator_->reports.size(), 3u);
  EXPECT_EQ(coordinator_->reports[0].header.client_id(), "c-1");
  EXPECT_EQ(coordinator_->reports[1].header.client_id(), "c-2");
  EXPECT_EQ(coordinator_->reports[1].header.round(), 1);
  EXPECT_EQ(coordinator_->reports[2].header.round(), 2);
  // The same model, data and seed train to the same update, bit for bit.
  EXPECT_EQ(coordinator_->reports[0].payload, coordinator_->reports[1].payload);
  EXPECT_EQ(rt.rounds_done(), 3);
  EXPECT_EQ(rt.have_version(), 1);
  EXPECT_EQ(clock_.sleeps().size(), 1u);  // one backoff for the UNAVAILABLE CheckIn
  // After the restart the client asked with the model it held.
  EXPECT_EQ(coordinator_->checkin_calls[1].have_version, 0);
  EXPECT_EQ(coordinator_->checkin_calls[3].client_id, "c-2");
  std::system(absl::StrCat("rm -rf ", dir).c_str());
}

TEST_F(DeviceRuntimeTest, AfterFinishPollWaitsForTheNextRunWithAFreshModel) {
  options_.after_finish_poll = absl::Seconds(60);
  Coordinator::CheckInResult finished;
  finished.kind = Kind::kFinished;
  coordinator_->checkins.push_back(MlpTask(1));
  coordinator_->checkins.push_back(finished);  // the run is over: wait, ask again
  coordinator_->checkins.push_back(finished);
  coordinator_->checkins.push_back(MlpTask(1));  // the next run, from its round 1
  coordinator_->checkins.push_back(MlpTask(2));
  coordinator_->checkins.push_back(finished);
  coordinator_->checkins.push_back(absl::PermissionDeniedError("stop the test"));
  DeviceRuntime& rt = Make();
  const absl::Status s = rt.Run();
  EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;  // only an error ends a waiting device
  ASSERT_EQ(coordinator_->reports.size(), 3u);
  EXPECT_EQ(coordinator_->reports[1].header.round(), 1);  // round 1 again: another run's
  EXPECT_EQ(coordinator_->reports[2].header.round(), 2);
  EXPECT_EQ(rt.rounds_done(), 3);
  // The finished run's model is forgotten: the next run's first task is asked for in full.
  ASSERT_EQ(coordinator_->checkin_calls.size(), 7u);
  EXPECT_EQ(coordinator_->checkin_calls[1].have_version, 0);
  EXPECT_EQ(coordinator_->checkin_calls[2].have_version, -1);
  EXPECT_EQ(coordinator_->checkin_calls[3].have_version, -1);
  EXPECT_EQ(coordinator_->checkin_calls[4].have_version, 0);
  EXPECT_EQ(coordinator_->checkin_calls[6].have_version, -1);
  // One poll interval after each `finished`, nothing else.
  EXPECT_THAT(clock_.sleeps(),
              ElementsAre(absl::Seconds(60), absl::Seconds(60), absl::Seconds(60)));
  EXPECT_TRUE(rt.finished());
  EXPECT_EQ(coordinator_->joins.size(), 1u);  // one session throughout
}

TEST_F(DeviceRuntimeTest, DuplicateOrStaleTaskIsNotTrainedTwice) {
  coordinator_->checkins.push_back(MlpTask(2));
  coordinator_->checkins.push_back(MlpTask(2));  // the same task again
  coordinator_->checkins.push_back(MlpTask(1));  // an older round
  coordinator_->checkins.push_back(MlpTask(3));
  coordinator_->checkins.push_back(MlpTask(3, "dense", /*attempt=*/2));  // a retry of round 3
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_EQ(rt.tasks_trained(), 3);
  ASSERT_EQ(coordinator_->reports.size(), 3u);
  EXPECT_EQ(coordinator_->reports[0].header.round(), 2);
  EXPECT_EQ(coordinator_->reports[1].header.round(), 3);
  EXPECT_EQ(coordinator_->reports[2].header.attempt(), 2);
  // Each skipped task costs a pause, not a spin.
  EXPECT_THAT(clock_.sleeps(), ElementsAre(absl::Seconds(1), absl::Seconds(1)));
}

// The residual after the last run, copied.
std::vector<float> Residual(const DeviceRuntime& rt) {
  const compression::ErrorFeedback* ef = rt.pipeline().residual();
  if (ef == nullptr) return {};
  return std::vector<float>(ef->residual().begin(), ef->residual().end());
}

TEST_F(DeviceRuntimeTest, RejectedReportRollsBackTheErrorFeedbackResidual) {
  const std::string uplink = "topk:0.1|int8|ef";
  coordinator_->report_answers.push_back(absl::OkStatus());
  coordinator_->report_answers.push_back(absl::FailedPreconditionError("round 2 is closed"));
  coordinator_->checkins.push_back(MlpTask(1, uplink));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());  // round 1 only: accepted, residual committed
  const std::vector<float> committed = Residual(rt);
  float mass = 0;
  for (float x : committed) mass += std::abs(x);
  EXPECT_GT(mass, 0);  // top-k left most of the delta behind

  // Round 2 trains and encodes (which changes the residual) but the server refuses the update.
  coordinator_->checkins.push_back(MlpTask(2, uplink));
  ASSERT_TRUE(rt.Run().ok());
  ASSERT_EQ(coordinator_->reports.size(), 2u);
  EXPECT_EQ(rt.tasks_trained(), 2);
  EXPECT_EQ(rt.rounds_done(), 1);
  EXPECT_EQ(Residual(rt), committed);

  // Round 3 is accepted and moves the residual on from round 1's.
  coordinator_->checkins.push_back(MlpTask(3, uplink));
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_EQ(rt.rounds_done(), 2);
  EXPECT_NE(Residual(rt), committed);
}

TEST_F(DeviceRuntimeTest, ReportLostUntilTheDeadlineRollsBackToo) {
  const std::string uplink = "topk:0.1|int8|ef";
  options_.backoff.initial = absl::Seconds(5);
  coordinator_->report_answers.push_back(absl::OkStatus());
  coordinator_->report_answers.push_back(absl::UnavailableError("uplink dropped"));
  coordinator_->report_answers.push_back(absl::UnavailableError("uplink dropped"));
  coordinator_->checkins.push_back(MlpTask(1, uplink));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  const std::vector<float> committed = Residual(rt);
  // Round 2 closes 2 s from now: the retry 5 s later fails again, and then the round is over.
  Coordinator::CheckInResult late = MlpTask(2, uplink);
  late.task.set_deadline_unix_seconds(
      static_cast<double>(absl::ToUnixSeconds(clock_.Now() + absl::Seconds(2))));
  coordinator_->checkins.push_back(std::move(late));
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_EQ(coordinator_->reports.size(), 3u);
  EXPECT_THAT(clock_.sleeps(), ElementsAre(absl::Seconds(5)));
  EXPECT_EQ(rt.rounds_done(), 1);
  EXPECT_EQ(Residual(rt), committed);
}

// A busy server refuses the upload with a retry-after hint: the device waits about that long
// (jittered 0.5x-1.5x), not its growing backoff, and the update goes in on the next try.
TEST_F(DeviceRuntimeTest, ABusyServersRetryAfterHintPacesTheUpload) {
  options_.backoff.initial = absl::Seconds(60);  // what it would wait without the hint
  coordinator_->report_answers.push_back(
      WithRetryAfter(absl::ResourceExhaustedError("busy"), absl::Seconds(8)));
  coordinator_->report_answers.push_back(
      WithRetryAfter(absl::ResourceExhaustedError("busy"), absl::Seconds(8)));
  coordinator_->report_answers.push_back(absl::OkStatus());
  coordinator_->checkins.push_back(MlpTask(1, "dense"));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_EQ(coordinator_->reports.size(), 3u);
  EXPECT_EQ(rt.rounds_done(), 1);
  const std::vector<absl::Duration> sleeps = clock_.sleeps();
  ASSERT_EQ(sleeps.size(), 2u);
  for (absl::Duration d : sleeps) {
    EXPECT_GE(d, absl::Seconds(4));
    EXPECT_LE(d, absl::Seconds(12));
  }
  EXPECT_NE(sleeps[0], sleeps[1]);  // jittered
}

TEST_F(DeviceRuntimeTest, RenewsTheSessionHalfWayThroughItsLife) {
  coordinator_->session_lifetime = absl::Seconds(100);
  coordinator_->idle_poll = absl::Seconds(30);
  for (int i = 0; i < 4; ++i) coordinator_->checkins.push_back(Idle());
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  // Renewed at 60 s (after the second idle poll) and at 120 s, each time with the held session.
  ASSERT_EQ(coordinator_->joins.size(), 3u);
  EXPECT_EQ(coordinator_->joins[0].presented, "");
  EXPECT_EQ(coordinator_->joins[1].presented, "session-1");
  EXPECT_EQ(coordinator_->joins[2].presented, "session-2");
  EXPECT_EQ(rt.client_id(), "c-3");
  EXPECT_EQ(coordinator_->checkin_calls.back().client_id, "c-3");
  EXPECT_TRUE(clock_.sleeps().empty());
}

TEST_F(DeviceRuntimeTest, RefusedSessionRejoinsWithANewToken) {
  coordinator_->checkins.push_back(absl::UnauthenticatedError("session expired"));
  coordinator_->checkins.push_back(MlpTask(1));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  ASSERT_EQ(coordinator_->joins.size(), 2u);
  EXPECT_EQ(coordinator_->session_token(), "session-2");
  ASSERT_EQ(coordinator_->reports.size(), 1u);
  EXPECT_EQ(coordinator_->reports[0].header.client_id(), "c-2");
  EXPECT_TRUE(clock_.sleeps().empty());
}

TEST_F(DeviceRuntimeTest, SessionRefusedOverAndOverEndsTheRun) {
  for (int i = 0; i < 10; ++i) {
    coordinator_->checkins.push_back(absl::UnauthenticatedError("revoked"));
  }
  DeviceRuntime& rt = Make();
  const absl::Status s = rt.Run();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(s.message(), "CheckIn failed: revoked");
  EXPECT_EQ(coordinator_->joins.size(), 4u);  // the first Join and three re-joins
}

TEST_F(DeviceRuntimeTest, SavedSessionIsUsedAfterARestartOfTheClient) {
  char dir[] = "/tmp/edgefl-runtime-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string file = absl::StrCat(dir, "/client-0.session");
  ASSERT_TRUE(WriteFileAtomically(
                  file,
                  absl::StrCat("saved-token\n", absl::ToUnixSeconds(kStart + absl::Hours(1)), "\n"),
                  0600)
                  .ok());
  options_.session_file = file;
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  ASSERT_EQ(coordinator_->joins.size(), 1u);
  EXPECT_EQ(coordinator_->joins[0].presented, "saved-token");
  // The new session is saved for the next start.
  absl::StatusOr<std::string> saved = ReadFile(file);
  ASSERT_TRUE(saved.ok());
  EXPECT_THAT(*saved, HasSubstr("session-1\n"));
  std::system(absl::StrCat("rm -rf ", dir).c_str());
}

TEST_F(DeviceRuntimeTest, DistilsEachNewModelItReportedOn) {
  coordinator_->checkins.push_back(MlpTask(1));
  coordinator_->checkins.push_back(MlpTask(2));
  coordinator_->report_answers.push_back(absl::OkStatus());
  coordinator_->report_answers.push_back(absl::OkStatus());
  auto distiller = std::make_unique<FakeDistiller>();
  FakeDistiller* d = distiller.get();
  DeviceRuntime& rt = Make(std::move(distiller));
  ASSERT_TRUE(rt.Run().ok());
  ASSERT_EQ(d->calls.size(), 2u);
  EXPECT_EQ(d->calls[0].round, 1);
  EXPECT_EQ(d->calls[1].model_version, 1);
  EXPECT_FALSE(d->calls[0].final_model);
  // The teacher is the global model the round trained from, not the locally trained one.
  EXPECT_EQ(d->calls[0].global, MlpWeights());
  // The student's accuracy travels with the next report.
  ASSERT_EQ(coordinator_->reports.size(), 2u);
  EXPECT_EQ(coordinator_->reports[0].header.metrics().student_local_accuracy(), 0);
  EXPECT_DOUBLE_EQ(coordinator_->reports[1].header.metrics().student_local_accuracy(), 0.625);
  EXPECT_EQ(rt.last_student_accuracy().value_or(-1), 0.625);
  EXPECT_FALSE(coordinator_->checkin_calls[0].want_final_model);
}

TEST_F(DeviceRuntimeTest, NoDistillationForARefusedUpdate) {
  coordinator_->checkins.push_back(MlpTask(1));
  coordinator_->report_answers.push_back(absl::PermissionDeniedError("not selected"));
  auto distiller = std::make_unique<FakeDistiller>();
  FakeDistiller* d = distiller.get();
  DeviceRuntime& rt = Make(std::move(distiller));
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_TRUE(d->calls.empty());
}

TEST_F(DeviceRuntimeTest, DistilFinalOnlyDistilsTheFinalModelOnce) {
  options_.distill_final_only = true;
  coordinator_->checkins.push_back(MlpTask(1));
  Coordinator::CheckInResult final_model = MlpTask(2);
  final_model.kind = Kind::kFinalModel;
  final_model.task.set_final_model(true);
  coordinator_->checkins.push_back(std::move(final_model));
  auto distiller = std::make_unique<FakeDistiller>();
  FakeDistiller* d = distiller.get();
  DeviceRuntime& rt = Make(std::move(distiller));
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_TRUE(rt.finished());
  ASSERT_EQ(d->calls.size(), 1u);
  EXPECT_TRUE(d->calls[0].final_model);
  EXPECT_EQ(d->calls[0].model_version, 1);
  EXPECT_TRUE(coordinator_->checkin_calls[0].want_final_model);
  EXPECT_EQ(rt.rounds_done(), 1);
}

TEST_F(DeviceRuntimeTest, FailedFinalDistillationFailsTheRun) {
  options_.distill_final_only = true;
  Coordinator::CheckInResult final_model = MlpTask(1);
  final_model.kind = Kind::kFinalModel;
  final_model.task.set_final_model(true);
  coordinator_->checkins.push_back(std::move(final_model));
  auto distiller = std::make_unique<FakeDistiller>();
  distiller->fail_with = absl::ResourceExhaustedError("disk full");
  DeviceRuntime& rt = Make(std::move(distiller));
  const absl::Status s = rt.Run();
  EXPECT_TRUE(rt.finished());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("disk full"));
}

TEST_F(DeviceRuntimeTest, BadDownloadSkipsTheRoundAndAsksForTheFullModel) {
  coordinator_->checkins.push_back(MlpTask(1));
  Coordinator::CheckInResult bad = MlpTask(2);
  bad.payload.resize(12);
  coordinator_->checkins.push_back(std::move(bad));
  coordinator_->checkins.push_back(MlpTask(2));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_EQ(coordinator_->checkin_calls[1].have_version, 0);
  EXPECT_EQ(coordinator_->checkin_calls[2].have_version, -1);
  EXPECT_EQ(coordinator_->reports.size(), 2u);  // the resent round 2 is trained
}

// FedProx: the task's proximal_mu reaches local training and pulls the update towards the
// global model (the exact arithmetic is checked against a double reference in models/).
TEST_F(DeviceRuntimeTest, TaskProximalMuReachesTrainingAndShrinksTheUpdate) {
  DeviceRuntime& runtime = Make();
  auto delta_with = [&](double mu) {
    Coordinator::CheckInResult task = MlpTask(1);
    task.task.mutable_config()->set_proximal_mu(mu);
    EXPECT_TRUE(runtime.PrepareModel(&task).ok());
    absl::StatusOr<DeviceRuntime::Trained> trained = runtime.Train(task.task);
    EXPECT_TRUE(trained.ok()) << trained.status();
    return trained.ok() ? trained->delta : std::vector<float>();
  };
  auto norm = [](const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += static_cast<double>(x) * x;
    return std::sqrt(s);
  };
  const std::vector<float> plain = delta_with(0.0);
  const std::vector<float> again = delta_with(0.0);
  const std::vector<float> prox = delta_with(5.0);
  ASSERT_EQ(plain.size(), prox.size());
  EXPECT_EQ(plain, again);  // deterministic, so the difference below is the proximal term's
  EXPECT_NE(plain, prox);
  EXPECT_LT(norm(prox), norm(plain));
}

// FedDyn: a task with feddyn_alpha trains with the device's linear term and moves it by
// -alpha x the uploaded update, kept only when the server accepted the upload.
TEST_F(DeviceRuntimeTest, FedDynTermMovesOnlyWithAcceptedUpdatesAndReachesTraining) {
  constexpr double kAlpha = 0.5;  // a power of two: -alpha x d is exact in float
  auto dyn_task = [&](int64_t round) {
    Coordinator::CheckInResult t = MlpTask(round);
    t.task.mutable_config()->set_feddyn_alpha(kAlpha);
    return t;
  };
  auto uploaded = [&](size_t i) {
    const std::string& p = coordinator_->reports[i].payload;
    std::vector<float> d(p.size() / sizeof(float));
    std::memcpy(d.data(), p.data(), p.size());
    return d;
  };
  coordinator_->report_answers.push_back(absl::OkStatus());
  coordinator_->report_answers.push_back(absl::FailedPreconditionError("round 2 is closed"));
  coordinator_->report_answers.push_back(absl::OkStatus());
  coordinator_->checkins.push_back(dyn_task(1));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  ASSERT_EQ(coordinator_->reports.size(), 1u);
  const std::vector<float> d1 = uploaded(0);
  std::vector<float> g1 = rt.feddyn().committed();
  ASSERT_EQ(g1.size(), d1.size());
  for (size_t i = 0; i < d1.size(); ++i) ASSERT_EQ(g1[i], -0.5f * d1[i]) << i;
  EXPECT_FALSE(rt.feddyn().pending());

  coordinator_->checkins.push_back(dyn_task(2));  // refused: g stays
  ASSERT_TRUE(rt.Run().ok());
  ASSERT_EQ(coordinator_->reports.size(), 2u);
  EXPECT_EQ(rt.feddyn().committed(), g1);
  EXPECT_FALSE(rt.feddyn().pending());

  coordinator_->checkins.push_back(dyn_task(3));  // accepted: g moves on from round 1's
  ASSERT_TRUE(rt.Run().ok());
  ASSERT_EQ(coordinator_->reports.size(), 3u);
  const std::vector<float> d3 = uploaded(2);
  for (size_t i = 0; i < d3.size(); ++i) {
    ASSERT_EQ(rt.feddyn().committed()[i], static_cast<float>(g1[i] - kAlpha * d3[i])) << i;
  }
  // The term reaches training: from the same model, the FedDyn task's update differs from the
  // one with only the proximal term of the same weight, by what -g adds.
  auto delta_for = [&](Coordinator::CheckInResult task) {
    EXPECT_TRUE(rt.PrepareModel(&task).ok());
    absl::StatusOr<DeviceRuntime::Trained> trained = rt.Train(task.task);
    EXPECT_TRUE(trained.ok()) << trained.status();
    return trained.ok() ? trained->delta : std::vector<float>();
  };
  Coordinator::CheckInResult prox = MlpTask(4);
  prox.task.mutable_config()->set_proximal_mu(kAlpha);
  const std::vector<float> with_prox = delta_for(std::move(prox));
  const std::vector<float> with_dyn = delta_for(dyn_task(4));
  ASSERT_EQ(with_prox.size(), with_dyn.size());
  EXPECT_NE(with_prox, with_dyn);
}

// FedRS: the task's restricted_softmax_alpha reaches local training on a device whose shard has
// two classes (the exact arithmetic is checked against a double reference in models/); a task
// without the field trains with the plain softmax.
TEST_F(DeviceRuntimeTest, TaskRestrictedSoftmaxAlphaReachesTraining) {
  data::ImageDataset two_classes = SyntheticShard(12);
  for (size_t i = 0; i < two_classes.labels.size(); ++i) two_classes.labels[i] = i % 2 ? 4 : 9;
  absl::StatusOr<std::unique_ptr<DeviceRuntime>> r =
      DeviceRuntime::Create(options_, std::unique_ptr<Coordinator>(coordinator_), two_classes,
                            &clock_);
  ASSERT_TRUE(r.ok()) << r.status();
  auto delta_with = [&](std::optional<double> alpha) {
    Coordinator::CheckInResult task = MlpTask(1);
    if (alpha) task.task.mutable_config()->set_restricted_softmax_alpha(*alpha);
    EXPECT_TRUE((*r)->PrepareModel(&task).ok());
    absl::StatusOr<DeviceRuntime::Trained> trained = (*r)->Train(task.task);
    EXPECT_TRUE(trained.ok()) << trained.status();
    return trained.ok() ? trained->delta : std::vector<float>();
  };
  const std::vector<float> unset = delta_with(std::nullopt);
  const std::vector<float> one = delta_with(1.0);
  const std::vector<float> restricted = delta_with(0.0);
  ASSERT_EQ(unset.size(), restricted.size());
  EXPECT_EQ(unset, one);  // unset is the plain softmax
  EXPECT_NE(unset, restricted);
  // With alpha 0 the absent classes' logits are 0 whatever fc2 holds: their rows get no gradient.
  const size_t fc2_bias = restricted.size() - 10;
  EXPECT_EQ(restricted[fc2_bias + 0], 0.0f);
  EXPECT_NE(restricted[fc2_bias + 4], 0.0f);
  EXPECT_NE(unset[fc2_bias + 0], 0.0f);
}

// FedBABU: a task with freeze_head trains the body only, so the update is exactly 0 on the
// model's final layer (the mlp's fc2: 10 x 128 weights and 10 biases, last in spec order) and
// not 0 before it; without the field the head trains too.
TEST_F(DeviceRuntimeTest, TaskFreezeHeadLeavesTheFinalLayerOutOfTheUpdate) {
  DeviceRuntime& runtime = Make();
  auto delta_with = [&](bool freeze) {
    Coordinator::CheckInResult task = MlpTask(1);
    task.task.mutable_config()->set_freeze_head(freeze);
    EXPECT_TRUE(runtime.PrepareModel(&task).ok());
    absl::StatusOr<DeviceRuntime::Trained> trained = runtime.Train(task.task);
    EXPECT_TRUE(trained.ok()) << trained.status();
    return trained.ok() ? trained->delta : std::vector<float>();
  };
  constexpr size_t kHead = 10 * 128 + 10;
  const std::vector<float> whole = delta_with(false);
  const std::vector<float> body = delta_with(true);
  ASSERT_EQ(whole.size(), body.size());
  ASSERT_GT(whole.size(), kHead);
  auto nonzero = [](auto begin, auto end) {
    return std::count_if(begin, end, [](float v) { return v != 0.0f; });
  };
  EXPECT_EQ(nonzero(body.end() - kHead, body.end()), 0);
  EXPECT_GT(nonzero(body.begin(), body.end() - kHead), 0);
  EXPECT_GT(nonzero(whole.end() - kHead, whole.end()), 0);
}

// FedNTD: the task's ntd_beta / ntd_tau reach local training (the exact arithmetic is checked
// against a double reference in models/): beta 0 is plain training, beta > 0 changes the update,
// and so does another temperature.
TEST_F(DeviceRuntimeTest, TaskNotTrueDistillationReachesTraining) {
  DeviceRuntime& runtime = Make();
  auto delta_with = [&](double beta, double tau) {
    Coordinator::CheckInResult task = MlpTask(1);
    task.task.mutable_config()->set_ntd_beta(beta);
    task.task.mutable_config()->set_ntd_tau(tau);
    EXPECT_TRUE(runtime.PrepareModel(&task).ok());
    absl::StatusOr<DeviceRuntime::Trained> trained = runtime.Train(task.task);
    EXPECT_TRUE(trained.ok()) << trained.status();
    return trained.ok() ? trained->delta : std::vector<float>();
  };
  const std::vector<float> plain = delta_with(0, 0);
  const std::vector<float> plain_again = delta_with(0, 3);
  const std::vector<float> ntd = delta_with(4, 3);
  const std::vector<float> ntd_tau1 = delta_with(4, 1);
  ASSERT_EQ(plain.size(), ntd.size());
  EXPECT_EQ(plain, plain_again);  // deterministic, and tau alone does nothing
  EXPECT_NE(plain, ntd);
  EXPECT_NE(ntd, ntd_tau1);
}

TEST(DeviceRuntime, CreateRefusesAnEmptyShard) {
  SimulatedClock clock(kStart);
  absl::StatusOr<std::unique_ptr<DeviceRuntime>> r =
      DeviceRuntime::Create(DeviceRuntime::Options(), std::make_unique<FakeCoordinator>(&clock),
                            data::ImageDataset(), &clock);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Clock, DefaultSleepForWaitsInTheClocksOwnTime) {
  // A clock that only simulates AwaitWithDeadline sleeps in simulated time too.
  class AwaitOnlyClock : public Clock {
   public:
    absl::Time Now() const override { return now; }
    bool AwaitWithDeadline(absl::Mutex*, const absl::Condition& cond,
                           absl::Time deadline) const override {
      now = std::max(now, deadline);
      return cond.Eval();
    }
    mutable absl::Time now = kStart;
  } clock;
  clock.SleepFor(absl::Seconds(5));
  EXPECT_EQ(clock.now, kStart + absl::Seconds(5));
  clock.SleepFor(-absl::Seconds(1));
  EXPECT_EQ(clock.now, kStart + absl::Seconds(5));
}

}  // namespace
}  // namespace edgefl::client

namespace edgefl::client {
namespace {

TEST_F(DeviceRuntimeTest, DeclinesATaskOnLowBatteryAndSaysWhyInTheNextCheckIn) {
  DeviceState state;
  state.has_battery = true;
  state.battery_percent = 12;
  state.charging = false;
  state.temperature_c = 45;
  options_.device_state = [&state] { return state; };
  options_.thresholds.min_battery_percent = 30;
  coordinator_->checkins.push_back(MlpTask(1));  // declined: battery 12%
  coordinator_->checkins.push_back(Idle());
  coordinator_->checkins.push_back(MlpTask(2));  // declined again
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  ASSERT_EQ(coordinator_->checkin_calls.size(), 4u);
  // Every CheckIn carried the refreshed profile.
  for (const auto& call : coordinator_->checkin_calls) {
    ASSERT_TRUE(call.extras.has_profile());
    EXPECT_EQ(call.extras.profile().battery_percent(), 12);
    EXPECT_TRUE(call.extras.profile().has_battery());
    EXPECT_EQ(call.extras.profile().num_samples(), 12u);
  }
  // The CheckIn after the declined task names it and why; the later ones do not.
  EXPECT_EQ(coordinator_->checkin_calls[0].extras.declined_reason(), "");
  EXPECT_EQ(coordinator_->checkin_calls[1].extras.declined_reason(), "battery_low");
  EXPECT_EQ(coordinator_->checkin_calls[1].extras.declined_round(), 1);
  EXPECT_EQ(coordinator_->checkin_calls[1].extras.declined_attempt(), 1);
  EXPECT_EQ(coordinator_->checkin_calls[2].extras.declined_reason(), "");
  // Round 2 was declined too (still 12%): nothing trained, nothing reported.
  EXPECT_EQ(coordinator_->checkin_calls[3].extras.declined_reason(), "battery_low");
  EXPECT_EQ(coordinator_->checkin_calls[3].extras.declined_round(), 2);
  EXPECT_TRUE(coordinator_->reports.empty());
  EXPECT_EQ(rt.tasks_declined(), 2);
  EXPECT_EQ(rt.tasks_trained(), 0);
}

// The round's conditions come from the experiment config (client.min_battery_percent, ...) in
// the task, and tighten the device's own flags.
TEST_F(DeviceRuntimeTest, TheTasksConditionsFromTheConfigTightenTheDevicesOwn) {
  DeviceState state;
  state.has_battery = true;
  state.battery_percent = 40;
  state.charging = false;
  state.temperature_c = 60;
  state.load_per_core = 0.1;
  options_.device_state = [&state] { return state; };
  options_.thresholds.min_battery_percent = 20;  // the device alone would take it at 40%
  Coordinator::CheckInResult strict = MlpTask(1);
  strict.task.mutable_config()->set_min_battery_percent(50);
  Coordinator::CheckInResult hot = MlpTask(2);
  hot.task.mutable_config()->set_max_temperature_c(55);
  Coordinator::CheckInResult fine = MlpTask(3);
  fine.task.mutable_config()->set_max_temperature_c(80);
  coordinator_->checkins.push_back(strict);
  coordinator_->checkins.push_back(hot);
  coordinator_->checkins.push_back(fine);
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  ASSERT_GE(coordinator_->checkin_calls.size(), 3u);
  EXPECT_EQ(coordinator_->checkin_calls[1].extras.declined_reason(), "battery_low");
  EXPECT_EQ(coordinator_->checkin_calls[2].extras.declined_reason(), "too_hot");
  EXPECT_EQ(rt.tasks_declined(), 2);
  EXPECT_EQ(coordinator_->reports.size(), 1u);  // round 3: 40% >= 20%, 60 C <= 80 C
}

TEST_F(DeviceRuntimeTest, AnUnreadableBatteryIsNeverEligibleByAccident) {
  DeviceState state;
  state.has_battery = true;  // battery present, capacity garbage: unknown
  options_.device_state = [&state] { return state; };
  options_.thresholds.min_battery_percent = 30;
  coordinator_->checkins.push_back(MlpTask(1));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_TRUE(coordinator_->reports.empty());
  ASSERT_EQ(coordinator_->checkin_calls.size(), 2u);
  EXPECT_EQ(coordinator_->checkin_calls[1].extras.declined_reason(), "battery_unknown");
  EXPECT_FALSE(coordinator_->checkin_calls[1].extras.profile().has_battery_percent());
}

TEST_F(DeviceRuntimeTest, TakesTheTaskWhenTheBoardMeetsEveryCondition) {
  DeviceState state;
  state.has_battery = true;
  state.battery_percent = 80;
  state.charging = true;
  state.temperature_c = 50;
  state.load_per_core = 0.2;
  options_.device_state = [&state] { return state; };
  options_.thresholds = {30, 70, true, 0.9};
  coordinator_->checkins.push_back(MlpTask(1));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_EQ(coordinator_->reports.size(), 1u);
  EXPECT_EQ(rt.tasks_declined(), 0);
  // Too hot, then busy: declined with those reasons.
  for (auto [temp, load, reason] : {std::make_tuple(75.0, 0.2, "too_hot"),
                                    std::make_tuple(50.0, 1.5, "busy")}) {
    SimulatedClock clock(kStart);
    auto* coordinator = new FakeCoordinator(&clock);
    coordinator->checkins.push_back(MlpTask(1));
    state.temperature_c = temp;
    state.load_per_core = load;
    auto r = DeviceRuntime::Create(options_, std::unique_ptr<Coordinator>(coordinator),
                                   SyntheticShard(12), &clock);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE((*r)->Run().ok());
    EXPECT_TRUE(coordinator->reports.empty());
    ASSERT_EQ(coordinator->checkin_calls.size(), 2u);
    EXPECT_EQ(coordinator->checkin_calls[1].extras.declined_reason(), reason);
  }
}

TEST_F(DeviceRuntimeTest, DeclinesOutsideTheTrainWindow) {
  options_.device_state = [] { return DeviceState(); };
  options_.time_zone = absl::UTCTimeZone();
  // kStart is 2027-01-15 08:00 UTC.
  options_.train_window = *ParseTrainWindow("22:00-06:00");
  coordinator_->checkins.push_back(MlpTask(1));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_TRUE(coordinator_->reports.empty());
  ASSERT_EQ(coordinator_->checkin_calls.size(), 2u);
  EXPECT_EQ(coordinator_->checkin_calls[1].extras.declined_reason(), "outside_train_window");

  SimulatedClock clock(kStart);
  auto* coordinator = new FakeCoordinator(&clock);
  coordinator->checkins.push_back(MlpTask(1));
  options_.train_window = *ParseTrainWindow("07:30-08:30");
  auto r = DeviceRuntime::Create(options_, std::unique_ptr<Coordinator>(coordinator),
                                 SyntheticShard(12), &clock);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Run().ok());
  EXPECT_EQ(coordinator->reports.size(), 1u);
}

TEST_F(DeviceRuntimeTest, AnRssBudgetReducesTheBatchOrDeclines) {
  options_.device_state = [] { return DeviceState(); };
  // Far below what this process already holds: even batch 1 does not fit.
  options_.max_rss_bytes = 1 << 20;
  coordinator_->checkins.push_back(MlpTask(1));
  DeviceRuntime& rt = Make();
  ASSERT_TRUE(rt.Run().ok());
  EXPECT_TRUE(coordinator_->reports.empty());
  ASSERT_EQ(coordinator_->checkin_calls.size(), 2u);
  EXPECT_EQ(coordinator_->checkin_calls[1].extras.declined_reason(), "rss_budget");
  EXPECT_EQ(rt.last_batch_size(), 0);
  // Room for the resident set, the model and 2.5 samples of activations at 4 MiB each: the batch
  // of 4 is halved to 2 (2 MiB of slack for what loading the model adds) and the round reported.
  SimulatedClock clock(kStart);
  auto* coordinator = new FakeCoordinator(&clock);
  coordinator->checkins.push_back(MlpTask(1));
  const int64_t model = static_cast<int64_t>(MlpWeights().size() * sizeof(float));
  options_.activation_bytes_per_sample = 4 << 20;
  options_.max_rss_bytes = CurrentRssBytes() + 4 * model + (10 << 20);
  auto r = DeviceRuntime::Create(options_, std::unique_ptr<Coordinator>(coordinator),
                                 SyntheticShard(12), &clock);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Run().ok());
  EXPECT_EQ(coordinator->reports.size(), 1u);
  EXPECT_EQ((*r)->last_batch_size(), 2);
  // Without a budget the task's batch is used.
  SimulatedClock clock2(kStart);
  auto* coordinator2 = new FakeCoordinator(&clock2);
  coordinator2->checkins.push_back(MlpTask(1));
  options_.max_rss_bytes = 0;
  r = DeviceRuntime::Create(options_, std::unique_ptr<Coordinator>(coordinator2),
                            SyntheticShard(12), &clock2);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Run().ok());
  EXPECT_EQ((*r)->last_batch_size(), 4);
}

}  // namespace
}  // namespace edgefl::client
