// Aggregation strategies. Sampling (sampling.h), policy (the scheduler) and math (here) stay apart,
// as in Flower's strategy.py / aggregate.py.
#ifndef EDGEFL_AGGREGATION_STRATEGY_H_
#define EDGEFL_AGGREGATION_STRATEGY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compression/chain.h"
#include "compression/update_codec.h"

namespace edgefl::aggregation {

// One round's aggregation. Updates are deltas (client model - global model it started from).
// Not thread-safe: the caller serializes all calls.
class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;
  // Starts a round against a global model of `dim` floats; drops anything accumulated.
  virtual void BeginRound(int64_t round) = 0;
  // Folds in one validated dense update with its sample count. INVALID_ARGUMENT on size mismatch,
  // non-finite values or num_samples == 0; the round's state is then unchanged.
  virtual absl::Status Accumulate(absl::Span<const float> delta, uint64_t num_samples) = 0;
  // Folds in one encoded update (compression/update_codec.h) under `chain`, decoding it straight
  // into the accumulator. INVALID_ARGUMENT for a malformed encoding or num_samples == 0; the
  // round's state is then unchanged.
  virtual absl::Status AccumulateEncoded(absl::string_view encoded,
                                         absl::Span<const compression::TensorLayout> layout,
                                         const compression::ChainSpec& chain,
                                         uint64_t num_samples) = 0;
  // Number of updates folded in so far this round.
  virtual int64_t num_accumulated() const = 0;
  // Applies the round's aggregate to `global` in place. `num_failures` are the selected clients
  // that did not contribute. FAILED_PRECONDITION if no update was accumulated.
  virtual absl::Status Aggregate(absl::Span<float> global, int num_failures) = 0;
};

// FedAvg (McMahan et al. 2017): global += sum_k n_k delta_k / sum_k n_k, i.e. the sample-weighted
// mean of the client models. Memory: one double per parameter.
absl::StatusOr<std::unique_ptr<Strategy>> CreateFedAvg(size_t dim);

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_STRATEGY_H_
