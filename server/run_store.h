// The run's output folder: config.json, metrics.jsonl, checkpoint.pb (atomic, after every
// completed round) and the final model. Everything `fl-server --resume` needs lives here.
#ifndef EDGEFL_SERVER_RUN_STORE_H_
#define EDGEFL_SERVER_RUN_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "protos/edgefl.pb.h"
#include "server/round_scheduler.h"

namespace edgefl::server {

// One line of metrics.jsonl.
struct RoundMetrics {
  RoundStats stats;
  std::optional<double> test_accuracy;  // absent for rounds that were not evaluated
  std::optional<double> test_loss;
  double eval_seconds = 0;
};

// Not thread-safe: the scheduler's worker thread is its only writer after start-up.
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
  // Keeps only the metrics lines with round <= `round` (used on resume; atomic rewrite).
  absl::Status TruncateMetricsAfter(int64_t round);
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
