// Injected time, so that the round scheduler, leases and the device loop can be tested with a
// simulated clock.
#ifndef EDGEFL_COMMON_CLOCK_H_
#define EDGEFL_COMMON_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace edgefl {

// Thread-safe source of time. Implementations must be safe to call from any thread.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // Waits on `mu` (which the caller holds) until `cond` is true or `deadline` passes, like
  // absl::Mutex::AwaitWithDeadline. Returns the final value of `cond`.
  virtual bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                                 absl::Time deadline) const = 0;
  // Blocks the calling thread for `d` of this clock's time (returns at once for d <= 0). The real
  // clock sleeps; a simulated clock may advance its time instead. The default waits through
  // AwaitWithDeadline(Now() + d) on a condition that never holds, so a clock that simulates
  // AwaitWithDeadline sleeps in simulated time without overriding this.
  virtual void SleepFor(absl::Duration d) const;
  // The process-wide real clock; never null, never deleted.
  static const Clock* Real();
};

}  // namespace edgefl

#endif  // EDGEFL_COMMON_CLOCK_H_
