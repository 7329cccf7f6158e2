// The run's output folder: config.json, metrics.jsonl, checkpoint.pb (atomic, after every
// completed round) and the final model. Everything `fl-server --resume` needs lives here.
#ifndef EDGEFL_SERVER_RUN_STORE_H_
#define EDGEFL_SERVER_RUN_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "protos/edgefl.pb.h"

namespace edgefl::server {

// One line of metrics.jsonl.
struct RoundMetrics {
  proto::RoundRecord stats;             // the round's figures, as the scheduler closed it
  std::optional<double> test_accuracy;  // absent for rounds that were not evaluated
  std::optional<double> test_loss;
  // With aggregation.averaging, test_accuracy / test_loss are the averaged model's (the run's
  // result) and these the global model's, the one the devices train from; absent otherwise.
  std::optional<double> global_test_accuracy;
  std::optional<double> global_test_loss;
  double eval_seconds = 0;  // all of the round's evaluations
};

// After start-up two threads write, each its own files: the scheduler's thread the checkpoint and
// the final model as each round closes, its worker thread metrics.jsonl as evaluations finish.
class RunStore {
 public:
  static constexpr char kCheckpointFile[] = "checkpoint.pb";
  static constexpr char kMetricsFile[] = "metrics.jsonl";
  static constexpr char kConfigFile[] = "config.json";
  static constexpr char kFinalModelFile[] = "model_final.f32";
  static constexpr char kSpecFile[] = "model_spec.json";

  // Creates `dir` (mkdir -p). INVALID_ARGUMENT / PERMISSION_DENIED-like errors name the path.
  static absl::StatusOr<RunStore> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::string Path(const std::string& file) const { return dir_ + "/" + file; }

  absl::Status WriteConfig(const proto::ExperimentConfig& config);
  // Atomically replaces checkpoint.pb.
  absl::Status WriteCheckpoint(const proto::Checkpoint& checkpoint);
  // NOT_FOUND if there is no checkpoint; DATA_LOSS if it does not parse or its digest is wrong.
  absl::StatusOr<proto::Checkpoint> ReadCheckpoint() const;
  // Appends one JSON object (fsynced).
  absl::Status AppendMetrics(const RoundMetrics& metrics);
  // Keeps only the whole metrics lines with round <= `round` (atomic rewrite); returns the
  // highest round kept (0 if none).
  absl::StatusOr<int64_t> TruncateMetricsAfter(int64_t round);
  // On resume from `checkpoint`: drops the lines of rounds after it, then writes, in round order,
  // the lines of its pending rounds that metrics.jsonl lacks (their evaluation was lost with the
  // process). The line of the checkpoint's own round goes through `evaluate` first (its model is
  // the checkpoint's), the others keep no test figures. Returns how many lines it wrote.
  absl::StatusOr<int> RestoreMetrics(const proto::Checkpoint& checkpoint,
                                     const std::function<void(RoundMetrics*)>& evaluate);
  // model_final.f32 (raw float32) and model_spec.json, both atomic.
  absl::Status WriteFinalModel(const proto::ModelSpec& spec, absl::Span<const float> weights);

  static std::string MetricsToJson(const RoundMetrics& metrics);

 private:
  explicit RunStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

// Builds a checkpoint for `round` holding `weights`.
proto::Checkpoint MakeCheckpoint(int64_t round, const proto::ModelSpec& spec,
                                 absl::Span<const float> weights,
                                 const proto::ExperimentConfig& config, double elapsed_seconds);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_RUN_STORE_H_
