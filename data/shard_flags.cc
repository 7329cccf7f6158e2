#include "data/shard_flags.h"

namespace edgefl::data {

void RegisterShardFlags(FlagSet& flags, ShardFlags* shard, const std::string& seed_help) {
  flags.String("data", &shard->data, "local data set: fmnist (Fashion-MNIST training images)");
  flags.String("data_dir", &shard->data_dir, "folder with the Fashion-MNIST .gz files");
  flags.String("partition_file", &shard->partition_file,
               "workload partition file (lines '<client> <n> <idx...>'); wins over --partition");
  flags.String("partition", &shard->partition,
               "how to split the training set: iid, dirichlet:<alpha>, "
               "labels:<n classes per client>");
  flags.Int("num_partitions", &shard->num_partitions, "number of shards for --partition");
  flags.Int("client_index", &shard->client_index, "which shard this device holds (0-based)");
  flags.Int64("seed", &shard->seed, seed_help);
}

absl::Status ValidateShardFlags(const ShardFlags& shard) {
  if (shard.num_partitions < 1) {
    return absl::InvalidArgumentError("--num_partitions must be >= 1");
  }
  return absl::OkStatus();
}

ShardSource ShardSourceFrom(const ShardFlags& shard) {
  return ShardSourceFromFlags(shard);
}

}  // namespace edgefl::data
