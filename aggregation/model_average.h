// Server-side model averaging: the run's result as an average of the global models of the rounds
// since `from_round` (SWA, Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and
// Better Generalization"; on a federated server: Caldarola et al. 2022, "Improving
// Generalization in Federated Learning by Seeking Flat Minima"). The devices keep training from
// the global model itself; only what the run reports and writes (the evaluated model,
// model_final.f32) is the average. Against the round-to-round swing of a large server step, as
// FedAdam's on a pathological label split.
//
// Contract: Add is called once per round with that round's new global model, rounds increasing.
// Rounds before from_round are ignored. The average is kept in double; model() is it rounded to
// float once, made on each call. Memory: one double per parameter once averaging starts, none
// before.
#ifndef EDGEFL_AGGREGATION_MODEL_AVERAGE_H_
#define EDGEFL_AGGREGATION_MODEL_AVERAGE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace edgefl::aggregation {

class ModelAverage {
 public:
  struct Options {
    size_t dim = 0;          // > 0
    int64_t from_round = 1;  // >= 1
    // 0: uniform mean of rounds from_round..r. In (0, 1): EMA a = d a + (1 - d) x_r, starting at
    // x_from_round.
    double ema_decay = 0;
  };
  // INVALID_ARGUMENT naming the field for dim 0, from_round < 1 or ema_decay outside [0, 1).
  static absl::StatusOr<std::unique_ptr<ModelAverage>> Create(const Options& options);

  // Folds in round `round`'s global model (ignored before from_round). INVALID_ARGUMENT, state
  // unchanged, for a wrong size, a non-finite value or a round not after the last one folded in.
  absl::Status Add(int64_t round, absl::Span<const float> global);

  // Models folded in so far; 0 before from_round.
  int64_t count() const { return count_; }
  // The average rounded to float, a new vector on each call (one pass over the model); empty
  // while count() == 0.
  std::vector<float> model() const;

  // Format (aggregation/state_format.h, kind "model_average"): dim, from_round, ema_decay (a
  // state of another configuration is refused), count, last round, the double average when
  // count > 0. LoadState is all or nothing.
  std::string SaveState() const;
  absl::Status LoadState(absl::string_view state);

 private:
  explicit ModelAverage(const Options& options) : options_(options) {}

  Options options_;
  int64_t count_ = 0;
  int64_t last_round_ = 0;
  // Uniform: the sum of the models folded in (the average is acc_ / count_). EMA: the average.
  std::vector<double> acc_;
};

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_MODEL_AVERAGE_H_
