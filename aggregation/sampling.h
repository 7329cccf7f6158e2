// Seeded client selection.
#ifndef EDGEFL_AGGREGATION_SAMPLING_H_
#define EDGEFL_AGGREGATION_SAMPLING_H_

#include <cstdint>
#include <string>
#include <vector>

namespace edgefl::aggregation {

// How many clients a round needs: max(min_clients, ceil(fraction * num_eligible)), capped at
// num_eligible.
int TargetClients(int num_eligible, double fraction, int min_clients);

// Picks min(eligible.size(), ceil(target * (1 + over_selection))) distinct clients uniformly
// without replacement. Deterministic for (eligible as a set, seed, round, attempt): the input is
// sorted first, so the order clients joined in does not matter. The result is sorted.
std::vector<std::string> SelectClients(std::vector<std::string> eligible, int target,
                                       double over_selection, uint64_t seed, int64_t round,
                                       int64_t attempt);

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_SAMPLING_H_
