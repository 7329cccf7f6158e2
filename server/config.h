// Experiment configuration: JSON <-> proto (protobuf's own JSON parser), --set overrides,
// defaults, validation, and the per-round resolution of the schedule.
#ifndef EDGEFL_SERVER_CONFIG_H_
#define EDGEFL_SERVER_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protos/config.pb.h"
#include "protos/edgefl.pb.h"

namespace edgefl::server {

// Parses JSON text into an ExperimentConfig. INVALID_ARGUMENT naming the unknown key or the field
// with a wrong type.
absl::StatusOr<proto::ExperimentConfig> ParseConfigJson(const std::string& json);
// Reads and parses a file; NOT_FOUND / INVALID_ARGUMENT carry the path.
absl::StatusOr<proto::ExperimentConfig> LoadConfigFile(const std::string& path);
// Serializes (with defaults filled in if `config` has them) as pretty JSON.
std::string ConfigToJson(const proto::ExperimentConfig& config);

// Applies one `dotted.path=value` override, e.g. "rounds=5", "client.lr=0.01",
// "sampling.min_clients=3", "model=small_cnn". A message or repeated field takes a JSON value
// ("schedule=[{\"from_round\":10,\"client\":{\"lr\":0.02}}]"). INVALID_ARGUMENT naming the path
// for an unknown field, a malformed assignment, or a value of the wrong type.
absl::Status ApplyOverride(const std::string& assignment, proto::ExperimentConfig* config);

// Fills every unset optional field with its documented default (see protos/config.proto).
void FillDefaults(proto::ExperimentConfig* config);

// INVALID_ARGUMENT with the field name for out-of-range values (rounds < 1, fraction outside
// (0,1], lr <= 0, batch_size < 1, quorum outside (0,1], schedule from_round < 1, ...).
// Expects FillDefaults to have run.
absl::Status ValidateConfig(const proto::ExperimentConfig& config);

// The client settings in force for `round` (1-based): the base `client` settings overridden field
// by field by every schedule entry with from_round <= round, in order of from_round.
proto::TaskConfig ResolveTaskConfig(const proto::ExperimentConfig& config, int64_t round);
// The downlink codec chain in force for `round` (canonical text; "dense" when unset).
std::string ResolveDownlink(const proto::ExperimentConfig& config, int64_t round);
// The deadline in force for `round` (schedule entries may override it).
double ResolveDeadlineSeconds(const proto::ExperimentConfig& config, int64_t round);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_CONFIG_H_
