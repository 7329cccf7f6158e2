#include "data/device_data.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "data/partition.h"

namespace edgefl::data {

absl::StatusOr<ImageDataset> LoadDeviceShard(const ShardSource& s) {
  if (s.data != "fmnist") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --data '", s.data, "' (supported: fmnist)"));
  }
  Partition partition;
  if (!s.partition_file.empty()) {
    ASSIGN_OR_RETURN(partition, ReadPartitionFile(s.partition_file, kFashionMnistTrainRows));
  } else {
    ASSIGN_OR_RETURN(std::vector<uint8_t> labels,
                     ReadIdxLabels(s.data_dir + "/train-labels-idx1-ubyte.gz"));
    ASSIGN_OR_RETURN(partition, PartitionFromSpec(s.partition, labels, s.num_partitions, s.seed));
  }
  if (s.client_index < 0 || s.client_index >= static_cast<int>(partition.size())) {
    return absl::InvalidArgumentError(absl::StrCat("--client_index ", s.client_index,
                                                   " is outside the partition's ", partition.size(),
                                                   " clients"));
  }
  std::vector<int64_t> rows = std::move(partition[s.client_index]);
  partition.clear();
  partition.shrink_to_fit();
  if (rows.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no local data: client ", s.client_index, "'s shard is empty"));
  }
  return LoadFashionMnist(s.data_dir, Split::kTrain, rows);
}

}  // namespace edgefl::data
