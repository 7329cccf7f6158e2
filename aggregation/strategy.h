// Aggregation strategies. Sampling (sampling.h), policy (the scheduler) and math (here) stay apart,
// as in Flower's strategy.py / aggregate.py. The one implementation is the pipeline
// (pipeline.h: filters -> combiner -> DP noise -> server optimizer); registry.h builds it from
// the experiment config by name.
#ifndef EDGEFL_AGGREGATION_STRATEGY_H_
#define EDGEFL_AGGREGATION_STRATEGY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compression/chain.h"
#include "compression/update_codec.h"

namespace edgefl::aggregation {

// What the scheduler knows about a round when it opens it.
struct RoundContext {
  RoundContext(int64_t round = 0) : round(round) {}  // NOLINT: implicit on purpose
  int64_t round;
  // Clients selected for this attempt and clients eligible when they were selected: the DP
  // accountant's sampling rate is q = num_selected / num_eligible (1 when either is 0).
  int num_selected = 0;
  int num_eligible = 0;
  // The round's server learning rate (schedule entries may change it); 0 keeps the current one.
  double server_lr = 0;
  // The round's DP noise multiplier; < 0 keeps the configured one.
  double noise_multiplier = -1;
};

// What the last Aggregate did, for the round's metrics line.
struct RoundReport {
  int updates_clipped = 0;     // scaled down by the norm bound filter (mode clip)
  int updates_dp_clipped = 0;  // scaled down by DP clipping
  std::optional<double> dp_epsilon;   // privacy spent so far, with DP on
  std::optional<double> dp_clip_norm; // the clip norm this round used, with DP on
  double server_lr = 0;
};

// One round's aggregation. Updates are deltas (client model - global model it started from).
// Not thread-safe: the caller serializes all calls.
class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;
  // Starts a round; drops anything accumulated.
  virtual void BeginRound(const RoundContext& context) = 0;
  // Folds in one validated dense update with its sample count. INVALID_ARGUMENT on size mismatch,
  // non-finite values, num_samples == 0 or a filter's refusal (with a reason,
  // common/status_reason.h); the round's state is then unchanged.
  virtual absl::Status Accumulate(absl::Span<const float> delta, uint64_t num_samples) = 0;
  // Folds in one encoded update (compression/update_codec.h) under `chain`. INVALID_ARGUMENT for
  // a malformed encoding, num_samples == 0 or a filter's refusal; the round's state is then
  // unchanged.
  virtual absl::Status AccumulateEncoded(absl::string_view encoded,
                                         absl::Span<const compression::TensorLayout> layout,
                                         const compression::ChainSpec& chain,
                                         uint64_t num_samples) = 0;
  // Number of updates folded in so far this round.
  virtual int64_t num_accumulated() const = 0;
  // Applies the round's aggregate to `global` in place. `num_failures` are the selected clients
  // that did not contribute. FAILED_PRECONDITION (with a reason such as "krum_too_few_updates")
  // if the round's updates cannot be combined: the scheduler retries the round. On any error
  // `global` and the strategy's state are unchanged.
  virtual absl::Status Aggregate(absl::Span<float> global, int num_failures) = 0;
  // Figures of the last successful Aggregate (or CombinedUpdate).
  virtual RoundReport report() const = 0;
  // What a regional aggregator sends upstream instead of Aggregate: the round's combined update
  // (for the weighted mean: sum_k n_k delta_k / sum_k n_k, added in double and rounded to float
  // once) written into `out`, with no DP noise and no server optimizer step; `global` models and
  // the strategy's state are untouched. FAILED_PRECONDITION (reason "no_updates") when nothing was
  // accumulated, INVALID_ARGUMENT for a wrong `out` size, UNIMPLEMENTED for a strategy that does
  // not only average (buffered robust rules, DP: those belong at the root).
  virtual absl::Status CombinedUpdate(absl::Span<float> out) {
    (void)out;
    return absl::UnimplementedError(name() + " cannot hand its combined update upstream");
  }

  // The state that must survive a restart (optimizer moments, clip norm, noise stream,
  // accountant), as one blob; LoadState restores it (INVALID_ARGUMENT, state unchanged, for a
  // corrupt blob or one of another configuration).
  virtual std::string SaveState() const = 0;
  virtual absl::Status LoadState(absl::string_view state) = 0;

  // Most updates a round may take (buffering rules); 0 = no limit. The scheduler selects no more.
  virtual int max_updates_per_round() const = 0;

  // With model averaging (pipeline.h, model_average.h): the average of the global models since
  // its first round, which the run reports and writes as its result, rounded to float (a new
  // vector on each call); nullopt without averaging and in the rounds before it starts.
  virtual std::optional<std::vector<float>> averaged_model() const { return std::nullopt; }
};

// FedAvg (McMahan et al. 2017): global += sum_k n_k delta_k / sum_k n_k, i.e. the sample-weighted
// mean of the client models, added in double and rounded to float once. Memory: one double per
// parameter. The pipeline with its defaults.
absl::StatusOr<std::unique_ptr<Strategy>> CreateFedAvg(size_t dim);

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_STRATEGY_H_
