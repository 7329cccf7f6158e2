#include "client/backoff.h"

#include <algorithm>
#include <cmath>

namespace edgefl::client {

absl::Duration Backoff::Next() {
  const double base = absl::ToDoubleSeconds(options_.initial) *
                      std::pow(options_.multiplier, std::min(attempt_, 60));
  const double capped = std::min(base, absl::ToDoubleSeconds(options_.max));
  std::uniform_real_distribution<double> factor(1.0 - options_.jitter, 1.0 + options_.jitter);
  ++attempt_;
  return absl::Seconds(capped * factor(rng_));
}

}  // namespace edgefl::client
