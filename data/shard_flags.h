// The flags that name a device's training shard, shared by fl-client and fl-distill so that both
// spell, document and check them the same way.
#ifndef EDGEFL_DATA_SHARD_FLAGS_H_
#define EDGEFL_DATA_SHARD_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/flags.h"
#include "data/dataset.h"
#include "data/device_data.h"

namespace edgefl::data {

// Defaults are the flags' defaults.
struct ShardFlags {
  std::string data = "fmnist";
  std::string data_dir = data::kDefaultFashionMnistDir;
  std::string partition_file;     // wins over `partition`
  std::string partition = "iid";  // iid, dirichlet:<alpha>, labels:<n>
  int num_partitions = 1;
  int client_index = 0;
  int64_t seed = 0;
};

// Registers --data, --data_dir, --partition_file, --partition, --num_partitions, --client_index
// and --seed (in that order) on `flags`, writing into `*shard` (which must outlive `flags`).
// `seed_help` documents --seed, whose use differs between the tools.
void RegisterShardFlags(FlagSet& flags, ShardFlags* shard, const std::string& seed_help);

// INVALID_ARGUMENT with the one-line usage message for values no shard can have
// ("--num_partitions must be >= 1"). The rest is checked when the shard is loaded.
absl::Status ValidateShardFlags(const ShardFlags& shard);

// What data::LoadDeviceShard reads.
ShardSource ShardSourceFrom(const ShardFlags& shard);

}  // namespace edgefl::data

#endif  // EDGEFL_DATA_SHARD_FLAGS_H_
