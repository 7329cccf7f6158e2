// The aggregation registry: strategy presets and stage rules by name, with their parameters and
// defaults, mapped from the experiment config's `aggregation` block onto the pipeline
// (aggregation/pipeline.h). `fl-server strategies` prints StrategiesHelp().
#ifndef EDGEFL_SERVER_STRATEGY_REGISTRY_H_
#define EDGEFL_SERVER_STRATEGY_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregation/pipeline.h"
#include "protos/config.pb.h"

namespace edgefl::server {

struct StrategyPreset {
  std::string name;
  std::string summary;   // one line: what it is, with the paper
  std::string settings;  // what it sets, as config paths
};
// Every preset, in the order `fl-server strategies` lists them.
const std::vector<StrategyPreset>& StrategyPresets();

// Text for `fl-server strategies`: presets, then each stage's rules with parameters and defaults.
std::string StrategiesHelp();

// Applies aggregation.strategy's preset to the fields the config leaves unset (an unknown name
// is left for ValidateAggregation to report), then fills every stage default. Part of
// FillDefaults.
void FillAggregationDefaults(proto::ExperimentConfig* config);

// INVALID_ARGUMENT naming the field: unknown strategy / rule / optimizer, beta outside [0, 1),
// tau <= 0, trim_beta outside [0, 0.5), num_byzantine too large for sampling.min_clients,
// noise_multiplier < 0, delta outside (0, 1), DP without the unweighted mean, a schedule's
// server_lr <= 0 or dp_noise_multiplier < 0 (or set without DP), both update_bounds and
// aggregation.norm_bound set. Expects FillDefaults to have run.
absl::Status ValidateAggregation(const proto::ExperimentConfig& config);

// The pipeline options for a model of `dim` parameters (config validated).
absl::StatusOr<aggregation::PipelineOptions> PipelineOptionsFor(
    const proto::ExperimentConfig& config, size_t dim);
// Builds the pipeline; INVALID_ARGUMENT for a configuration it refuses (e.g. a buffered rule
// whose memory bound exceeds combiner.max_buffered_bytes).
absl::StatusOr<std::unique_ptr<aggregation::Pipeline>> CreatePipeline(
    const proto::ExperimentConfig& config, size_t dim);

// The server learning rate and DP noise multiplier in force for `round` (schedule entries may
// change them; later entries win).
double ResolveServerLr(const proto::ExperimentConfig& config, int64_t round);
double ResolveNoiseMultiplier(const proto::ExperimentConfig& config, int64_t round);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_STRATEGY_REGISTRY_H_
