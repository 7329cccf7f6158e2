// Splitting a training set across clients, reproducibly from a seed. Torch-free.
#ifndef EDGEFL_DATA_PARTITION_H_
#define EDGEFL_DATA_PARTITION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edgefl::data {

// One index list per client; every index 0..n-1 appears in exactly one list. Lists are sorted.
using Partition = std::vector<std::vector<int64_t>>;

// Shuffled equal split (sizes differ by at most one).
absl::StatusOr<Partition> PartitionIid(int64_t n, int num_clients, uint64_t seed);
// Label-Dirichlet(alpha): for every class, its rows are split across clients by proportions drawn
// from Dir(alpha). Resamples (bounded attempts) until every client holds >= 1 row.
absl::StatusOr<Partition> PartitionDirichlet(const std::vector<uint8_t>& labels, int num_clients,
                                             double alpha, uint64_t seed);
// Each client gets `labels_per_client` classes (assigned round-robin over a seeded permutation of
// classes, so every class is used); each class's rows are split evenly among the clients holding it.
absl::StatusOr<Partition> PartitionByLabels(const std::vector<uint8_t>& labels, int num_clients,
                                            int labels_per_client, uint64_t seed);

// Parses a spec "iid", "dirichlet:<alpha>" or "labels:<n>" and partitions `labels` into
// `num_clients` lists. INVALID_ARGUMENT naming the spec when malformed.
absl::StatusOr<Partition> PartitionFromSpec(const std::string& spec,
                                            const std::vector<uint8_t>& labels, int num_clients,
                                            uint64_t seed);

// Reads a workload partition file (../shared/workloads/*/partition_*.txt): '#' lines are
// comments, every other line "<client_id> <num_samples> <idx...>". Checks num_samples against the
// count, indices < `num_rows`, and that no index repeats. Entry i is client_id i (ids must be
// 0..k-1). INVALID_ARGUMENT with the line number on any violation.
absl::StatusOr<Partition> ReadPartitionFile(const std::string& path, int64_t num_rows);

}  // namespace edgefl::data

#endif  // EDGEFL_DATA_PARTITION_H_
