// The device's own training shard, as fl-client and fl-distill load it from
// their flags: one partition (a workload partition file, or iid / dirichlet /
// labels computed from the training labels with a seed) of Fashion-MNIST's
// training set, kept as uint8 images.
#ifndef EDGEFL_DATA_DEVICE_DATA_H_
#define EDGEFL_DATA_DEVICE_DATA_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "data/dataset.h"

namespace edgefl::data {

inline constexpr int64_t kFashionMnistTrainRows = 60000;

struct ShardSource {
  std::string data = "fmnist";  // the only dataset so far
  std::string data_dir;         // gzipped IDX files
  std::string partition_file;   // non-empty: read the partition from this file
  std::string partition;        // else: PartitionFromSpec's spec ...
  int num_partitions = 0;       //   ... into this many shards ...
  uint64_t seed = 0;            //   ... with this seed
  int client_index = 0;         // which shard
};

// Loads shard `client_index` only (the other shards' rows are dropped before
// any image is read). INVALID_ARGUMENT for an unknown dataset, a bad partition
// spec or file, an index outside the partition, or an empty shard; NOT_FOUND /
// DATA_LOSS from reading the IDX files. Messages name the offending flag value
// or file.
absl::StatusOr<ImageDataset> LoadDeviceShard(const ShardSource& source);

// The ShardSource named by a binary's flags: any struct with the fields data, data_dir,
// partition_file, partition, num_partitions, seed and client_index (fl-client, fl-distill).
template <typename Flags>
ShardSource ShardSourceFromFlags(const Flags& f) {
  ShardSource s;
  s.data = f.data;
  s.data_dir = f.data_dir;
  s.partition_file = f.partition_file;
  s.partition = f.partition;
  s.num_partitions = f.num_partitions;
  s.seed = static_cast<uint64_t>(f.seed);
  s.client_index = f.client_index;
  return s;
}

}  // namespace edgefl::data

#endif  // EDGEFL_DATA_DEVICE_DATA_H_
