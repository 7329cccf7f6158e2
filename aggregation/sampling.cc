#include "aggregation/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

namespace edgefl::aggregation {
namespace {

// ceil(x) as an int, saturating, for non-negative x; NaN counts as 0.
int64_t CeilToInt(double x) {
  if (!(x > 0)) return 0;
  if (x >= static_cast<double>(std::numeric_limits<int>::max())) {
    return std::numeric_limits<int>::max();
  }
  // Guard against 0.1 * 30 = 3.0000000000000004 style noise turning into one extra client.
  const double rounded = std::round(x);
  if (std::fabs(x - rounded) < 1e-9) return static_cast<int64_t>(rounded);
  return static_cast<int64_t>(std::ceil(x));
}

}  // namespace

int TargetClients(int num_eligible, double fraction, int min_clients) {
  if (num_eligible <= 0) return 0;
  int64_t target = CeilToInt(fraction * num_eligible);
  target = std::max<int64_t>(target, min_clients);
  target = std::min<int64_t>(target, num_eligible);
  return static_cast<int>(std::max<int64_t>(target, 0));
}

std::vector<std::string> SelectClients(std::vector<std::string> eligible, int target,
                                       double over_selection, uint64_t seed, int64_t round,
                                       int64_t attempt) {
  std::sort(eligible.begin(), eligible.end());
  eligible.erase(std::unique(eligible.begin(), eligible.end()), eligible.end());
  const double wanted = std::max(0, target) * (1.0 + std::max(0.0, over_selection));
  const size_t count = static_cast<size_t>(
      std::min<int64_t>(CeilToInt(wanted), static_cast<int64_t>(eligible.size())));

  // Mix all three inputs through seed_seq so nearby (seed, round, attempt) triples give
  // unrelated streams.
  const uint64_t r = static_cast<uint64_t>(round);
  const uint64_t a = static_cast<uint64_t>(attempt);
  std::seed_seq seq{static_cast<uint32_t>(seed),
                    static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(r),
                    static_cast<uint32_t>(r >> 32),
                    static_cast<uint32_t>(a),
                    static_cast<uint32_t>(a >> 32),
                    0x5e1ec7u /* domain tag: client selection */};
  std::mt19937_64 rng(seq);

  // Partial Fisher-Yates: the first `count` positions become a uniform sample without
  // replacement. The draw is done by hand (not std::uniform_int_distribution) so the selection
  // is identical across standard libraries.
  for (size_t i = 0; i < count; ++i) {
    const uint64_t range = eligible.size() - i;
    // Rejection sampling for an unbiased draw in [0, range).
    const uint64_t limit =
        std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % range;
    uint64_t draw;
    do {
      draw = rng();
    } while (draw >= limit);
    std::swap(eligible[i], eligible[i + draw % range]);
  }
  eligible.resize(count);
  std::sort(eligible.begin(), eligible.end());
  return eligible;
}

}  // namespace edgefl::aggregation
