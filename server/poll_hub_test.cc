#include "server/poll_hub.h"

#include <atomic>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/testing/simulated_clock.h"
#include "gtest/gtest.h"

namespace edgefl::server {
namespace {

// A scheduler stand-in: clients in `ready` get a task; `finished` answers everyone.
class FakeScheduler {
 public:
  PollOutcome TryTask(const std::string& client_id, TaskGrant* grant) {
    absl::MutexLock lock(&mu_);
    ++asked_;
    if (finished_) return PollOutcome::kFinished;
    if (!ready_.contains(client_id)) return PollOutcome::kIdle;
    grant->task.set_round(round_);
    return PollOutcome::kTask;
  }
  void MakeReady(const std::string& client_id, int64_t round) {
    absl::MutexLock lock(&mu_);
    ready_.insert(client_id);
    round_ = round;
  }
  void Finish() {
    absl::MutexLock lock(&mu_);
    finished_ = true;
  }
  int64_t asked() const {
    absl::MutexLock lock(&mu_);
    return asked_;
  }

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> ready_ ABSL_GUARDED_BY(mu_);
  int64_t round_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int64_t asked_ ABSL_GUARDED_BY(mu_) = 0;
};

// What the polls were answered, in order of delivery.
class Answers {
 public:
  PollHub::DeliverFn For(const std::string& name) {
    return [this, name](PollOutcome outcome, TaskGrant grant) {
      absl::MutexLock lock(&mu_);
      got_.push_back({name, outcome, grant.task.round()});
    };
  }
  // Waits (real time, a bound on a broken test) until `n` answers arrived.
  bool AwaitCount(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return got_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30));
  }
  struct Answer {
    std::string name;
    PollOutcome outcome;
    int64_t round;
  };
  std::vector<Answer> got() {
    absl::MutexLock lock(&mu_);
    return got_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Answer> got_ ABSL_GUARDED_BY(mu_);
};

struct Fixture {
  SimulatedClock clock;
  FakeScheduler scheduler;
  Answers answers;
  PollHub hub{[this](const std::string& id, TaskGrant* g) { return scheduler.TryTask(id, g); },
              &clock};
};

TEST(PollHub, AnswersAWaitingPollWhenTheSchedulerChanges) {
  Fixture f;
  const uint64_t id = f.hub.Add("a", f.clock.Now() + absl::Seconds(20), f.answers.For("a"));
  ASSERT_GT(id, 0u);
  // The hub asks once for the new poll and keeps it.
  ASSERT_TRUE(f.clock.AwaitWaiters(1));
  EXPECT_EQ(f.hub.pending(), 1u);
  EXPECT_TRUE(f.answers.got().empty());
  f.scheduler.MakeReady("a", 7);
  f.hub.Notify();
  ASSERT_TRUE(f.answers.AwaitCount(1));
  EXPECT_EQ(f.answers.got()[0].outcome, PollOutcome::kTask);
  EXPECT_EQ(f.answers.got()[0].round, 7);
  EXPECT_EQ(f.hub.pending(), 0u);
  EXPECT_FALSE(f.hub.Cancel(id));  // answered: nothing to take back
}

TEST(PollHub, AReadinessThatCameBeforeAddIsNotMissed) {
  Fixture f;
  f.scheduler.MakeReady("a", 3);  // no Notify: the change happened before the poll arrived
  f.hub.Add("a", f.clock.Now() + absl::Seconds(20), f.answers.For("a"));
  ASSERT_TRUE(f.answers.AwaitCount(1));
  EXPECT_EQ(f.answers.got()[0].outcome, PollOutcome::kTask);
}

TEST(PollHub, AnswersIdleAtTheDeadlineAndNotBefore) {
  Fixture f;
  f.hub.Add("a", f.clock.Now() + absl::Seconds(20), f.answers.For("a"));
  f.hub.Add("b", f.clock.Now() + absl::Seconds(40), f.answers.For("b"));
  ASSERT_TRUE(f.clock.AwaitWaiters(1));
  f.clock.AdvanceTime(absl::Seconds(19));
  ASSERT_TRUE(f.clock.AwaitWaiters(1));
  EXPECT_TRUE(f.answers.got().empty());
  f.clock.AdvanceTime(absl::Seconds(1));
  ASSERT_TRUE(f.answers.AwaitCount(1));
  ASSERT_TRUE(f.clock.AwaitWaiters(1));
  std::vector<Answers::Answer> got = f.answers.got();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].name, "a");
  EXPECT_EQ(got[0].outcome, PollOutcome::kIdle);
  EXPECT_EQ(f.hub.pending(), 1u);
  f.clock.AdvanceTime(absl::Seconds(20));
  ASSERT_TRUE(f.answers.AwaitCount(2));
  EXPECT_EQ(f.answers.got()[1].name, "b");
}

