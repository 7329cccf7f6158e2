// Exponential backoff with jitter for reconnecting to the coordinator.
#ifndef EDGEFL_CLIENT_BACKOFF_H_
#define EDGEFL_CLIENT_BACKOFF_H_

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace edgefl::client {

// Delays grow initial * multiplier^n up to `max`, each scaled by a uniform factor in
// [1 - jitter, 1 + jitter] so that a fleet does not reconnect in lockstep. Not thread-safe.
class Backoff {
 public:
  struct Options {
    absl::Duration initial = absl::Milliseconds(500);
    absl::Duration max = absl::Seconds(30);
    double multiplier = 2.0;
    double jitter = 0.5;  // in [0, 1)
  };
  Backoff(const Options& options, uint64_t seed) : options_(options), rng_(seed) {}

  // The next delay to wait.
  absl::Duration Next();
  // Back to the initial delay (after a success).
  void Reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }

 private:
  Options options_;
  std::mt19937_64 rng_;
  int attempt_ = 0;
};

}  // namespace edgefl::client

#endif  // EDGEFL_CLIENT_BACKOFF_H_
