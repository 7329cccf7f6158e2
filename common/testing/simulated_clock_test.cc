#include "common/testing/simulated_clock.h"

#include <thread>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace edgefl {
namespace {

TEST(SimulatedClock, MovesOnlyWhenAdvanced) {
  SimulatedClock clock(absl::FromUnixSeconds(1000));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1000));
  clock.AdvanceTime(absl::Seconds(5));
  clock.SleepFor(absl::Milliseconds(250));
  clock.AdvanceTime(-absl::Seconds(1));  // ignored
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1005) + absl::Milliseconds(250));
}

TEST(SimulatedClock, AwaitReturnsAtOnceWhenTrueOrPastDeadline) {
  SimulatedClock clock;
  absl::Mutex mu;
  absl::MutexLock lock(&mu);
  EXPECT_TRUE(clock.AwaitWithDeadline(&mu, absl::Condition::kTrue, clock.Now() + absl::Hours(1)));
  bool never = false;
  EXPECT_FALSE(clock.AwaitWithDeadline(&mu, absl::Condition(&never), clock.Now()));
  EXPECT_EQ(clock.num_waiters(), 0);
}

TEST(SimulatedClock, AdvancingPastTheDeadlineWakesTheWaiter) {
  SimulatedClock clock;
  absl::Mutex mu;
  bool flag = false;
  bool result = true;
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    result = clock.AwaitWithDeadline(&mu, absl::Condition(&flag), clock.Now() + absl::Seconds(10));
  });
  ASSERT_TRUE(clock.AwaitWaiters(1));
  clock.AdvanceTime(absl::Seconds(9));  // not yet
  EXPECT_EQ(clock.num_waiters(), 1);
  clock.AdvanceTime(absl::Seconds(1));
  waiter.join();
  EXPECT_FALSE(result);
  EXPECT_EQ(clock.num_waiters(), 0);
}

TEST(SimulatedClock, ConditionWakesTheWaiterBeforeTheDeadline) {
  SimulatedClock clock;
  absl::Mutex mu;
  bool flag = false;
  bool result = false;
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    result = clock.AwaitWithDeadline(&mu, absl::Condition(&flag), clock.Now() + absl::Seconds(10));
  });
  ASSERT_TRUE(clock.AwaitWaiters(1));
  {
    absl::MutexLock lock(&mu);
    flag = true;
  }
  waiter.join();
  EXPECT_TRUE(result);
}

}  // namespace
}  // namespace edgefl
