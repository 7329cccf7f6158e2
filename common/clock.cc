#include "common/clock.h"

namespace edgefl {
namespace {
class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                         absl::Time deadline) const override {
    return mu->AwaitWithDeadline(cond, deadline);
  }
  void SleepFor(absl::Duration d) const override { absl::SleepFor(d); }
};
}  // namespace

void Clock::SleepFor(absl::Duration d) const {
  if (d <= absl::ZeroDuration()) return;
  static const bool kNever = false;
  absl::Mutex mu;
  absl::MutexLock lock(&mu);
  AwaitWithDeadline(&mu, absl::Condition(&kNever), Now() + d);
}

const Clock* Clock::Real() {
  static const RealClock* clock = new RealClock();
  return clock;
}
}  // namespace edgefl
