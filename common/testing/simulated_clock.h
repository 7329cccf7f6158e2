// A Clock for tests whose time moves only when the test says so (after fcp's SimulatedClock).
#ifndef EDGEFL_COMMON_TESTING_SIMULATED_CLOCK_H_
#define EDGEFL_COMMON_TESTING_SIMULATED_CLOCK_H_

#include <cstdint>
#include <map>

#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace edgefl {

// Simulated time for deterministic tests of deadlines, leases and timeouts. Now() returns the
// simulated time; AwaitWithDeadline blocks (for real) until its condition holds or AdvanceTime /
// SleepFor moves the simulated time to or past its deadline. Nothing ever waits on real time, so
// a test states the order of events instead of racing a timer.
//
// Thread-safe. A mutex passed to AwaitWithDeadline must outlive every AdvanceTime call made while
// a thread waits on it (AdvanceTime locks and unlocks it once to make absl re-check the wait).
class SimulatedClock : public Clock {
 public:
  // Starts at `start` (default: 2027-01-15 08:00:00 UTC, a time far from the epoch).
  explicit SimulatedClock(absl::Time start = absl::FromUnixSeconds(1800000000));

  absl::Time Now() const override;
  // Like absl::Mutex::AwaitWithDeadline on simulated time: returns at once if `cond` holds or
  // `deadline` is not after Now(), else when `cond` turns true (someone releases `mu` after
  // changing it) or the simulated time reaches `deadline`. Returns the final value of `cond`.
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                         absl::Time deadline) const override;

  // Moves the simulated time forward by `d` (>= 0; negative is ignored) and wakes every waiter
  // whose deadline has now passed.
  void AdvanceTime(absl::Duration d);
  // A "sleep" on this clock moves it on (as AdvanceTime) without blocking, and is recorded.
  void SleepFor(absl::Duration d) const override;
  // Every SleepFor so far, in order (what a backoff test checks).
  std::vector<absl::Duration> sleeps() const;

  // How many threads are blocked in AwaitWithDeadline right now.
  int num_waiters() const;
  // Blocks until at least `n` threads are blocked in AwaitWithDeadline, or `real_timeout` (real
  // time: a bound on a broken test, not a synchronisation) passes. Returns whether they are.
  bool AwaitWaiters(int n, absl::Duration real_timeout = absl::Seconds(30)) const;

 private:
  void Advance(absl::Duration d) const;

  mutable absl::Mutex mu_;
  mutable absl::Time now_ ABSL_GUARDED_BY(mu_);
  mutable std::vector<absl::Duration> sleeps_ ABSL_GUARDED_BY(mu_);
  // Mutexes that AwaitWithDeadline callers wait on, with how many wait on each.
  mutable std::map<absl::Mutex*, int> waiters_ ABSL_GUARDED_BY(mu_);
  mutable int num_waiters_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace edgefl

#endif  // EDGEFL_COMMON_TESTING_SIMULATED_CLOCK_H_
