#include "server/rate_limiter.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace edgefl::server {

RateLimiter::RateLimiter(const Options& options, const Clock* clock)
    : options_(options), clock_(clock) {}

void RateLimiter::RefillLocked(Bucket* b, absl::Time now) const {
  const double rate = options_.per_minute / 60.0;
  const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - b->last));
  b->tokens = std::min(options_.burst, b->tokens + elapsed * rate);
  b->last = now;
}

void RateLimiter::EvictIdleLocked(absl::Time now) {
  absl::erase_if(buckets_, [&](auto& kv) {
    RefillLocked(&kv.second, now);
    return kv.second.tokens >= options_.burst;
  });
}

absl::Status RateLimiter::Admit(const std::string& key, absl::string_view what) {
  if (options_.per_minute <= 0) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= options_.max_keys) EvictIdleLocked(now);
    if (buckets_.size() >= options_.max_keys) {
      return absl::ResourceExhaustedError(
          absl::StrCat("too many ", what, " callers at once; retry later"));
    }
    it = buckets_.emplace(key, Bucket{options_.burst, now}).first;
  }
  Bucket& b = it->second;
  RefillLocked(&b, now);
  if (b.tokens < 1.0) {
    const double wait = (1.0 - b.tokens) / (options_.per_minute / 60.0);
    return absl::ResourceExhaustedError(
        absl::StrFormat("rate limit: too many %s calls (at most %g per minute, %g at once); "
                        "retry in %.1f s",
                        what, options_.per_minute, options_.burst, wait));
  }
  b.tokens -= 1.0;
  return absl::OkStatus();
}

}  // namespace edgefl::server
