// Per-key token buckets (one bucket per client or peer address), with an injected clock.
#ifndef EDGEFL_SERVER_RATE_LIMITER_H_
#define EDGEFL_SERVER_RATE_LIMITER_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace edgefl::server {

// Thread-safe. Each key has a bucket of `burst` tokens refilled at `per_minute` / 60 per second;
// a call takes one token. Memory is bounded: at most `max_keys` buckets; when full, buckets that
// have refilled completely (idle keys, indistinguishable from new ones) are dropped first, and
// if none has, new keys are refused.
class RateLimiter {
 public:
  struct Options {
    double per_minute = 60;  // sustained rate; <= 0 disables the limiter
    double burst = 20;       // bucket size (calls allowed at once)
    size_t max_keys = 100000;
  };
  RateLimiter(const Options& options, const Clock* clock);

  // OK and takes a token, or RESOURCE_EXHAUSTED naming `what` and when to retry.
  absl::Status Admit(const std::string& key, absl::string_view what);

 private:
  struct Bucket {
    double tokens;
    absl::Time last;
  };
  void RefillLocked(Bucket* b, absl::Time now) const;
  void EvictIdleLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const Clock* const clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_RATE_LIMITER_H_