TEST(PollHub, ACancelledPollIsNeverAnswered) {
  Fixture f;
  const uint64_t id = f.hub.Add("a", f.clock.Now() + absl::Seconds(20), f.answers.For("a"));
  EXPECT_TRUE(f.hub.Cancel(id));
  EXPECT_FALSE(f.hub.Cancel(id));
  f.scheduler.MakeReady("a", 1);
  f.hub.Notify();
  // A later poll of another client is answered; the cancelled one never is.
  f.scheduler.MakeReady("b", 1);
  f.hub.Add("b", f.clock.Now() + absl::Seconds(20), f.answers.For("b"));
  ASSERT_TRUE(f.answers.AwaitCount(1));
  f.hub.Stop();
  std::vector<Answers::Answer> got = f.answers.got();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].name, "b");
}

TEST(PollHub, ANewPollOfTheSameClientSupersedesTheOld) {
  Fixture f;
  f.hub.Add("a", f.clock.Now() + absl::Seconds(20), f.answers.For("first"));
  f.hub.Add("a", f.clock.Now() + absl::Seconds(20), f.answers.For("second"));
  ASSERT_TRUE(f.answers.AwaitCount(1));
  EXPECT_EQ(f.answers.got()[0].name, "first");
  EXPECT_EQ(f.answers.got()[0].outcome, PollOutcome::kIdle);
  EXPECT_EQ(f.hub.superseded(), 1);
  EXPECT_EQ(f.hub.pending(), 1u);
}

TEST(PollHub, OneNotifyAnswersAThousandWaitingPolls) {
  Fixture f;
  for (int i = 0; i < 1000; ++i) {
    f.hub.Add(absl::StrCat("c", i), f.clock.Now() + absl::Seconds(20),
              f.answers.For(absl::StrCat("c", i)));
  }
  ASSERT_TRUE(f.clock.AwaitWaiters(1));
  EXPECT_EQ(f.hub.pending(), 1000u);
  f.scheduler.Finish();
  f.hub.Notify();
  ASSERT_TRUE(f.answers.AwaitCount(1000));
  for (const auto& a : f.answers.got()) EXPECT_EQ(a.outcome, PollOutcome::kFinished);
  EXPECT_EQ(f.hub.pending(), 0u);
}

TEST(PollHub, StopAnswersEveryPendingPollIdleAndRefusesNewOnes) {
  Fixture f;
  f.hub.Add("a", f.clock.Now() + absl::Seconds(20), f.answers.For("a"));
  f.hub.Add("b", f.clock.Now() + absl::Seconds(20), f.answers.For("b"));
  f.hub.Stop();
  ASSERT_TRUE(f.answers.AwaitCount(2));
  for (const auto& a : f.answers.got()) EXPECT_EQ(a.outcome, PollOutcome::kIdle);
  EXPECT_EQ(f.hub.Add("c", f.clock.Now() + absl::Seconds(20), f.answers.For("c")), 0u);
  f.hub.Stop();  // idempotent
}

}  // namespace
}  // namespace edgefl::server
