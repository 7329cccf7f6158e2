#include "common/testing/simulated_clock.h"

#include <vector>

namespace edgefl {

SimulatedClock::SimulatedClock(absl::Time start) : now_(start) {}

absl::Time SimulatedClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

bool SimulatedClock::AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                                       absl::Time deadline) const {
  // The caller holds `mu`; mu_ is only ever taken inside it (here and in Now()), never the
  // other way round: AdvanceTime releases mu_ before it touches a waiter's mutex.
  if (cond.Eval() || Now() >= deadline) return cond.Eval();
  {
    absl::MutexLock lock(&mu_);
    ++waiters_[mu];
    ++num_waiters_;
  }
  auto woken = [this, &cond, deadline]() { return cond.Eval() || Now() >= deadline; };
  mu->Await(absl::Condition(&woken));
  {
    absl::MutexLock lock(&mu_);
    if (--waiters_[mu] == 0) waiters_.erase(mu);
    --num_waiters_;
  }
  return cond.Eval();
}

void SimulatedClock::AdvanceTime(absl::Duration d) { Advance(d); }

void SimulatedClock::Advance(absl::Duration d) const {
  std::vector<absl::Mutex*> mutexes;
  {
    absl::MutexLock lock(&mu_);
    if (d > absl::ZeroDuration()) now_ += d;
    for (const auto& [mutex, count] : waiters_) mutexes.push_back(mutex);
  }
  // absl::Mutex re-evaluates the conditions of its waiters when it is released.
  for (absl::Mutex* mutex : mutexes) {
    mutex->Lock();
    mutex->Unlock();
  }
}

void SimulatedClock::SleepFor(absl::Duration d) const {
  {
    absl::MutexLock lock(&mu_);
    sleeps_.push_back(d);
  }
  Advance(d);
}

std::vector<absl::Duration> SimulatedClock::sleeps() const {
  absl::MutexLock lock(&mu_);
  return sleeps_;
}

int SimulatedClock::num_waiters() const {
  absl::MutexLock lock(&mu_);
  return num_waiters_;
}

bool SimulatedClock::AwaitWaiters(int n, absl::Duration real_timeout) const {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return num_waiters_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), real_timeout);
}

}  // namespace edgefl
